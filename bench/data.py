"""Data at scale (issue 16): what `numbamlp train` costs in memory and time for each file
format, and what reading a file costs against pyarrow's own read of it.

    python bench/data.py [--rows 300000 3000000] [--features 50] [--classes 5] [--repeats 3]
                         [--dir /tmp] [--tree DIR]

For each size, a table of N x D numbers (rounded to 5 decimals, so a CSV holds them
exactly) with labels from a random linear teacher is generated into a temporary folder
under --dir (deleted at the end, never committed) as:

  .csv      pyarrow.csv.write_csv, a header and the label column last
  .parquet  pyarrow.parquet.write_table (float64 features, int64 labels)
  .npz      numpy.savez (float64 X, int64 y)
  npy/      X.npy (float32, memory-mapped by the reader) and y.npy (int64)

Every measurement is a fresh child process, its peak RSS taken by /usr/bin/time -f %M:

1. `numbamlp train --data SOURCE --epochs 1 --batch-size 256` (the default config:
   float32, 25 % test rows, standardised), once per format, plus once on builtin:digits: the
   fixed cost of Python, Numba and the libraries.  "x data" is (peak − digits peak) / the
   float32 feature data (N·D·4 bytes): issue 16's bound is 2.5.  A 1000-row file of each
   format gives that reader's own fixed cost too (pyarrow's libraries and allocator are
   ~90 MB of it for csv and parquet), the second ratio.  The test accuracy comes
   from the run's summary.json: every format holds the same numbers, so it must be equal.
2. Reading: numbamlp.data.load_dataset(file, dtype=float32) against pyarrow's own read of
   the same file (pyarrow.csv.read_csv, pyarrow.parquet.read_table), each timed inside its
   process around the call alone (imports excluded), interleaved, --repeats rounds, medians.
   The files are read once beforehand so every read finds them in the page cache.  Issue
   16's bound: numbamlp's read <= 1.5 x pyarrow's + 0.3 s.

--tree DIR runs numbamlp from another source tree (a folder holding numbamlp/, put first on
sys.path; kernels and cli come from the installed package): how bench/README.md measured
changes to files owned by others before they were applied.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FORMATS = ("csv", "parquet", "npz", "npy")

CHILD_CWD = None  # an empty folder: `python -c` puts its working directory first on sys.path

CLI = "import sys; sys.argv[0] = 'numbamlp'; from numbamlp.cli.main import command_line; command_line()"

READ_NUMBAMLP = """
import sys, time, json, numpy as np
from numbamlp.data import load_dataset
start = time.perf_counter()
data = load_dataset(sys.argv[1], dtype=np.float32)
print(json.dumps({"seconds": time.perf_counter() - start, "shape": list(data.X.shape)}))
"""

READ_PYARROW = """
import sys, time, json
import pyarrow.csv, pyarrow.parquet
path = sys.argv[1]
start = time.perf_counter()
table = pyarrow.csv.read_csv(path) if path.endswith(".csv") else pyarrow.parquet.read_table(path)
print(json.dumps({"seconds": time.perf_counter() - start, "shape": [table.num_rows, table.num_columns]}))
"""


def run_measured(code: str, args: list[str], tree: str | None) -> dict:
    """Run ``python -c code args`` in a fresh process under /usr/bin/time: its wall time, its
    own peak RSS (MB) and its stdout.  (Not os.wait4 here: Linux carries a process's peak RSS
    across exec, so a child forked from this process, which holds the generated table, would
    report this process's peak; /usr/bin/time forks from a small process.)"""
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.NamedTemporaryFile("r") as rss, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        returncode = subprocess.call(["/usr/bin/time", "-f", "%M", "-o", rss.name, sys.executable, "-c", code,
                                      *args], stdout=out, stderr=err, env=env, cwd=CHILD_CWD)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if returncode != 0:
            raise SystemExit(f"child failed ({' '.join(args)}):\n{err.read().decode()[-2000:]}")
        return {"wall": wall, "peak_mb": int(rss.read().split()[-1]) / 1024, "stdout": out.read().decode()}


def generate(folder: Path, rows: int, features: int, classes: int, seed: int = 0) -> dict[str, Path]:
    """The four files of one table; returns {format: path}."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(rows, features)), 5)
    teacher = rng.normal(size=(features, classes))
    y = np.argmax(X @ teacher + rng.normal(scale=2.0, size=(rows, classes)), axis=1).astype(np.int64)
    paths = {"csv": folder / "data.csv", "parquet": folder / "data.parquet", "npz": folder / "data.npz",
             "npy": folder / "npy"}
    table = pa.table({**{f"f{j}": X[:, j] for j in range(features)}, "label": y})
    pa_csv.write_csv(table, paths["csv"])
    pq.write_table(table, paths["parquet"])
    del table
    np.savez(paths["npz"], X=X, y=y)
    paths["npy"].mkdir()
    np.save(paths["npy"] / "X.npy", X.astype(np.float32))
    np.save(paths["npy"] / "y.npy", y)
    return paths


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else list(path.iterdir())
    return sum(f.stat().st_size for f in files) / 1e6


def warm_page_cache(path: Path) -> None:
    for file in [path] if path.is_file() else path.iterdir():
        with open(file, "rb") as f:
            while f.read(1 << 24):
                pass


def train(source: str, out: Path, tree: str | None) -> dict:
    result = run_measured(CLI, ["train", "--data", source, "--epochs", "1", "--batch-size", "256",
                                "--out", str(out), "--quiet"], tree)
    summary = json.loads((out / "summary.json").read_text())
    result["test_accuracy"] = summary["test_accuracy"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[300_000, 3_000_000])
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the files are generated")
    parser.add_argument("--tree", default=None, help="a source tree holding numbamlp/ to run instead")
    args = parser.parse_args()

    print(f"# bench/data.py  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {platform.node()}  "
          f"{os.cpu_count()} CPUs  load {os.getloadavg()[0]:.2f}  python {platform.python_version()}  "
          f"numpy {np.__version__}  tree {args.tree or 'installed'}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="numbamlp-bench-data-") as tmp:
        tmp = Path(tmp)
        global CHILD_CWD
        CHILD_CWD = tmp / "cwd"
        CHILD_CWD.mkdir()
        tiny = train("builtin:digits", tmp / "run-digits", args.tree)
        print(f"builtin:digits (fixed cost): wall {tiny['wall']:.2f} s, peak {tiny['peak_mb']:.0f} MB", flush=True)
        (tmp / "tiny").mkdir()
        tiny_paths = generate(tmp / "tiny", 1000, args.features, args.classes)
        fixed = {fmt: train(str(tiny_paths[fmt]), tmp / f"run-tiny-{fmt}", args.tree)["peak_mb"] for fmt in FORMATS}
        print("1000-row file of each format (the fixed cost with that reader's imports, pyarrow's for csv "
              "and parquet): " + ", ".join(f"{fmt} {mb:.0f} MB" for fmt, mb in fixed.items()), flush=True)
        for rows in args.rows:
            folder = tmp / f"n{rows}"
            folder.mkdir()
            start = time.perf_counter()
            paths = generate(folder, rows, args.features, args.classes)
            data_mb = rows * args.features * 4 / 1e6
            print(f"\n## {rows} x {args.features} ({data_mb:.0f} MB as float32; files generated in "
                  f"{time.perf_counter() - start:.1f} s)  load {os.getloadavg()[0]:.2f}", flush=True)
            for path in paths.values():
                warm_page_cache(path)
            reads: dict[str, dict[str, list[float]]] = {f: {"numbamlp": [], "pyarrow": []} for f in FORMATS}
            for _ in range(args.repeats):  # interleaved: numbamlp, pyarrow, format after format
                for fmt in FORMATS:
                    reader = run_measured(READ_NUMBAMLP, [str(paths[fmt])], args.tree)
                    reads[fmt]["numbamlp"].append(json.loads(reader["stdout"])["seconds"])
                    if fmt in ("csv", "parquet"):
                        own = run_measured(READ_PYARROW, [str(paths[fmt])], args.tree)
                        reads[fmt]["pyarrow"].append(json.loads(own["stdout"])["seconds"])
            print("| format | file MB | train wall s | peak RSS MB | above digits, x float32 data "
                  "| above a 1000-row file, x data | test acc | numbamlp read s | pyarrow read s | read ratio |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            for fmt in FORMATS:
                run = train(str(paths[fmt]), folder / f"run-{fmt}", args.tree)
                ratio = (run["peak_mb"] - tiny["peak_mb"]) / data_mb
                ours = statistics.median(reads[fmt]["numbamlp"])
                theirs = statistics.median(reads[fmt]["pyarrow"]) if reads[fmt]["pyarrow"] else None
                own_fixed = (run["peak_mb"] - fixed[fmt]) / data_mb
                print(f"| {fmt} | {size_mb(paths[fmt]):.0f} | {run['wall']:.2f} | {run['peak_mb']:.0f} | {ratio:.2f} "
                      f"| {own_fixed:.2f} "
                      f"| {run['test_accuracy']:.4f} | {ours:.2f} | "
                      f"{'' if theirs is None else f'{theirs:.2f}'} | "
                      f"{'' if theirs is None else f'{ours / theirs:.2f}'} |", flush=True)
            print("reads, every round (s): " + json.dumps(
                {f: {k: [round(v, 3) for v in vs] for k, vs in r.items() if vs} for f, r in reads.items()}))
            print(f"load {os.getloadavg()[0]:.2f}", flush=True)
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
