"""The C symbols and the LLVM instruction the cpu backend binds to, in one place.

- ``numba_xxgemm``: the BLAS helper Numba's own ``np.dot`` calls (scipy's cython_blas
  underneath); the only way to reach BLAS's alpha and beta from compiled code.
- ``get_num_threads``: the calling thread's Numba thread count, the symbol Numba's own
  parallel loops read (``numba.get_num_threads()`` in compiled code embeds a
  process-specific pointer, which keeps the function out of the cache).
- a bitcast int32 → float32 (llvmlite's IR builder), for the float32 exponential.

None of these is a public Numba API: a Numba upgrade may rename or remove them, and
``tests/test_native.py`` then fails, naming the one that moved.  (Numba's cache keys a
cached function by its own file only: after changing a declaration here, clear the cache.)
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# the symbols the declarations below name, for the test that checks they still exist
SYMBOLS = ("numba_xxgemm", "get_num_threads")

xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp,
    types.voidptr, types.voidptr, types.intp, types.voidptr, types.intp,
    types.voidptr, types.voidptr, types.intp))
"""(precision 's'/'d', transa, transb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc):
column-major C = alpha·op(A)·op(B) + beta·C, as BLAS's ?gemm."""

thread_count = types.ExternalFunction("get_num_threads", types.intp())
"""() → the calling thread's Numba thread count."""


@intrinsic
def float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bit pattern is the int32 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen
