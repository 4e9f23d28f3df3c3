"""How should Numba and BLAS share the cores?  Trainer.step under thread settings.

    python bench/threads.py [--rounds 7]

Thread settings only take effect before the libraries start, so each setting runs in its
own subprocess (settings alternate, round by round, so that machine noise hits all of
them alike); each reports the median seconds per ``Trainer.step`` (float32, SGD with
momentum, ReLU) at four shapes.  Used to choose how the cpu backend compiles its
elementwise kernels (see kernels/cpu_backend.py).  Run it with OPENBLAS_CORETYPE unset to
let OpenBLAS use this machine's own kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

SHAPES = {"small": ([64, 128, 10], 32), "two-hidden": ([64, 256, 128, 10], 32),
          "mnist": ([784, 512, 10], 128), "deep": ([784, 1024, 1024, 10], 256)}
SETTINGS = {
    "as shipped": {},
    "parallel elementwise": {"BENCH_PARALLEL_ELEMENTWISE": "1"},
    "as shipped, 1 BLAS thread": {"OPENBLAS_NUM_THREADS": "1"},
    "parallel + OMP passive": {"BENCH_PARALLEL_ELEMENTWISE": "1", "OMP_WAIT_POLICY": "passive"},
    "parallel + 1 BLAS thread": {"BENCH_PARALLEL_ELEMENTWISE": "1", "OPENBLAS_NUM_THREADS": "1"},
}

WORKER = r"""
import json, os, sys, time
import numpy as np
from numbamlp.trainer import Trainer
if os.environ.get("BENCH_PARALLEL_ELEMENTWISE"):
    # Recompile (uncached) the elementwise kernels with parallel=True, and everything that
    # calls them (the fused step resolves its callees when it is compiled), for comparison.
    import numba
    from numbamlp.kernels import cpu_backend
    names = [n for n in dir(cpu_backend) if hasattr(getattr(cpu_backend, n), "py_func")]
    elementwise = [n for n in names if n.endswith(("_forward", "_backward", "_update"))
                   and not n.startswith(("affine", "_"))]
    for name in elementwise:
        setattr(cpu_backend, name, numba.njit(parallel=True, nogil=True)(getattr(cpu_backend, name).py_func))
    for name in names:
        if name not in elementwise:
            setattr(cpu_backend, name, numba.njit(nogil=True)(getattr(cpu_backend, name).py_func))
shapes = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
result = {}
for name, (layers, batch) in shapes.items():
    trainer = Trainer({"epochs": 1, "batch_size": batch, "model": {"layers": layers},
                       "optimizer": {"weight_decay": 0.0}})
    trainer.build(layers[0], layers[-1])
    X = rng.normal(size=(batch, layers[0])).astype(np.float32)
    y = rng.integers(0, layers[-1], batch)
    for _ in range(5):
        trainer.step(X, y)  # compile / warm up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.3:
        trainer.step(X, y)
        calls += 1
    result[name] = (time.perf_counter() - start) / calls
print(json.dumps(result))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    samples = {setting: {shape: [] for shape in SHAPES} for setting in SETTINGS}
    for _ in range(args.rounds):
        for setting, env in SETTINGS.items():
            out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(SHAPES)], env={**os.environ, **env},
                                 capture_output=True, text=True, check=True)
            for shape, seconds in json.loads(out.stdout).items():
                samples[setting][shape].append(seconds)
    medians = {s: {shape: statistics.median(v) for shape, v in per.items()} for s, per in samples.items()}
    if args.json:
        print(json.dumps(medians))
        return
    print(f"cores={os.cpu_count()}  median µs per Trainer.step over {args.rounds} interleaved rounds")
    print(f"{'setting':<26}" + "".join(f"{shape:>13}" for shape in SHAPES))
    for setting, per in medians.items():
        print(f"{setting:<26}" + "".join(f"{per[shape] * 1e6:>13.0f}" for shape in SHAPES))


if __name__ == "__main__":
    main()
