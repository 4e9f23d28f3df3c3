"""Each activation's value φ(a) and derivative φ'(a) at chosen points, against numbers
written out here, on the numpy and cpu backends and the reference path.

The other activation tests compare the backends with the reference path, so a parameter
changed in the table (ELU's α = 1, leaky ReLU's slope 0.1) or a derivative at exactly 0
changed everywhere at once would pass them; these values would not.
"""

import numpy as np
import pytest

from naive import BACKENDS, DTYPES, assert_close, col
from numbamlp import reference
from numbamlp.kernels import ACTIVATION_NAMES, ACTIVATIONS, activation_kernels, get_backend

# Negative (a far tail, two moderate), exactly zero, positive.
POINTS = [-30.0, -2.0, -0.5, 0.0, 0.5, 2.0]

# name: (φ at POINTS, φ' at POINTS).  Piecewise-linear ones exact; the rest rounded from
# 60-digit mpmath evaluations of the formulas in the comments.
EXPECTED = {
    # max(0, a); φ'(0) = 0
    "relu": ([0.0, 0.0, 0.0, 0.0, 0.5, 2.0],
             [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]),
    # a if a > 0 else 0.1·a; φ'(0) = 0.1
    "leaky_relu": ([-3.0, -0.2, -0.05, 0.0, 0.5, 2.0],
                   [0.1, 0.1, 0.1, 0.1, 1.0, 1.0]),
    # a if a > 0 else 1·(eᵃ − 1); φ' = 1 or eᵃ, 1 at 0 from either side
    "elu": ([-0.9999999999999064, -0.8646647167633873, -0.3934693402873666, 0.0, 0.5, 2.0],
            [9.357622968840175e-14, 0.1353352832366127, 0.6065306597126334, 1.0, 1.0, 1.0]),
    # 1 / (1 + e⁻ᵃ); σ(1 − σ)
    "sigmoid": ([9.357622968839299e-14, 0.11920292202211756, 0.37754066879814546, 0.5, 0.6224593312018546,
                 0.8807970779778824],
                [9.357622968838423e-14, 0.10499358540350652, 0.2350037122015945, 0.25, 0.2350037122015945,
                 0.10499358540350652]),
    # a·Φ(a), Φ(a) = erfc(−a/√2)/2; Φ(a) + a·e^(−a²/2)/√(2π)
    "gelu": ([-1.472014178144456e-196, -0.04550026389635842, -0.15426876936299344, 0.0, 0.34573123063700656,
              1.9544997361036416],
             [-4.416031690708495e-195, -0.0852318010781969, 0.13250487534383715, 0.5, 0.8674951246561629,
              1.085231801078197]),
    # a·σ(a); σ(a)·(1 + a·(1 − σ(a)))
    "silu": ([-2.8072868906517896e-12, -0.23840584404423512, -0.18877033439907273, 0.0, 0.3112296656009273,
              1.7615941559557649],
             [-2.713710660963134e-12, -0.09078424878489548, 0.2600388126973482, 0.5, 0.7399611873026518,
              1.0907842487848955]),
    # tanh(a); 1 − tanh²(a)
    "tanh": ([-1.0, -0.9640275800758169, -0.46211715726000974, 0.0, 0.46211715726000974, 0.9640275800758169],
             [3.502604305078608e-26, 0.07065082485316447, 0.7864477329659274, 1.0, 0.7864477329659274,
              0.07065082485316447]),
}


def test_every_activation_has_pinned_values_and_the_table_keeps_its_parameters():
    assert set(EXPECTED) == set(ACTIVATION_NAMES)
    assert ACTIVATIONS["leaky_relu"].alpha == 0.1 and ACTIVATIONS["elu"].alpha == 1.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_backend_activation_values(activation, backend, dtype):
    """The kernels with the table's α, as the trainer calls them; dH = 1, so dA = φ'(a)."""
    spec = ACTIVATIONS[activation]
    forward, backward = activation_kernels(get_backend(backend), activation)
    A = np.array([POINTS, POINTS[::-1]], dtype=dtype)  # (2, 6): a batch of two rows
    Hout, dA = np.empty_like(A), np.empty_like(A)
    forward(Hout, A, spec.alpha)
    backward(dA, np.ones_like(A), A if spec.backward_uses == "input" else Hout, spec.alpha)
    values, derivatives = (np.array([pinned, pinned[::-1]]) for pinned in EXPECTED[activation])
    assert_close(Hout, values, dtype, f"{backend} {activation}_forward")
    assert_close(dA, derivatives, dtype, f"{backend} {activation}_backward")


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_reference_activation_values(activation):
    module = reference.make_activation(activation)
    values, derivatives = EXPECTED[activation]
    assert_close(module.forward(col(POINTS)), col(values), np.float64, f"reference {activation} forward")
    assert_close(module.backward(col(np.ones(len(POINTS)))), col(derivatives), np.float64,
                 f"reference {activation} backward")


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu"])
def test_the_derivative_at_exactly_zero_scales_the_upstream_gradient(activation, backend):
    """φ'(0) alone, exactly (0, 0.1, 1), with an upstream gradient that is not 1."""
    spec = ACTIVATIONS[activation]
    A, dH = np.zeros((1, 3)), np.array([[2.0, -3.0, 0.5]])
    if backend == "reference":
        module = reference.make_activation(activation)
        module.forward(col(A))
        dA = module.backward(col(dH)).reshape(1, 3)
    else:
        _, backward = activation_kernels(get_backend(backend), activation)
        dA = np.empty_like(A)
        backward(dA, dH, A, spec.alpha)
    slope = {"relu": 0.0, "leaky_relu": 0.1, "elu": 1.0}[activation]
    np.testing.assert_array_equal(dA, slope * dH)
