"""Every activation and optimizer against relu + SGD, numbamlp alone, interleaved.

    python bench/variants.py [--config mnist] [--rounds 7] [--dtype float32] [--threads N]
                             [--activations relu,gelu,...]

The issue's target: at the mnist config every activation, and Adam, within 15 % of the
relu + SGD step.  One numbamlp Trainer per variant, all built first (compile time, mostly
cache loading, reported separately), then timed in interleaved rounds (every variant once
per round); the table shows medians and each variant's time ÷ relu + SGD's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import CONFIGS, NumbamlpStep, initial_params, machine_info, seconds_per_call  # noqa: E402

from numbamlp.kernels import ACTIVATION_NAMES  # noqa: E402

OPTIMIZERS = ["sgd", "adam"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mnist", choices=list(CONFIGS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--activations", default=",".join(ACTIVATION_NAMES),
                        help="the activations to time (relu always runs: it is the baseline)")
    args = parser.parse_args(argv)
    layers, batch = CONFIGS[args.config]
    params = initial_params(layers, args.dtype)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(batch, layers[0])).astype(args.dtype)
    y = rng.integers(0, layers[-1], size=batch)
    chosen = ["relu"] + [name for name in args.activations.split(",") if name != "relu"]
    unknown = sorted(set(chosen) - set(ACTIVATION_NAMES))
    if unknown:
        parser.error(f"unknown activation(s) {', '.join(unknown)}; valid: {', '.join(ACTIVATION_NAMES)}")
    variants = [(name, "sgd") for name in chosen] + [("relu", opt) for opt in OPTIMIZERS[1:]]
    steps = {}
    for activation, optimizer in variants:
        step = NumbamlpStep(params, layers, batch, args.dtype, activation, optimizer, args.threads)
        step(X, y)
        steps[activation, optimizer] = step
    samples = {key: [] for key in steps}
    for _ in range(args.rounds):
        for key, step in steps.items():
            samples[key].append(seconds_per_call(step, X, y))
    median = {key: statistics.median(times) for key, times in samples.items()}
    base = median["relu", "sgd"]
    info = machine_info(args.threads)
    print(" ".join(f"{k}={v}" for k, v in info.items() if k not in ("torch", "jax")))
    print(f"config={args.config} layers={'-'.join(map(str, layers))} batch={batch} dtype={args.dtype} "
          f"rounds={args.rounds} (medians of interleaved rounds)")
    print(f"{'activation':<11} {'optimizer':<9} {'µs':>9} {'÷ relu+sgd':>10}")
    for (activation, optimizer), seconds in median.items():
        print(f"{activation:<11} {optimizer:<9} {seconds * 1e6:>9.1f} {seconds / base:>10.2f}")


if __name__ == "__main__":
    sys.exit(main())
