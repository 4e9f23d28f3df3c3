"""Cold start before and after: `numbamlp train` on an empty compile cache, for the package
as it is in two (or more) commits, interleaved.

    python bench/cold_start.py [--rounds 5] [--warm] COMMIT [COMMIT ...] [-- TRAIN ARGS]

    e.g. python bench/cold_start.py --rounds 7 65a8a19 d453215
         python bench/cold_start.py 65a8a19 d453215 -- --activation gelu --optimizer adam

Each commit's numbamlp, numbamlp.kernels and numbamlp.cli are unpacked (git archive) into a
temporary directory laid out as installed, and `numbamlp train --quiet [TRAIN ARGS]` runs
with PYTHONPATH pointing there and NUMBA_CACHE_DIR a new empty directory every run (a
user's very first run); "WORKTREE" stands for the checkout as it is.  Runs alternate between
the commits, the order reversed every other round; medians and every run are printed.
--warm: each commit keeps one cache, filled before the first round (the warm start).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def unpack(commit: str, into: Path) -> Path:
    """The package of ``commit`` laid out as installed: into/numbamlp/{kernels,cli}."""
    if commit == "WORKTREE":
        return Path()  # PYTHONPATH left alone: the installed (editable) checkout
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "numbamlp", "kernels", "cli"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "kernels").rename(into / "numbamlp" / "kernels")
    (into / "cli").rename(into / "numbamlp" / "cli")
    return into


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commits", nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm", action="store_true")
    args = parser.parse_args(argv)
    numbamlp = str(Path(sys.executable).with_name("numbamlp"))
    work = Path(tempfile.mkdtemp(prefix="numbamlp-cold-"))
    samples = {commit: [] for commit in args.commits}
    try:
        packages = {commit: unpack(commit, work / f"pkg-{i}") for i, commit in enumerate(args.commits)}

        def run(commit, cache, out):
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR")}
            if packages[commit] != Path():
                env["PYTHONPATH"] = str(packages[commit])
            env["NUMBA_CACHE_DIR"] = str(cache)
            start = time.perf_counter()
            done = subprocess.run([numbamlp, "train", "--quiet", "--out", str(out), *train_args], env=env,
                                  capture_output=True, text=True, cwd=work)
            if done.returncode != 0:
                raise SystemExit(f"{commit}: numbamlp train failed:\n{done.stderr[-2000:]}")
            return time.perf_counter() - start, done.stdout.strip().splitlines()[-1]

        outputs = {}
        if args.warm:
            for i, commit in enumerate(args.commits):
                run(commit, work / f"cache-{i}", work / f"warmup-{i}")
        for r in range(args.rounds):
            order = list(enumerate(args.commits))
            for i, commit in order if r % 2 == 0 else order[::-1]:
                cache = work / f"cache-{i}" if args.warm else work / f"cache-{i}-{r}"
                seconds, outputs[commit] = run(commit, cache, work / f"run-{i}-{r}")
                samples[commit].append(seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"cores={os.cpu_count()}  `numbamlp train --quiet {' '.join(train_args)}`".rstrip("` ") + "`, "
          f"{'warm' if args.warm else 'empty'} compile cache, {args.rounds} interleaved rounds: median [every run]")
    for commit, values in samples.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{commit:<10} {statistics.median(values):6.2f} s  [{runs}]  {outputs[commit]}")


if __name__ == "__main__":
    main()
