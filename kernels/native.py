"""The C symbols and the LLVM instruction the cpu backend binds to, in one place.

- ``numba_xxgemm``: the BLAS helper Numba's own ``np.dot`` calls (scipy's cython_blas
  underneath); the only way to reach BLAS's alpha and beta from compiled code.
- ``get_num_threads``: the calling thread's Numba thread count, the symbol Numba's own
  parallel loops read (``numba.get_num_threads()`` in compiled code embeds a
  process-specific pointer, which keeps the function out of the cache).
- a bitcast int32 → float32 (llvmlite's IR builder), for the float32 exponential.
- Numba's dispatcher internals that let a step skip the dispatcher (cpu_backend's model
  alone): the C type fingerprint it computes for arguments, and a compiled overload's
  entry point.

None of these is a public Numba API: a Numba upgrade may rename or remove them, and
``tests/test_native.py`` then fails, naming the one that moved.  (Numba's cache keys a
cached function by its own file only: after changing a declaration here, clear the cache.)
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba._dispatcher import compute_fingerprint
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


def type_fingerprint(values) -> bytes:
    """The bytes Numba's dispatcher computes in C from the types of ``values`` (a plain tuple):
    per array its ndim, layout, writeability and dtype (not its alignment), per scalar its
    kind; equal fingerprints, equal Numba types.  ~0.15 µs for a few arrays (a named tuple
    of arrays costs ~2 µs).  Raises ValueError for a value it cannot fingerprint (Numba
    raises NotImplementedError for strings, string arrays, dicts and other objects)."""
    try:
        return compute_fingerprint(values)
    except NotImplementedError as err:
        raise ValueError(str(err)) from None


def entry_point(dispatcher, arguments):
    """The compiled function ``dispatcher`` runs for ``arguments`` (its CPython wrapper,
    which unboxes them, checking tuple sizes and array item sizes only), or None when it has
    no overload of exactly their types.  Call it only with arguments of those same types."""
    overload = dispatcher.overloads.get(tuple(numba.typeof(a) for a in arguments))
    return None if overload is None else overload.entry_point
