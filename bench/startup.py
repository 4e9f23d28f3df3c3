"""Where a warm `numbamlp train` spends its time, phase by phase, and what the start-up
savings recorded in bench/README.md are worth on this machine today.

    python bench/startup.py [--rounds 5] [--cold]

Three parts, every measurement a fresh process, the variants interleaved round by round,
medians (and every run) printed:

1. Phases of `numbamlp train --quiet` (digits, defaults), the real command run in process
   (numbamlp.cli.main.command_line) with perf_counter marks around: importing the CLI,
   preparing the data (numbamlp.data.prepare), the first get_backend call (importing the
   cpu backend: Numba and scipy's BLAS), the training (Trainer.fit), within it the first
   stack_step call (loading the compiled step from Numba's cache, or compiling it with
   --cold) and the remaining steps, and evaluation on the test rows.  "process start + exit"
   is the process's wall time less everything measured inside it (the interpreter's start,
   site imports, the exit).  With an empty cache (--cold), Numba's compile events give the
   compile time by function, each excluding the functions it compiles in turn.
2. Python's garbage collector: the console script (command_line: collector held off during
   start-up, objects frozen at exit) against numbamlp.cli.main.main with Python's default
   collection, whole processes.
3. Imports the README discusses, each timed inside a fresh process after numpy: Numba,
   scipy.linalg (the usual way to reach scipy's BLAS), scipy's BLAS extension module alone
   (how the cpu backend loads it, kernels/blas.py load_scipy_blas), scipy.special.

`python -X importtime -c "import numbamlp.kernels.cpu_backend"` breaks part 3 down further.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
marks = {}
compiles, stack = {}, []

def listen_to_compiles():
    # Numba's compile events: compile time by function, exclusive of the callees it
    # compiles (registered once Numba is imported, so as not to move the import phases).
    from numba.core import event

    class Compiles(event.Listener):
        def on_start(self, e):
            stack.append([getattr(e.data["dispatcher"], "__qualname__", "?"), time.perf_counter(), 0.0])

        def on_end(self, e):
            name, start, inner = stack.pop()
            seconds = time.perf_counter() - start
            compiles[name] = compiles.get(name, 0.0) + seconds - inner
            if stack:
                stack[-1][2] += seconds
    event.register("numba:compile", Compiles())

import numpy as np
marks["import numpy"] = time.perf_counter() - t0
t = time.perf_counter()
import numbamlp.cli.main as cli
import numbamlp.data, numbamlp.kernels
marks["import the CLI (click, numbamlp)"] = time.perf_counter() - t

def timed(module, name, label, first_only=False):
    original = getattr(module, name)
    calls = [0]
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if first_only and calls[0] > 1:
            return original(*args, **kwargs)
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            marks[label] = marks.get(label, 0.0) + time.perf_counter() - start
    setattr(module, name, wrapper)

timed(numbamlp.data, "prepare", "read digits, split, standardise")
timed(numbamlp.kernels, "get_backend", "import the cpu backend (Numba, scipy's BLAS)", first_only=True)
from numbamlp.trainer import Trainer
timed(Trainer, "fit", "train: 30 epochs")
timed(Trainer, "evaluate", "evaluate on the test rows")
import numbamlp.kernels as kernels
original_get = kernels.get_backend
def get_backend(name="cpu"):
    backend = original_get(name)
    if name == "cpu" and not getattr(backend, "_bench_wrapped", False):
        backend._bench_wrapped = True
        listen_to_compiles()
        timed(backend, "stack_step", "  of which the first step (cache load or compile)", first_only=True)
    return backend
kernels.get_backend = get_backend
sys.argv = ["numbamlp", "train", "--quiet", "--out", sys.argv[1]]
try:
    cli.command_line()
except SystemExit:
    pass
marks["everything in process"] = time.perf_counter() - t0
print(json.dumps({"marks": marks, "compiles": compiles}))
"""

