"""Scoring a big X with numpy's BLAS pinned to one thread (model.one_blas_thread, for
bits that do not depend on the thread count): what it costs, quiet and beside a busy
process.

    python bench/predict_threads.py LABEL

MLP([784, 512, 10], float32).predict of 20,000 rows, the median of 7 calls after one
warm-up; run it against another checkout with PYTHONPATH, interleaved (bench/README.md).
"""

import os
import sys
import time

import numpy as np

from numbamlp import MLP

model = MLP([784, 512, 10], dtype="float32")
X = np.random.default_rng(0).random((20000, 784)).astype(np.float32)
model.predict(X)
times = []
for _ in range(7):
    start = time.perf_counter()
    model.predict(X)
    times.append(time.perf_counter() - start)
print(sys.argv[1] if len(sys.argv) > 1 else "", f"median {np.median(times) * 1000:.1f} ms",
      f"load {os.getloadavg()[0]:.2f}")
