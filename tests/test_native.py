"""The C symbols and the LLVM bitcast the cpu backend binds to (kernels/native.py) still
exist and do what the backend assumes: a Numba upgrade that moves one fails here, by name."""

import llvmlite.binding as llvm
import numpy as np
import pytest
from numba import njit

from numbamlp.kernels import cpu_backend  # noqa: F401  (importing the backend loads what it links against)
from numbamlp.kernels import native


@pytest.mark.parametrize("symbol", native.SYMBOLS)
def test_every_bound_symbol_still_exists(symbol):
    assert llvm.address_of_symbol(symbol), f"Numba no longer exports {symbol!r}: see kernels/native.py"


def test_the_bindings_compute_what_the_backend_assumes():
    @njit
    def probe(c, a, b, scalars):
        # row-major C (2, 3) = A (2, 4) @ B (4, 3) is column-major Cᵀ = Bᵀ·Aᵀ
        native.xxgemm(np.int8(ord("d")), np.int8(ord("n")), np.int8(ord("n")), 3, 2, 4,
                      scalars[0:1].ctypes, b.ctypes, 3, a.ctypes, 4, scalars[1:2].ctypes, c.ctypes, 3)
        return native.thread_count(), native.float32_from_bits(np.int32(0x3F800000))

    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(2, 4)), rng.normal(size=(4, 3)), np.zeros((2, 3))
    threads, one = probe(c, a, b, np.array([1.0, 0.0]))
    np.testing.assert_allclose(c, a @ b, rtol=1e-14)
    import numba

    assert threads == numba.get_num_threads()
    assert one == np.float32(1.0)


def test_the_dispatcher_internals_a_model_alone_steps_through():
    """cpu_backend's model alone calls its compiled step's entry point (native.entry_point)
    while native.type_fingerprint of the other arguments stays the same: the fingerprint must
    tell apart every type the entry point's unboxing would not (it checks item sizes only)."""
    @njit
    def total(x, flag):
        return x.sum() if flag else 0.0

    x = np.arange(6.0).reshape(2, 3)
    total(x, True)
    entry = native.entry_point(total, (x, True))
    assert entry is not None and entry(x, True) == 15.0
    assert native.entry_point(total, (x.astype(np.float32), True)) is None  # never compiled for it
    fingerprint = native.type_fingerprint((x, True))
    assert native.type_fingerprint((x.copy(), False)) == fingerprint
    readonly = x.copy()
    readonly.flags.writeable = False
    for other in (x.astype(np.float32), x.astype(np.int64), x[None], x.T, x[:, ::2], readonly):
        assert native.type_fingerprint((other, True)) != fingerprint, other
    assert native.type_fingerprint((x, 1.0)) != fingerprint
    for unfit in (["a"], np.array(["a"]), {"a": 1}, object()):  # (Numba: NotImplementedError)
        with pytest.raises(ValueError):
            native.type_fingerprint((unfit, True))