IMPORTS = {
    "import numba": "import numba",
    "import scipy.linalg": "import scipy.linalg",
    "scipy's BLAS module alone": (
        "import importlib.machinery, importlib.util, os\n"
        "home = importlib.util.find_spec('scipy').submodule_search_locations[0]\n"
        "for suffix in importlib.machinery.EXTENSION_SUFFIXES:\n"
        "    path = os.path.join(home, 'linalg', 'cython_blas' + suffix)\n"
        "    if os.path.isfile(path):\n"
        "        spec = importlib.util.spec_from_file_location('scipy.linalg.cython_blas', path)\n"
        "        spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "        break\n"),
    "import scipy.special": "import scipy.special",
}
IMPORT_PROBE = "import numpy, time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)\n"


def run(command, env=None) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def line(name, values, unit="s", digits=3):
    runs = ", ".join(f"{v:.{digits}f}" for v in values)
    return f"{name:<60} {statistics.median(values):8.{digits}f} {unit}   [{runs}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="part 1 with an empty compile cache every round")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="numbamlp-startup-"))
    numbamlp = str(Path(sys.executable).with_name("numbamlp"))
    run([numbamlp, "train", "--quiet", "--out", str(work / "warmup")])  # a warm cache
    phases, walls, compiles = {}, [], {}
    gc_rows = {"console script (numbamlp train)": [], "main() with Python's default collection": []}
    imports = {name: [] for name in IMPORTS}
    for r in range(args.rounds):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(work / f"cache{r}")} if args.cold else None
        wall, out = run([sys.executable, "-c", PHASES, str(work / f"phases{r}")], env=env)
        walls.append(wall)
        result = json.loads(out)
        for name, seconds in result["marks"].items():
            phases.setdefault(name, []).append(seconds)
        for name, seconds in result["compiles"].items():
            compiles.setdefault(name, []).append(seconds)
        gc_order = list(gc_rows) if r % 2 == 0 else list(gc_rows)[::-1]
        for name in gc_order:
            if name.startswith("console"):
                wall_gc, _ = run([numbamlp, "train", "--quiet", "--out", str(work / f"gc-a{r}")])
            else:
                wall_gc, _ = run([sys.executable, "-c", "import sys; from numbamlp.cli.main import main; "
                                  f"sys.argv = ['numbamlp', 'train', '--quiet', '--out', {str(work / f'gc-b{r}')!r}]; "
                                  "main()"])
            gc_rows[name].append(wall_gc)
        for name, code in IMPORTS.items():
            _, out = run([sys.executable, "-c", IMPORT_PROBE.format(code=code)])
            imports[name].append(float(out))
    inside = phases.pop("everything in process")
    first_step = phases.pop("  of which the first step (cache load or compile)")
    measured = [sum(values) for values in zip(*phases.values())]
    order = ["import numpy", "import the CLI (click, numbamlp)", "import the cpu backend (Numba, scipy's BLAS)",
             "read digits, split, standardise", "train: 30 epochs", "evaluate on the test rows"]
    print(f"cores={os.cpu_count()} python={sys.version.split()[0]}  {args.rounds} rounds, medians [every run]")
    print(f"1. phases of `numbamlp train --quiet` ({'empty' if args.cold else 'warm'} compile cache), in process")
    for name in order:
        print(line(name, phases[name]))
        if name.startswith("train"):
            print(line("  of which the first step (cache load or compile)", first_step))
            print(line("  of which the other steps, shuffles, epoch metrics",
                       [t - f for t, f in zip(phases[name], first_step)]))
    print(line("the rest in process (click, config, run directory, model)",
               [i - m for i, m in zip(inside, measured)]))
    print(line("process start + exit (wall less the above in process)", [w - i for w, i in zip(walls, inside)]))
    print(line("whole process (wall)", walls))
    if compiles:
        total = [sum(run) for run in zip(*compiles.values())]
        print(line("compiled, by Numba's compile events (sum)", total))
        top = sorted(compiles, key=lambda name: -statistics.median(compiles[name]))
        for name in top[:15]:
            print(line(f"  {name} (excluding what it calls)", compiles[name]))
        if len(top) > 15:
            print(line(f"  the other {len(top) - 15} functions",
                       [sum(run) for run in zip(*(compiles[name] for name in top[15:]))]))
    print("2. garbage collection, whole `numbamlp train --quiet` processes")
    for name, values in gc_rows.items():
        print(line(name, values))
    print("3. imports, each in a fresh process after numpy")
    for name, values in imports.items():
        print(line(name, values))


if __name__ == "__main__":
    main()
