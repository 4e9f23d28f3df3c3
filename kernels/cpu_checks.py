"""The cpu backend's public kernels, checked.

The kernels index their arrays without bounds checks (that is their speed), so a direct
call with a wrong shape, an out-of-range label or mixed dtypes read and wrote outside the
arrays: wrong numbers, or a crashed interpreter.  The public names (numbamlp.kernels'
interface) check their arguments first and raise KernelArgumentError (a ValueError) naming
the one at fault; compiled code calls the kernels themselves, by their private names
(_relu_forward, ...), as do benchmarks that time the kernels alone.  kernels/cpu_backend.py
puts each check (KERNEL_CHECKS) in front of its kernel (``checked``); nothing here is
compiled by Numba.

Symbols: B batch size, C classes (or K regression outputs).
"""

from __future__ import annotations

import functools

import numpy as np

from numbamlp.kernels import ACTIVATION_NAMES


class KernelArgumentError(ValueError):
    """A cpu kernel called with arrays it cannot take."""


def _floats(**arrays) -> None:
    """Each array given (None: absent): a C-contiguous numpy array of float32 or float64,
    all of one dtype."""
    dtype = None
    for name, array in arrays.items():
        if array is None:
            continue
        if not isinstance(array, np.ndarray):
            raise KernelArgumentError(f"{name} must be a numpy array, got {type(array).__name__}")
        if array.dtype not in (np.float32, np.float64):
            raise KernelArgumentError(f"{name} must be float32 or float64, got {array.dtype}")
        if dtype is not None and array.dtype != dtype:
            raise KernelArgumentError(f"{name} is {array.dtype} but the arrays before it are {dtype}")
        if not array.flags.c_contiguous:
            raise KernelArgumentError(f"{name} must be C-contiguous (np.ascontiguousarray)")
        dtype = array.dtype


def _shapes(**expected) -> None:
    """name=(array, shape) for each array given: that shape."""
    for name, (array, shape) in expected.items():
        if array is not None and array.shape != tuple(shape):
            raise KernelArgumentError(f"{name} must have shape {tuple(shape)}, got {array.shape}")


def _shape_of(name: str, array, ndim: int) -> tuple:
    if not isinstance(array, np.ndarray) or array.ndim != ndim:
        raise KernelArgumentError(f"{name} must be a {ndim}-D numpy array")
    return array.shape


def _loss_operands(scores_name: str, scores, alike: dict, row_loss, weights) -> tuple[int, int]:
    """A loss kernel's (B, C): its scores (or probabilities), the arrays ``alike`` of their
    shape and dtype, row_loss (B,) floats (None: the kernel has none), weights None or (B,)."""
    B, C = _shape_of(scores_name, scores, 2)
    _floats(**{scores_name: scores}, **alike)
    _shapes(**{name: (array, (B, C)) for name, array in alike.items()})
    if row_loss is not None:
        _floats(row_loss=row_loss)
        _shapes(row_loss=(row_loss, (B,)))
    if weights is not None and (not isinstance(weights, np.ndarray) or weights.dtype.kind != "f"
                                or weights.shape != (B,)):
        raise KernelArgumentError(f"weights must be None or floats of shape ({B},)")
    return B, C


def _class_indices(y, rows: int, classes: int) -> None:
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.shape != (rows,):
        raise KernelArgumentError(f"y must be integer class indices of shape ({rows},)")
    if rows and (y.min() < 0 or y.max() >= classes):
        raise KernelArgumentError(f"y must hold class indices in [0, {classes}), got {y.min()} .. {y.max()}")


def _check_affine_forward(out, X, W, b):
    (B, n_in), (n_out, _) = _shape_of("X", X, 2), _shape_of("W", W, 2)
    _floats(X=X, W=W, b=b, out=out)
    _shapes(W=(W, (n_out, n_in)), b=(b, (n_out,)), out=(out, (B, n_out)))


def _check_affine_backward(dX, dW, db, dout, X, W):
    (B, n_out), (_, n_in) = _shape_of("dout", dout, 2), _shape_of("X", X, 2)
    _floats(dout=dout, X=X, W=W, dW=dW, db=db, dX=dX)
    _shapes(X=(X, (B, n_in)), W=(W, (n_out, n_in)), dW=(dW, (n_out, n_in)), db=(db, (n_out,)), dX=(dX, (B, n_in)))


def _arrays_alike(**arrays) -> None:
    """An activation's arrays: floats of the first one's shape and dtype."""
    first_name, first = next(iter(arrays.items()))
    if not isinstance(first, np.ndarray):
        raise KernelArgumentError(f"{first_name} must be a numpy array")
    _floats(**arrays)
    _shapes(**{name: (array, first.shape) for name, array in arrays.items()})


def _check_activation_forward(Hout, A, alpha):
    _arrays_alike(A=A, Hout=Hout)


def _check_activation_backward(dA, dH, cache, alpha):
    _arrays_alike(dH=dH, cache=cache, dA=dA)


def _check_softmax_crossentropy_forward(P, row_loss, S, y, weights=None):
    _class_indices(y, *_loss_operands("S", S, {"P": P}, row_loss, weights))


def _check_softmax_crossentropy_backward(dS, P, y, weights=None):
    _class_indices(y, *_loss_operands("P", P, {"dS": dS}, None, weights))


def _check_mse_forward(row_loss, S, Y, weights=None):
    _loss_operands("S", S, {"Y": Y}, row_loss, weights)


def _check_mse_backward(dS, S, Y, weights=None):
    _loss_operands("S", S, {"Y": Y, "dS": dS}, None, weights)


def _check_sgd_update(param, velocity, grad, lr, momentum, weight_decay, nesterov):
    _floats(param=param, velocity=velocity, grad=grad)
    _shapes(velocity=(velocity, param.shape), grad=(grad, param.shape))


def _check_adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    _floats(param=param, m=m, v=v, grad=grad)
    _shapes(m=(m, param.shape), v=(v, param.shape), grad=(grad, param.shape))


def checked(name: str, kernel, check):
    """``kernel`` behind ``check``, whose KernelArgumentError is raised before it runs, with
    the kernel's ``name`` in front."""
    @functools.wraps(kernel.py_func)
    def checked_kernel(*arguments, **keywords):
        try:
            check(*arguments, **keywords)
        except KernelArgumentError as err:
            raise KernelArgumentError(f"{name}: {err}") from None
        return kernel(*arguments, **keywords)

    checked_kernel.compiled = kernel  # (the kernel itself, unchecked)
    return checked_kernel


KERNEL_CHECKS = {
    "affine_forward": _check_affine_forward, "affine_backward": _check_affine_backward,
    **{f"{name}_forward": _check_activation_forward for name in ACTIVATION_NAMES},
    **{f"{name}_backward": _check_activation_backward for name in ACTIVATION_NAMES},
    "softmax_crossentropy_forward": _check_softmax_crossentropy_forward,
    "softmax_crossentropy_backward": _check_softmax_crossentropy_backward,
    "mse_forward": _check_mse_forward, "mse_backward": _check_mse_backward,
    "sgd_update": _check_sgd_update, "adam_update": _check_adam_update,
}
