"""How should numbamlp use the cores?  Trainer.step under thread settings.

    python bench/threads.py [--rounds 5]

Thread settings only take effect before the libraries start, so each setting runs in its
own subprocess (settings alternate, round by round, so that machine noise hits all of
them alike); each reports the median seconds per ``Trainer.step`` (float32, SGD with
momentum, ReLU) at five shapes.  Settings other than "as shipped" recompile the cpu
backend (uncached) with one thing changed:

- serial / parallel elementwise: every elementwise and per-row kernel, the optimizer
  updates included, compiled without / with parallel=True (as shipped: only the optimizer
  updates, which go parallel past a size, see kernels/cpu_backend.py);
- 1 thread: NUMBA_NUM_THREADS=1;
- BLAS on 2 threads in the blocks: scipy's OpenBLAS not pinned to one thread, so each
  GEMM block's BLAS call starts its own threads inside Numba's;
- previous design: one BLAS call per GEMM with OpenBLAS on every core, elementwise serial
  (what numbamlp shipped before the GEMMs were blocked; its bits depend on the thread count).

Run it with OPENBLAS_CORETYPE unset to let OpenBLAS use this machine's own kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

SHAPES = {"small": ([64, 128, 10], 32), "two-hidden": ([64, 256, 128, 10], 32),
          "mnist": ([784, 512, 10], 128), "deep": ([784, 1024, 1024, 10], 256),
          "large": ([784, 2048, 2048, 10], 1024)}
SETTINGS = {
    "as shipped": {},
    "serial elementwise": {"BENCH_ELEMENTWISE": "serial"},
    "parallel elementwise": {"BENCH_ELEMENTWISE": "parallel"},
    "1 thread": {"NUMBA_NUM_THREADS": "1"},
    "BLAS on 2 threads in the blocks": {"BENCH_BLAS_THREADS": "2"},
    "previous design": {"BENCH_ELEMENTWISE": "serial", "BENCH_GEMM_BLOCKS": "1", "BENCH_BLAS_THREADS": "2"},
}

WORKER = r"""
import json, os, sys, time
import numpy as np
from numbamlp.trainer import Trainer
from numbamlp.kernels import cpu_backend
if any(k.startswith("BENCH_") for k in os.environ):
    # Recompile (uncached) every kernel with the setting's change.  A compiled function
    # resolves its callees when it is compiled, so replacing them all first is enough.
    import numba
    if os.environ.get("BENCH_GEMM_BLOCKS"):
        cpu_backend.GEMM_MAX_BLOCKS = int(os.environ["BENCH_GEMM_BLOCKS"])
    elementwise_setting = os.environ.get("BENCH_ELEMENTWISE")  # None: as shipped
    names = [n for n in dir(cpu_backend) if hasattr(getattr(cpu_backend, n), "py_func")]
    for name in names:
        dispatcher = getattr(cpu_backend, name)
        parallel = bool(dispatcher.targetoptions.get("parallel"))
        elementwise = ((name.endswith(("_forward", "_backward", "_update")) and not name.startswith(("affine", "_")))
                       or name == "_update_in_chunks")  # the optimizers' parallel part
        if elementwise and elementwise_setting:
            parallel = elementwise_setting == "parallel"
        setattr(cpu_backend, name, numba.njit(parallel=parallel, nogil=True, error_model="numpy")(dispatcher.py_func))
    # The step a run calls is compiled for it on first use (cpu_backend.stack_function,
    # with the module's options): uncached here, or this setting's code would be saved
    # under the key from which a normal run loads its step.
    cpu_backend._SERIAL = {**cpu_backend._SERIAL, "cache": False}
    cpu_backend._PARALLEL = {**cpu_backend._PARALLEL, "cache": False}
if os.environ.get("BENCH_BLAS_THREADS"):
    from threadpoolctl import threadpool_limits
    threadpool_limits(int(os.environ["BENCH_BLAS_THREADS"]), user_api="blas")
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
    print(f"{'setting':<32}" + "".join(f"{shape:>13}" for shape in SHAPES))
    for setting, per in medians.items():
        print(f"{setting:<32}" + "".join(f"{per[shape] * 1e6:>13.0f}" for shape in SHAPES))


if __name__ == "__main__":
    main()
