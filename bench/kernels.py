"""Kernel benchmark: every kernel family, Numba cpu backend against the numpy backend.

    python bench/kernels.py [--batch 256] [--width 512] [--inputs 784] [--dtype float32]
                            [--rounds 7] [--json]

Each kernel is first validated against the single-example reference path (on the first
rows), then timed: compile/first call excluded and reported separately, the two backends
interleaved round by round, medians reported with their ratio.  Affine kernels are quoted
in GFLOP/s, elementwise and loss kernels in GB/s of memory touched.  The cpu kernels are
called by their public names, as a direct caller calls them: their argument checks included
(a few µs a call, since 2026-11-30; the fused training step does not go through them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import seconds_per_call  # noqa: E402

from numbamlp import reference  # noqa: E402
from numbamlp.kernels import ACTIVATION_NAMES, ACTIVATIONS, activation_kernels, get_backend  # noqa: E402

BACKENDS = ("numpy", "cpu")
CHECK_ROWS = 4  # rows validated against the (slow) reference path


def col(v):
    return np.asarray(v, dtype=np.float64).reshape(-1, 1)


def max_rel(x, ref):
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(x, dtype=np.float64) - ref).max() / max(np.abs(ref).max(), 1e-300))


def build_cases(B, D, H, C, dtype, rng):
    """[(name, work units, unit, {backend: callable}, check)] for every kernel family."""
    X = rng.normal(size=(B, D)).astype(dtype)
    W = (rng.normal(size=(H, D)) / np.sqrt(D)).astype(dtype)
    b = rng.normal(size=H).astype(dtype)
    dout = rng.normal(size=(B, H)).astype(dtype)
    itemsize = np.dtype(dtype).itemsize
    out = {be: np.empty((B, H), dtype) for be in BACKENDS}
    grads = {be: (np.empty((B, D), dtype), np.empty((H, D), dtype), np.empty(H, dtype)) for be in BACKENDS}
    cases = []

    def check_affine_forward(be):
        ref = np.stack([reference.Affine(W, b).forward(col(x))[:, 0] for x in X[:CHECK_ROWS]])
        return max_rel(out[be][:CHECK_ROWS], ref)

    cases.append(("affine_forward", 2.0 * B * D * H, "GFLOP/s",
                  {be: (lambda be=be: get_backend(be).affine_forward(out[be], X, W, b)) for be in BACKENDS},
                  check_affine_forward))

    def check_affine_backward(be):
        dX, dW, db = grads[be]
        layer = reference.Affine(W, b)
        ref_dW = np.zeros(W.shape)
        for x, d in zip(X, dout):
            layer.forward(col(x))
            ref_dW += layer.backward(col(d))[0]
        layer.forward(col(X[0]))
        ref_dx0 = layer.backward(col(dout[0]))[2][:, 0]
        return max(max_rel(dW, ref_dW), max_rel(db, dout.astype(np.float64).sum(0)), max_rel(dX[0], ref_dx0))

    cases.append(("affine_backward", 4.0 * B * D * H, "GFLOP/s",
                  {be: (lambda be=be: get_backend(be).affine_backward(*grads[be], dout, X, W)) for be in BACKENDS},
                  check_affine_backward))

    A = (2 * rng.normal(size=(B, H))).astype(dtype)
    for name in ACTIVATION_NAMES:
        spec = ACTIVATIONS[name]
        bufs = {be: (np.empty_like(A), np.empty_like(A)) for be in BACKENDS}

        def run(be, name=name, spec=spec):
            forward, backward = activation_kernels(get_backend(be), name)
            Hout, dA = bufs[be]
            forward(Hout, A, spec.alpha)
            backward(dA, dout, A if spec.backward_uses == "input" else Hout, spec.alpha)

        def check(be, name=name):
            Hout, dA = bufs[be]
            errs = []
            for i in range(CHECK_ROWS):
                module = reference.make_activation(name)
                errs.append(max_rel(Hout[i], module.forward(col(A[i]))[:, 0]))
                errs.append(max_rel(dA[i], module.backward(col(dout[i]))[:, 0]))
            return max(errs)

        # forward reads A, writes H; backward reads dH and A or H, writes dA: 5 arrays
        cases.append((f"{name} fwd+bwd", 5.0 * A.size * itemsize, "GB/s",
                      {be: (lambda be=be, run=run: run(be)) for be in BACKENDS}, check))

    S = (3 * rng.normal(size=(B, C))).astype(dtype)
    y = rng.integers(0, C, size=B)
    ce_bufs = {be: (np.empty_like(S), np.empty(B, dtype), np.empty_like(S)) for be in BACKENDS}

    def run_ce(be):
        P, row_loss, dS = ce_bufs[be]
        kernels = get_backend(be)
        kernels.softmax_crossentropy_forward(P, row_loss, S, y)
        kernels.softmax_crossentropy_backward(dS, P, y)

    def check_ce(be):
        P, row_loss, dS = ce_bufs[be]
        errs = []
        for i in range(CHECK_ROWS):
            ce = reference.SoftmaxCrossEntropy()
            errs.append(max_rel(row_loss[i], ce.forward(col(S[i]), int(y[i]))))
            errs.append(max_rel(dS[i] * B, ce.backward()[:, 0]))
        return max(errs)

    cases.append(("softmax_ce fwd+bwd", 4.0 * S.size * itemsize, "GB/s",
                  {be: (lambda be=be: run_ce(be)) for be in BACKENDS}, check_ce))

    # optimizers over one layer's parameters (W and b), checked after their first call
    # against one step written out in float64 (PyTorch's update rules)
    P = H * D + H
    start = {name: rng.normal(size=P).astype(dtype) for name in ("param", "grad")}
    lr, momentum, beta1, beta2, eps = 0.01, 0.9, 0.9, 0.999, 1e-8
    sgd_state = {be: (start["param"].copy(), np.zeros(P, dtype)) for be in BACKENDS}
    adam_state = {be: (start["param"].copy(), np.zeros(P, dtype), np.zeros(P, dtype)) for be in BACKENDS}
    adam_steps = {be: 0 for be in BACKENDS}

    def run_adam(be):
        adam_steps[be] += 1
        get_backend(be).adam_update(*adam_state[be], start["grad"], lr, beta1, beta2, eps, 0.0, False, adam_steps[be])

    def check_sgd(be):
        param, velocity = sgd_state[be]
        g = start["grad"].astype(np.float64)
        return max_rel(param, start["param"].astype(np.float64) - lr * g)  # first step: velocity = g

    def check_adam(be):
        g = start["grad"].astype(np.float64)
        m, v = (1 - beta1) * g, (1 - beta2) * g * g
        expected = start["param"] - lr * (m / (1 - beta1)) / (np.sqrt(v / (1 - beta2)) + eps)
        return max_rel(adam_state[be][0], expected)

    cases.append(("sgd momentum update", 5.0 * P * itemsize, "GB/s",
                  {be: (lambda be=be: get_backend(be).sgd_update(*sgd_state[be], start["grad"], lr, momentum, 0.0,
                                                                 False)) for be in BACKENDS}, check_sgd))
    cases.append(("adam update", 7.0 * P * itemsize, "GB/s",
                  {be: (lambda be=be: run_adam(be)) for be in BACKENDS}, check_adam))
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--inputs", type=int, default=784)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = parser.parse_args(argv)

    import numba

    tolerance = 1e-10 if args.dtype == "float64" else 1e-4
    rng = np.random.default_rng(0)
    cases = build_cases(args.batch, args.inputs, args.width, args.classes, np.dtype(args.dtype), rng)
    results = []
    for name, work, unit, impls, check in cases:
        first_call = {}
        for be, fn in impls.items():  # first call: compile (or load from cache), then validate
            start = time.perf_counter()
            fn()
            first_call[be] = time.perf_counter() - start
            error = check(be)
            if not error <= tolerance:
                raise SystemExit(f"{name} on {be}: relative error {error:.2e} > {tolerance:g}; not timing")
        samples = {be: [] for be in impls}
        for _ in range(args.rounds):  # interleaved rounds
            for be, fn in impls.items():
                samples[be].append(seconds_per_call(fn, min_seconds=0.05))
        median = {be: statistics.median(s) for be, s in samples.items()}
        results.append({
            "kernel": name, "unit": unit,
            **{f"{be}_us": median[be] * 1e6 for be in impls},
            **{f"{be}_rate": work / median[be] / 1e9 for be in impls},
            **{f"{be}_first_call_s": first_call[be] for be in impls},
            "cpu_vs_numpy": median["numpy"] / median["cpu"],
        })
    machine = {
        "machine": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
        "threading_layer": _threading_layer(), "shapes": vars(args),
    }
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=1))
        return
    print(" ".join(f"{k}={v}" for k, v in machine.items() if k != "shapes"))
    print(f"B={args.batch} D={args.inputs} H={args.width} C={args.classes} dtype={args.dtype} "
          f"rounds={args.rounds} (median of interleaved rounds)")
    print(f"{'kernel':<20} {'numpy µs':>10} {'cpu µs':>10} {'numpy rate':>11} {'cpu rate':>10} {'unit':<8} "
          f"{'cpu÷numpy':>9} {'1st call':>9}")
    for r in results:
        print(f"{r['kernel']:<20} {r['numpy_us']:>10.1f} {r['cpu_us']:>10.1f} {r['numpy_rate']:>11.2f} "
              f"{r['cpu_rate']:>10.2f} {r['unit']:<8} {r['cpu_vs_numpy']:>8.2f}× {r['cpu_first_call_s']:>8.2f}s")


def _threading_layer():
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        return "not initialised"


if __name__ == "__main__":
    main()
