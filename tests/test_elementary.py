"""The cpu backend's float32 elementary functions against float64 numpy/scipy."""

import math

import numpy as np
import pytest
from numba import njit
from scipy.special import ndtr

from numbamlp.kernels.cpu_backend import _exp_float32, _expm1_float32, _normal_cdf_float32, _tanh_float32

ULP_ONE = float(np.finfo(np.float32).eps)  # 1.19e-7


@njit
def apply(function, x):
    out = np.empty_like(x)
    for k in range(x.size):
        out[k] = function(x[k])
    return out


def grid(low, high, count=40_001):
    return np.linspace(low, high, count).astype(np.float32)


# (function, float64 truth, arguments, bound on |f − truth| / |truth|)
RELATIVE = {
    "exp": (_exp_float32, np.exp, grid(-87, 88), 1 * ULP_ONE),
    "expm1": (_expm1_float32, np.expm1, np.concatenate([grid(-20, 20), grid(-1e-3, 1e-3)]), 3 * ULP_ONE),
    "tanh": (_tanh_float32, np.tanh, np.concatenate([grid(-20, 20), grid(-1e-3, 1e-3)]), 12 * ULP_ONE),
}


@pytest.mark.parametrize("name", RELATIVE)
def test_relative_error_against_float64(name):
    function, truth, x, bound = RELATIVE[name]
    expected = truth(x.astype(np.float64))
    got = apply(function, x).astype(np.float64)
    nonzero = expected != 0
    assert np.all(got[~nonzero] == 0)
    assert np.max(np.abs(got - expected)[nonzero] / np.abs(expected[nonzero])) <= bound


def test_normal_cdf_absolute_error_and_tails():
    x = grid(-12, 12)
    got = apply(_normal_cdf_float32, x).astype(np.float64)
    # A&S 7.1.26 is within 1.5e-7 on erfc; float32 rounding in the polynomial adds the rest
    assert np.max(np.abs(got - ndtr(x.astype(np.float64)))) <= 3e-7
    assert np.all(np.diff(got) >= -2e-7)  # non-decreasing, up to rounding
    assert got[0] >= 0 and got[-1] <= 1


@pytest.mark.parametrize("function", [_exp_float32, _expm1_float32, _tanh_float32, _normal_cdf_float32])
def test_special_values(function):
    special = np.array([np.nan, np.inf, -np.inf], np.float32)
    got = apply(function, special)
    assert np.isnan(got[0])  # NaN is never hidden: divergence stays detectable
    truth = {_exp_float32: math.exp, _expm1_float32: math.expm1, _tanh_float32: math.tanh,
             _normal_cdf_float32: lambda v: float(ndtr(v))}[function]
    assert got[1] == truth(math.inf) and got[2] == truth(-math.inf)


def test_exp_overflows_to_inf_and_underflows_to_zero():
    got = apply(_exp_float32, np.array([88.5, 100.0, -87.5, -100.0], np.float32))
    assert got[0] == np.inf and got[1] == np.inf and got[2] == 0 and got[3] == 0
