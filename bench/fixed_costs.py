"""Fixed costs per call (issue 24): what partial_fit and predict cost beyond their arithmetic.

    python bench/fixed_costs.py [--repeats 2000] [--rounds 5]
    python bench/fixed_costs.py --stream 10000

Digits (1,797 × 64, float32), MLPClassifier(hidden_layer_sizes=(64,), random_state=0), fitted
with partial_fit.  Medians over REPEATS calls of each, after a warm-up (the compiles and
first-call caches excluded); the cases take turns in ROUNDS rounds (each round runs every
case REPEATS / ROUNDS times), so a change in the machine's load falls on all of them:

- MLPClassifier.partial_fit on 32 rows (one step of batch_size 32) and on 224 rows (7
  steps), against the same number of Trainer.step calls on the same batches (the work
  partial_fit's epoch does, without its per-call checks and set-up);
- MLP.predict (the fitted model_, backend "auto"), MLPClassifier.predict and predict_proba,
  on 1 row and on 32 rows;
- onnxruntime on the exported model (numbamlp.export_onnx), 1 and 32 rows, one thread
  (skipped when onnx or onnxruntime is missing).

With --stream N (only this): N partial_fit calls in a row on 32-row chunks of digits, the
median per call in each quarter of them (a cost that grows with the epochs so far shows).

The machine, its load before and after, and the versions are printed with the table.
Nothing here is a test: the bits are tests/test_estimator.py's and tests/test_model.py's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def revision() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "numbamlp"], cwd=root, capture_output=True,
                               text=True).stdout.strip()
        return head + (" + uncommitted changes in numbamlp/" if dirty else "")
    except OSError:
        return "?"


def cases(repeats_warm: int):
    """{name: a call of no arguments}, everything set up and warmed."""
    import numbamlp
    from sklearn.datasets import load_digits

    from numbamlp import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=0, batch_size=32)
    clf.partial_fit(X[:224], y[:224], classes=np.unique(y))
    trainer = clf._trainer
    y_idx = np.searchsorted(clf.classes_, y)
    chunk1, chunk7 = (X[224:256], y[224:256]), (X[256:480], y[256:480])
    batches7 = [(np.ascontiguousarray(X[lo : lo + 32]), y_idx[lo : lo + 32]) for lo in range(256, 480, 32)]
    batch1 = (np.ascontiguousarray(X[224:256]), y_idx[224:256])
    one, many = X[:1].copy(), X[:32].copy()
    model = clf.model_

    def steps(batches):
        def run():
            for Xb, yb in batches:
                trainer.step(Xb, yb)
        return run

    table = {
        "partial_fit, 32 rows (1 step)": lambda: clf.partial_fit(*chunk1),
        "Trainer.step x1 (32 rows)": steps([batch1]),
        "partial_fit, 224 rows (7 steps)": lambda: clf.partial_fit(*chunk7),
        "Trainer.step x7 (224 rows)": steps(batches7),
        "MLP.predict, 1 row": lambda: model.predict(one),
        "MLP.predict, 32 rows": lambda: model.predict(many),
        "MLPClassifier.predict, 1 row": lambda: clf.predict(one),
        "MLPClassifier.predict, 32 rows": lambda: clf.predict(many),
        "MLPClassifier.predict_proba, 1 row": lambda: clf.predict_proba(one),
        "MLPClassifier.predict_proba, 32 rows": lambda: clf.predict_proba(many),
    }
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            numbamlp.export_onnx(clf, path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        table["onnxruntime, 1 row"] = lambda: session.run(None, {name: one})
        table["onnxruntime, 32 rows"] = lambda: session.run(None, {name: many})
    except ImportError as err:
        print(f"onnxruntime rows skipped: {err}")
    for call in table.values():
        for _ in range(repeats_warm):
            call()
    return table


def stream(calls: int) -> None:
    from sklearn.datasets import load_digits

    from numbamlp import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=0, batch_size=32)
    clf.partial_fit(X[:32], y[:32], classes=np.unique(y))
    times = []
    for n in range(calls):
        lo = (n * 32) % (len(X) - 32)
        start = time.perf_counter()
        clf.partial_fit(X[lo : lo + 32], y[lo : lo + 32])
        times.append(time.perf_counter() - start)
    print(f"load after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    quarter = max(1, calls // 4)
    for lo in range(0, calls, quarter):
        print(f"partial_fit calls {lo + 1:>7,}-{min(lo + quarter, calls):>7,}: median "
              f"{statistics.median(times[lo : lo + quarter]) * 1e6:8.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2000, help="timed calls of each case (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the cases take turns in (default 5)")
    parser.add_argument("--stream", type=int, metavar="N", help="only: N partial_fit calls in a row, by quarter")
    args = parser.parse_args()

    import numba
    import sklearn

    import numbamlp

    print(f"machine: {machine()}")
    print(f"load before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}", f"numba {numba.__version__}",
                f"scikit-learn {sklearn.__version__}", f"numbamlp {numbamlp.__version__} ({revision()})"]
    try:
        import onnxruntime

        versions.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    print("versions: " + ", ".join(versions))
    if args.stream:
        return stream(args.stream)

    table = cases(repeats_warm=20)
    times = {name: [] for name in table}
    per_round = max(1, args.repeats // args.rounds)
    for _ in range(args.rounds):
        for name, call in table.items():
            for _ in range(per_round):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    print(f"load after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"\n{'case':40s} {'median µs':>10s} {'p10':>9s} {'p90':>9s}   ({per_round * args.rounds} calls)")
    for name, samples in times.items():
        q = np.percentile(np.array(samples) * 1e6, [10, 90])
        print(f"{name:40s} {statistics.median(samples) * 1e6:10.1f} {q[0]:9.1f} {q[1]:9.1f}")


if __name__ == "__main__":
    main()
