"""A search that learns (issue 28): `numbamlp sweep --search tpe --prune asha` against the
64-member grid it searches, against Optuna + scikit-learn's MLPClassifier doing the same
search, and a search's refilled stacks against stacks left to run out.

    python bench/search.py [--out DIR] [--rounds 3] [--seeds 5] [--trials 24]
                           [--parts grid search sklearn refill] [--rows 50000] [--epochs 27]
                           [--min-epochs 3] [--reduction-factor 3] [--batch-size 64]
                           [--sklearn-grid-rounds 1]
    python bench/search.py --quick          (everything tiny: a smoke test, under a minute)

The defaults are the full run (about 15 minutes on the 2-core development machine, most of
it scikit-learn's: its grid ~3 minutes, each of its searches ~1).  --quick: 6,000 rows,
9 epochs, R 1, 10 trials, 2 seeds, 1 round (no number of it means anything).

The data (written to --out as data.npz, float32): sklearn.datasets.make_classification(
n_samples=--rows, n_features=40, n_informative=20, n_redundant=10, n_classes=5,
n_clusters_per_class=3, class_sep=1.0, flip_y=0.02, random_state=0).  Split once, by
numbamlp: data.seed 0, test_fraction 0.25, val_fraction 0.1 of the rest, standardised with
the training rows' statistics (numbamlp.data.prepare_for, exactly the sweep's call); the
scikit-learn side reads those arrays (split.npz), so both tools train and validate on the
same rows.  At 50,000 rows: 33,750 training rows, 3,750 validation rows, 12,500 test rows.
The numbamlp grid then takes a few tens of seconds here (30 s at 30,000 rows under load 2.7).

The space (every tool, every part): optimizer.lr ∈ {3e-4, 1e-3, 3e-3, 1e-2} ×
model.hidden ∈ {[32], [64], [128], [64, 64]} × optimizer.weight_decay ∈ {0, 1e-4, 1e-3,
1e-2}: 64 combinations; Adam, ReLU, batch --batch-size, --epochs epochs, float32.
scikit-learn's MLPClassifier gets the same: solver "adam", learning_rate_init = lr, its L2
alpha = weight_decay × batch (its penalty's gradient is alpha·W / batch, numbamlp's
weight_decay·W), batch_size, shuffle, relu; one partial_fit call per epoch.

Seeds.  numbamlp's search seeds its sampler with the base config's --seed, which is also
every member's seed (weights, shuffles) and, unless data.seed is set, the split's.  So here
the split is pinned (--data-seed 0) and the members' seed too, by a one-value grid key
(`--grid seed=0`, a one-choice dimension of the search); the search's --seed S (S = 0 ..
--seeds-1) then moves only its sampler, and a trial is bit for bit the grid's member of the
same settings (the grid itself runs at --seed 0): the grid's 64 scores are the table the
search looks things up in.  scikit-learn's side does the same (random_state 0 for every
member and trial, TPESampler(seed=S)).

Parts (--parts, default all); every timing is one whole command, a fresh process started
from here (interpreter start, imports, data, compile cache, writing the sweep's directory),
wall clock; a warm-up grid of 1 epoch and a 2-trial search come first (Numba's cache, the
page cache), untimed:

  grid     `numbamlp sweep --data data.npz --data-seed 0 --val-fraction 0.1 --seed 0
           --optimizer adam --batch-size B --epochs E --grid optimizer.lr=...
           --grid model.hidden=... --grid optimizer.weight_decay=... --out DIR --json`,
           once a round.  Its target: the 6th best val_accuracy of the 64 (the top 10 %).
  search   per search seed S, once (seeds spread over the rounds, between the grids): the
           grid's command with --seed S --grid seed=0 --search tpe --trials T --prune asha
           --min-epochs R --reduction-factor ETA (R 3, η 3, 27 epochs: ASHA's rungs at
           epochs 3 and 9; about two thirds of the trials stop at 3, a few go on to 9, the
           rest train all 27 — the table counts where they stopped).  Goal 1: the search's
           best finished trial reaches the grid's target, and its wall ≤ 0.3 × the grid's
           median wall, in at least 4 of 5 seeds.  Also "time to target": from the command's start to the
           first finished trial (done or stopped early; a pruned trial is never the best)
           at or above the target: the modification time of its members/<n>/summary.json,
           written as the trial ends.  Goal 4 (a note): peak RSS of every numbamlp command
           (/usr/bin/time -f %M), search against grid.
  sklearn  (Goal 2) scikit-learn's own grid: `python bench/search.py --child sklearn-grid`,
           the 64 members under joblib (2 processes, loky: 1 BLAS thread each), each
           E partial_fit epochs then scored on the validation rows; in the first
           --sklearn-grid-rounds rounds (its scores, so its target, never change).  Its
           target: its own 6th best.  Then per seed S, once: `python bench/search.py
           --child sklearn-search`, an Optuna study (in memory) with TPESampler(seed=S) and
           SuccessiveHalvingPruner(min_resource=R, reduction_factor=ETA), T trials over the
           same space (the same parameter names and choices as numbamlp's study),
           study.optimize one trial at a time (BLAS on all cores), each trial partial_fit
           one epoch, trial.report(val accuracy, epoch), trial.should_prune() (not after
           the last epoch: numbamlp asks only running trials).  Goal: numbamlp ≥ 5× faster
           to the target, each tool's target its own grid's: time to target, and whole
           walls, per seed.
  order    once, after the rounds: per search seed S, TPE + ASHA as in `search`, through
           numbamlp.sweep in a fresh child each (`--child order`), with its stacks' epochs
           taken "furthest" first (the search's own order) and "in turns" (the order
           before), counting the member-epochs trained (a TrialWatch) until the first
           finished trial reaches the grid's target, and in all: a count that does not
           depend on the machine's speed or load.
  refill   (Goal 3) --search random (seed 0) with asha over one shape, so that its trials
           queue for one stack and refilling has slots to fill: model.hidden [64],
           optimizer.lr loguniform:3e-4:1e-2 (no two trials alike) × optimizer.weight_decay
           as above, --trials trials in a stack of 8, through the Python API
           (numbamlp.sweep(..., refill=True|False)) in a fresh child each: `python
           bench/search.py --child refill`, the two alternating, --rounds rounds; the median
           wall with refilling ÷ without (goal ≤ 0.7).  Without, the trials go in waves of 8,
           each wave's stack running on with its survivors until its last ends.  Both ask the
           same trials; which are pruned may differ (the pruner sees them in another order),
           so their member-epochs are shown.

Every failed child is reported by the last line of its stderr and the rest goes on.  The
tables are markdown; the last line is every raw number (per round, per seed) as JSON.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]
PARTS = ("grid", "search", "sklearn", "refill", "order")
SPACE = {  # the grid, and the search's space (a list of values: a choice)
    "optimizer.lr": [0.0003, 0.001, 0.003, 0.01],
    "model.hidden": [[32], [64], [128], [64, 64]],
    "optimizer.weight_decay": [0, 0.0001, 0.001, 0.01],
}
# the refill part's space: one shape (model.hidden [64], in its base), every trial its own settings
REFILL_SPACE = {"optimizer.lr": ["loguniform:0.0003:0.01"], "optimizer.weight_decay": SPACE["optimizer.weight_decay"]}
TOP_SHARE = 0.1  # the target: the grid's top 10 % (the 6th best of 64)
DATA = dict(n_features=40, n_informative=20, n_redundant=10, n_classes=5, n_clusters_per_class=3, class_sep=1.0,
            flip_y=0.02, random_state=0)
SKLEARN_JOBS = 2  # scikit-learn's grid: joblib processes
FULL = dict(rows=50_000, epochs=27, min_epochs=3, reduction_factor=3, trials=24, seeds=5, rounds=3)
QUICK = dict(rows=6_000, epochs=9, min_epochs=1, reduction_factor=3, trials=10, seeds=2, rounds=1)


# ---------------------------------------------------------------- helpers
def grid_flags(space: dict) -> list[str]:
    flags = []
    for key, values in space.items():
        flags += ["--grid", f"{key}=" + ",".join(json.dumps(v, separators=(",", ":")) for v in values)]
    return flags


def settings_key(row: dict) -> tuple:
    """A member's settings, comparable across tools: (lr, hidden, weight decay)."""
    return (float(row["optimizer.lr"]), tuple(row["model.hidden"]), float(row["optimizer.weight_decay"]))


def target_of(scores: list[float]) -> float:
    """The top TOP_SHARE's bound: the k-th best score, k = floor(TOP_SHARE × n) (6 of 64)."""
    ordered = sorted(scores, reverse=True)
    return ordered[max(1, math.floor(TOP_SHARE * len(ordered))) - 1]


def last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cell(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def run_child(command: list[str], cwd: Path) -> dict:
    """A fresh process timed as a whole (wall clock), its peak RSS from /usr/bin/time; its
    start (time.time(), for times to target), stdout, return code and stderr's last line."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        prefix = ["/usr/bin/time", "-f", "%M", "-o", rss.name] if Path("/usr/bin/time").exists() else []
        started = time.time()
        start = time.perf_counter()
        done = subprocess.run(prefix + command, capture_output=True, text=True, cwd=cwd)
        wall = time.perf_counter() - start
        peak = None
        if prefix and done.returncode == 0:
            try:
                peak = int(rss.read().split()[-1]) / 1024
            except (ValueError, IndexError):
                peak = None
    return {"wall": wall, "started": started, "stdout": done.stdout, "rc": done.returncode,
            "error": last_line(done.stderr), "peak_mb": peak}


# ---------------------------------------------------------------- children (scikit-learn, refill)
def _mlp(params: dict, batch: int):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=tuple(params["model.hidden"]), activation="relu", solver="adam",
                         learning_rate_init=float(params["optimizer.lr"]),
                         alpha=float(params["optimizer.weight_decay"]) * batch, batch_size=batch, shuffle=True,
                         random_state=int(params.get("seed", 0)))


_SPLIT: dict = {}


def _split(path: str):
    if path not in _SPLIT:
        import numpy as np

        with np.load(path) as arrays:
            _SPLIT[path] = {k: arrays[k] for k in ("X_train", "y_train", "X_val", "y_val")}
    return _SPLIT[path]


def _grid_member(params: dict, split: str, epochs: int, batch: int) -> float:
    """(In a joblib worker.)  One member of scikit-learn's grid: epochs partial_fit calls,
    then its validation accuracy."""
    import numpy as np

    d = _split(split)
    model = _mlp(params, batch)
    classes = np.unique(d["y_train"])
    for _ in range(epochs):
        model.partial_fit(d["X_train"], d["y_train"], classes=classes)
    return float(model.score(d["X_val"], d["y_val"]))


def child_sklearn_grid(spec: dict) -> None:
    from joblib import Parallel, delayed

    combos = [dict(zip(SPACE, values)) for values in itertools.product(*SPACE.values())]
    scores = Parallel(n_jobs=spec["jobs"])(delayed(_grid_member)(params, spec["split"], spec["epochs"], spec["batch"])
                                           for params in combos)
    print(json.dumps({"rows": [{**params, "val_accuracy": score} for params, score in zip(combos, scores)]}))


def child_sklearn_search(spec: dict) -> None:
    """Optuna + scikit-learn, as its users write it: study.optimize, one epoch per report."""
    import numpy as np
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    d = _split(spec["split"])
    classes = np.unique(d["y_train"])
    epochs, batch = spec["epochs"], spec["batch"]
    # the same parameters as numbamlp's study: each key's values as JSON texts, and seed [0]
    space = [(key, [json.dumps(v) for v in values]) for key, values in {**SPACE, "seed": [0]}.items()]

    def objective(trial):
        params = {key: json.loads(trial.suggest_categorical(key, choices)) for key, choices in space}
        model = _mlp(params, batch)
        for epoch in range(1, epochs + 1):
            model.partial_fit(d["X_train"], d["y_train"], classes=classes)
            score = float(model.score(d["X_val"], d["y_val"]))
            trial.report(score, epoch)
            trial.set_user_attr("epochs", epoch)
            if epoch < epochs and trial.should_prune():
                raise optuna.TrialPruned()
        return score

    records = []

    def record(study, trial) -> None:
        records.append({"number": trial.number, "params": {k: json.loads(v) for k, v in trial.params.items()},
                        "state": trial.state.name.lower(), "value": trial.value,
                        "last": trial.intermediate_values.get(max(trial.intermediate_values, default=0)),
                        "epochs": trial.user_attrs.get("epochs", 0), "t": time.time()})

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=spec["seed"]),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(
                                    min_resource=spec["min_epochs"], reduction_factor=spec["reduction_factor"]))
    study.optimize(objective, n_trials=spec["trials"], callbacks=[record])
    print(json.dumps({"trials": records}))


def child_refill(spec: dict) -> None:
    """numbamlp.sweep(..., search="random", prune="asha", refill=...) in this fresh process."""
    import numbamlp

    result = numbamlp.sweep(spec["base"], spec["grid"], search="random", trials=spec["trials"], prune="asha",
                            min_epochs=spec["min_epochs"], reduction_factor=spec["reduction_factor"],
                            out=spec["out"], refill=spec["refill"], stack_size=8)
    table = result.table
    statuses: dict[str, int] = {}
    for row in table:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    best = result.best
    print(json.dumps({"statuses": statuses, "member_epochs": sum(row.get("epochs") or 0 for row in table),
                      "best": None if best is None else best["val_accuracy"],
                      "settings": [[row["optimizer.lr"], row["optimizer.weight_decay"]] for row in table]}))


def child_order(spec: dict) -> None:
    """numbamlp.sweep(..., search="tpe", prune="asha") in this fresh process with the stacks'
    epochs taken in ``spec["order"]``: "furthest" (TrialRunner's own: the stack whose
    furthest trial has trained most first) or "turns" (the oldest epoch first, every stack
    in turn: the order before).  Counts the member-epochs trained (a TrialWatch hears each)
    until the first finished trial at or above the target, and in all."""
    import numbamlp
    from numbamlp.sweeps.search import TrialRunner, TrialWatch

    if spec["order"] == "turns":
        TrialRunner._order = staticmethod(lambda stacks: sorted(stacks, key=lambda s: s.started_at))

    class Count(TrialWatch):
        epochs, to_target, seconds_to_target, began = 0, None, None, time.perf_counter()

        def epoch(self, member, metrics):
            self.epochs += 1

        def ended(self, member, row):
            if self.to_target is None and row["status"] in ("done", "stopped early") \
                    and (row["val_accuracy"] or 0) >= spec["target"]:
                self.to_target, self.seconds_to_target = self.epochs, time.perf_counter() - self.began

    count = Count()
    result = numbamlp.sweep(spec["base"], {**SPACE, "seed": [0]}, search="tpe", trials=spec["trials"], prune="asha",
                            min_epochs=spec["min_epochs"], reduction_factor=spec["reduction_factor"], watch=count)
    best = max((row["val_accuracy"] or 0) for row in result.table if row["status"] in ("done", "stopped early"))
    print(json.dumps({"member_epochs": count.epochs, "to_target": count.to_target,
                      "seconds_to_target": count.seconds_to_target, "best": best}))


CHILDREN = {"sklearn-grid": child_sklearn_grid, "sklearn-search": child_sklearn_search, "refill": child_refill,
            "order": child_order}


# ---------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args, out: Path):
        self.a, self.out = args, out
        self.cwd = out / "cwd"  # empty: a child's working directory is first on its sys.path
        self.runs = out / "runs"
        self.data = out / "data.npz"
        self.split = out / "split.npz"
        self.raw: dict = {"grid": {"numbamlp": [], "sklearn": []}, "search": {}, "sklearn_search": {},
                          "refill": {"on": [], "off": []}, "order": {}}
        self.scores: dict = {}  # tool -> the first grid's {settings: val_accuracy}
        self.same_scores: dict = {}  # tool -> whether every round's grid scored the same
        self.failures: list[str] = []

    # -- data
    def prepare(self) -> None:
        import numpy as np
        from sklearn.datasets import make_classification

        from numbamlp.config import TrainConfig
        from numbamlp.data import prepare_for

        for folder in (self.cwd, self.runs):
            folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        X, y = make_classification(n_samples=self.a.rows, **DATA)
        np.savez(self.data, X=X.astype(np.float32), y=y.astype(np.int64))
        # exactly the sweep's split (numbamlp.sweeps.splits.prepare_data of a member's config:
        # data.seed and val_fraction pinned, as members.member_configs pins them)
        config = TrainConfig.model_validate({"seed": 0, "dtype": "float32", "data": {
            "train": str(self.data), "seed": 0, "val_fraction": 0.1}})
        splits = prepare_for(config)
        np.savez(self.split, X_train=splits.X_train, y_train=splits.y_train, X_val=splits.X_val, y_val=splits.y_val)
        self.n_val = len(splits.y_val)
        print(f"# data: {self.a.rows} rows × {DATA['n_features']} features, {DATA['n_classes']} classes; "
              f"{len(splits.y_train)} training, {len(splits.y_val)} validation, {len(splits.y_test)} test rows "
              f"({time.perf_counter() - start:.1f} s to make and split)", flush=True)

    # -- numbamlp commands
    def sweep_command(self, out: Path, seed: int, epochs: int | None = None, search: list[str] = ()) -> list[str]:
        a = self.a
        return [*NUMBAMLP, "sweep", "--data", str(self.data), "--data-seed", "0", "--val-fraction", "0.1",
                "--seed", str(seed), "--optimizer", "adam", "--batch-size", str(a.batch_size),
                "--epochs", str(a.epochs if epochs is None else epochs), *grid_flags(SPACE), *search,
                "--out", str(out), "--json"]

    def search_flags(self, trials: int | None = None) -> list[str]:
        a = self.a
        return ["--grid", "seed=0", "--search", "tpe", "--trials", str(a.trials if trials is None else trials),
                "--prune", "asha", "--min-epochs", str(a.min_epochs), "--reduction-factor", str(a.reduction_factor),
                *shlex.split(a.search_args)]

    def fresh(self, name: str) -> Path:
        folder = self.runs / name
        shutil.rmtree(folder, ignore_errors=True)
        return folder

    def failed(self, what: str, child: dict) -> None:
        message = f"{what} FAILED (exit {child['rc']}): {child['error']}"
        self.failures.append(message)
        print("# " + message, flush=True)

    def warm_up(self) -> None:
        """Numba's cache for every shape, Optuna's imports, the page cache: untimed."""
        for command in (self.sweep_command(self.fresh("warm-grid"), 0, epochs=1),
                        self.sweep_command(self.fresh("warm-search"), 0, epochs=1, search=self.search_flags(2))):
            child = run_child(command, self.cwd)
            if child["rc"]:
                self.failed("warm-up " + command[4], child)
        if "sklearn" in self.a.parts:
            run_child([sys.executable, "-c", "import joblib, optuna, sklearn.neural_network"], self.cwd)

    def numbamlp_grid(self, round_: int) -> None:
        folder = self.fresh(f"grid-{round_}")
        child = run_child(self.sweep_command(folder, 0), self.cwd)
        if child["rc"]:
            return self.failed(f"numbamlp grid, round {round_ + 1}", child)
        self.grid_done("numbamlp", child, read_rows(folder))

    def numbamlp_search(self, seed: int) -> None:
        folder = self.fresh(f"search-{seed}")
        child = run_child(self.sweep_command(folder, seed, search=self.search_flags()), self.cwd)
        if child["rc"]:
            return self.failed(f"numbamlp search, seed {seed}", child)
        trials = []
        for row in read_rows(folder):
            summary = folder / "members" / str(row["member"]) / "summary.json"
            trials.append({"member": row["member"], "settings": list(settings_key(row)), "status": row["status"],
                           "val_accuracy": row["val_accuracy"], "epochs": row["epochs"],
                           "t": summary.stat().st_mtime - child["started"] if summary.exists() else None})
        self.raw["search"][seed] = {"wall": child["wall"], "peak_mb": child["peak_mb"], "trials": trials}

    # -- scikit-learn
    def child(self, kind: str, spec: dict) -> dict:
        return run_child([sys.executable, str(HERE), "--child", kind, json.dumps(spec)], self.cwd)

    def sklearn_grid(self, round_: int) -> None:
        child = self.child("sklearn-grid", {"split": str(self.split), "epochs": self.a.epochs,
                                            "batch": self.a.batch_size, "jobs": SKLEARN_JOBS})
        if child["rc"]:
            return self.failed(f"scikit-learn grid, round {round_ + 1}", child)
        self.grid_done("sklearn", child, json.loads(last_line(child["stdout"]))["rows"])

    def grid_done(self, tool: str, child: dict, rows: list[dict]) -> None:
        scores = {json.dumps(settings_key(r)): r["val_accuracy"] for r in rows}
        self.raw["grid"][tool].append({"wall": child["wall"], "peak_mb": child["peak_mb"]})
        self.same_scores[tool] = self.same_scores.get(tool, True) and self.scores.setdefault(tool, scores) == scores

    def sklearn_search(self, seed: int) -> None:
        a = self.a
        child = self.child("sklearn-search", {"split": str(self.split), "epochs": a.epochs, "batch": a.batch_size,
                                              "seed": seed, "trials": a.trials, "min_epochs": a.min_epochs,
                                              "reduction_factor": a.reduction_factor})
        if child["rc"]:
            return self.failed(f"scikit-learn search, seed {seed}", child)
        trials = [{"member": t["number"], "settings": list(settings_key(t["params"])),
                   "status": {"complete": "done"}.get(t["state"], t["state"]),
                   "val_accuracy": t["value"] if t["value"] is not None else t["last"], "epochs": t["epochs"],
                   "t": t["t"] - child["started"]} for t in json.loads(last_line(child["stdout"]))["trials"]]
        self.raw["sklearn_search"][seed] = {"wall": child["wall"], "peak_mb": child["peak_mb"], "trials": trials}

    # -- refill
    def refill(self, round_: int) -> None:
        a = self.a
        base = {"seed": 0, "optimizer": {"name": "adam"}, "batch_size": a.batch_size, "epochs": a.epochs,
                "data": {"train": str(self.data), "seed": 0, "val_fraction": 0.1}, "model": {"hidden": [64]}}
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for refill in order:
            name = "on" if refill else "off"
            spec = {"base": base, "grid": REFILL_SPACE, "trials": a.trials, "min_epochs": a.min_epochs,
                    "reduction_factor": a.reduction_factor, "refill": refill,
                    "out": str(self.fresh(f"refill-{name}-{round_}"))}
            child = self.child("refill", spec)
            if child["rc"]:
                self.failed(f"refill={refill}, round {round_ + 1}", child)
                continue
            self.raw["refill"][name].append({"wall": child["wall"], **json.loads(last_line(child["stdout"]))})

    # -- the order of a search's stack epochs
    def order(self) -> None:
        a = self.a
        scores = self.scores.get("numbamlp")
        if not scores:
            return
        base = {"seed": 0, "optimizer": {"name": "adam"}, "batch_size": a.batch_size, "epochs": a.epochs,
                "data": {"train": str(self.data), "seed": 0, "val_fraction": 0.1}}
        for seed in range(a.seeds):
            for order in ("furthest", "turns") if seed % 2 == 0 else ("turns", "furthest"):
                spec = {"base": {**base, "seed": seed}, "trials": a.trials, "min_epochs": a.min_epochs,
                        "reduction_factor": a.reduction_factor, "order": order,
                        "target": target_of(list(scores.values()))}
                child = self.child("order", spec)
                if child["rc"]:
                    self.failed(f"order {order}, seed {seed}", child)
                    continue
                self.raw["order"].setdefault(order, {})[seed] = {"wall": child["wall"],
                                                                 **json.loads(last_line(child["stdout"]))}

    # -- the schedule
    def run(self) -> None:
        a = self.a
        # (the search's target is the grid's)
        numbamlp_grid = "grid" in a.parts or "search" in a.parts or "order" in a.parts
        for round_ in range(a.rounds):
            if numbamlp_grid:
                self.numbamlp_grid(round_)
            if "sklearn" in a.parts and round_ < a.sklearn_grid_rounds:
                self.sklearn_grid(round_)
            if "refill" in a.parts:
                self.refill(round_)
            for seed in [s for s in range(a.seeds) if s % a.rounds == round_]:  # the seeds spread over the rounds
                sides = []
                if "search" in a.parts:
                    sides.append(self.numbamlp_search)
                if "sklearn" in a.parts:
                    sides.append(self.sklearn_search)
                for side in sides if seed % 2 == 0 else sides[::-1]:
                    side(seed)
            print(f"# round {round_ + 1}/{a.rounds} done (load {os.getloadavg()[0]:.2f})", flush=True)
        if "order" in a.parts:
            self.order()

    # -- the report
    def report(self) -> None:
        a = self.a
        raw = self.raw
        grids = {tool: raw["grid"][tool] for tool in ("numbamlp", "sklearn") if raw["grid"][tool]}
        targets, grid_walls = {}, {}
        if grids:
            print(f"\n## the 64-member grids: whole commands, medians of interleaved rounds (numbamlp's every "
                  f"round, scikit-learn's the first {a.sklearn_grid_rounds}; load {os.getloadavg()[0]:.2f})\n")
            print("| tool | wall s | per round | best val_accuracy | target (6th of 64) | same scores every round "
                  "| peak RSS MB |")
            print("|---|---|---|---|---|---|---|")
        for tool, runs in grids.items():
            scores = self.scores[tool]
            targets[tool] = target_of(list(scores.values()))
            grid_walls[tool] = median(r["wall"] for r in runs)
            same = self.same_scores[tool]
            name = "numbamlp sweep" if tool == "numbamlp" else f"scikit-learn, joblib {SKLEARN_JOBS} processes"
            print(f"| {name} | {grid_walls[tool]:.2f} | {walls(runs)} | "
                  f"{max(scores.values()):.4f} | {targets[tool]:.4f} | {'yes' if same else 'NO'} | "
                  f"{cell(median(r['peak_mb'] for r in runs), 0)} |")
        if "numbamlp" in targets:
            odd = [v for v in self.scores["numbamlp"].values()
                   if abs(v * self.n_val - round(v * self.n_val)) > 1e-6]
            if odd:
                print(f"\nnote: {len(odd)} numbamlp grid scores are not k/{self.n_val}: the sweep's validation rows "
                      "are not the split given to scikit-learn")
        if raw["search"]:
            self.report_search("numbamlp", raw["search"], targets.get("numbamlp"), grid_walls.get("numbamlp"))
        if raw["sklearn_search"]:
            self.report_search("sklearn", raw["sklearn_search"], targets.get("sklearn"), grid_walls.get("sklearn"))
        if raw["search"] and raw["sklearn_search"]:
            self.report_against(targets)
        if raw["search"] and "numbamlp" in grids:
            searches = [s["peak_mb"] for s in raw["search"].values()]
            grid_peak = median(r["peak_mb"] for r in grids["numbamlp"])
            if grid_peak and median(searches):
                print(f"\n## peak RSS (/usr/bin/time -f %M), a note: numbamlp search (median of {len(searches)}) "
                      f"{median(searches):.0f} MB, grid {grid_peak:.0f} MB: search ÷ grid "
                      f"{median(searches) / grid_peak:.2f}")
        if raw["refill"]["on"] or raw["refill"]["off"]:
            self.report_refill()
        self.report_order()
        for message in self.failures:
            print(message)
        print(json.dumps({"settings": {k: getattr(a, k) for k in ("rows", "epochs", "batch_size", "min_epochs",
                                                                   "reduction_factor", "trials", "seeds", "rounds",
                                                                   "sklearn_grid_rounds")},
                          "targets": targets, "grid_scores": self.scores, "raw": raw}, default=str))

    def report_search(self, tool: str, searches: dict, target, grid_wall) -> None:
        a = self.a
        label = ("numbamlp sweep --search tpe --prune asha" if tool == "numbamlp" else
                 "Optuna + scikit-learn (TPESampler, SuccessiveHalvingPruner, partial_fit)")
        grid_scores = self.scores.get(tool, {})
        print(f"\n## {label}: {a.trials} trials, R = {a.min_epochs}, η = {a.reduction_factor}, {a.epochs} epochs; "
              f"one run per search seed; target = its own grid's 6th best"
              + (f" ({target:.4f}), grid wall {grid_wall:.2f} s" if target is not None else " (no grid: none)") + "\n")
        print("| seed | wall s | ÷ grid | best val_accuracy | reached target | time to target s | ÷ grid | "
              "done / stopped / pruned | pruned at epoch × trials | distinct settings | member-epochs (grid: 64 × E) "
              "| peak RSS MB |" + (" goal 1 met (reached, wall ≤ 0.3 × grid) |" if tool == "numbamlp" else ""))
        print("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if tool == "numbamlp" else ""))
        met = 0
        mismatched = 0
        for seed in sorted(searches):
            s = searches[seed]
            finished = [t for t in s["trials"] if t["status"] in ("done", "stopped early") and t["val_accuracy"]
                        is not None]
            best = max((t["val_accuracy"] for t in finished), default=None)
            reached = best is not None and target is not None and best >= target
            hits = [t["t"] for t in finished if target is not None and t["val_accuracy"] >= target
                    and t["t"] is not None]
            s["time_to_target"] = min(hits) if hits else None
            s["reached"] = reached
            counts = [sum(t["status"] == st for t in s["trials"]) for st in ("done", "stopped early", "pruned")]
            rungs = collections.Counter(t["epochs"] for t in s["trials"] if t["status"] == "pruned")
            ratio = s["wall"] / grid_wall if grid_wall else None
            ok = reached and ratio is not None and ratio <= 0.3
            met += ok
            for t in finished:  # a finished trial is the grid's member of its settings: the same score
                grid_score = grid_scores.get(json.dumps(t["settings"]))
                if grid_score is not None and abs(grid_score - t["val_accuracy"]) > 1e-12:
                    mismatched += 1
            print(f"| {seed} | {s['wall']:.2f} | {cell(ratio)} | {cell(best, 4)} | {'yes' if reached else 'no'} | "
                  f"{cell(s['time_to_target'])} | "
                  f"{cell(s['time_to_target'] / grid_wall if s['time_to_target'] and grid_wall else None)} | "
                  f"{' / '.join(map(str, counts))} | {', '.join(f'{e}×{n}' for e, n in sorted(rungs.items()))} | "
                  f"{len({json.dumps(t['settings']) for t in s['trials']})} | "
                  f"{sum(t['epochs'] or 0 for t in s['trials'])} | {cell(s['peak_mb'], 0)} |"
                  + (f" {'yes' if ok else 'no'} |" if tool == "numbamlp" else ""))
        if tool == "numbamlp":
            print(f"\ngoal 1: met in {met} of {len(searches)} seeds (needs 4 of 5)")
        if mismatched:
            print(f"note: {mismatched} finished trials scored other than the grid's member of the same settings"
                  + (" (scikit-learn's grid runs 1 BLAS thread a process, its search all cores)"
                     if tool == "sklearn" else ""))

    def report_against(self, targets: dict) -> None:
        ours, theirs = self.raw["search"], self.raw["sklearn_search"]
        print(f"\n## goal 2: Optuna + scikit-learn ÷ numbamlp, each to its own grid's target "
              f"(numbamlp {cell(targets.get('numbamlp'), 4)}, scikit-learn {cell(targets.get('sklearn'), 4)})\n")
        print("| seed | numbamlp time to target s | scikit-learn time to target s | ratio (goal ≥ 5) | "
              "numbamlp wall s | scikit-learn wall s | wall ratio |")
        print("|---|---|---|---|---|---|---|")
        ratios = []
        for seed in sorted(set(ours) & set(theirs)):
            n, s = ours[seed], theirs[seed]
            to = (s["time_to_target"] / n["time_to_target"]
                  if s.get("time_to_target") and n.get("time_to_target") else None)
            ratios.append(to)
            print(f"| {seed} | {cell(n.get('time_to_target'))} | {cell(s.get('time_to_target'))} | {cell(to)} | "
                  f"{n['wall']:.2f} | {s['wall']:.2f} | {s['wall'] / n['wall']:.2f} |")
        walls = [theirs[k]["wall"] / ours[k]["wall"] for k in set(ours) & set(theirs)]
        print(f"\nmedians: time-to-target ratio {cell(median(ratios))} (seeds where both reached), "
              f"wall ratio {cell(median(walls))}")

    def report_order(self) -> None:
        runs = self.raw["order"]
        if not runs:
            return
        print(f"\n## the order of a search's stack epochs: TPE + ASHA, {self.a.trials} trials, in a fresh process "
              "each; member-epochs trained until the first finished trial reached the grid's target (the count "
              "does not depend on the machine's speed)\n")
        print("| seed | furthest first: to target | in all | s to target | best | in turns: to target | in all | "
              "s to target | best |")
        print("|---|---|---|---|---|---|---|---|---|")
        for seed in sorted(set(runs.get("furthest", {})) | set(runs.get("turns", {}))):
            cells = []
            for order in ("furthest", "turns"):
                r = runs.get(order, {}).get(seed)
                cells += ["-"] * 4 if r is None else [cell(r["to_target"], 0), str(r["member_epochs"]),
                                                      cell(r["seconds_to_target"]), cell(r["best"], 4)]
            print(f"| {seed} | " + " | ".join(cells) + " |")

    def report_refill(self) -> None:
        on, off = self.raw["refill"]["on"], self.raw["refill"]["off"]
        print(f"\n## goal 3: refilled stacks against stacks left to run out: --search random (seed 0) --prune asha "
              f"over one shape (model.hidden [64], lr × weight decay), a stack of 8, "
              f"{self.a.trials} trials, numbamlp.sweep(..., refill=...) in a fresh process each, "
              f"medians of {self.a.rounds} interleaved rounds\n")
        print("| refill | wall s | per round | member-epochs | statuses | best val_accuracy |")
        print("|---|---|---|---|---|---|")
        for name, runs in (("True", on), ("False", off)):
            if runs:
                print(f"| {name} | {median(r['wall'] for r in runs):.2f} | "
                      f"{walls(runs)} | {runs[0]['member_epochs']} | "
                      f"{', '.join(f'{n} {k}' for k, n in runs[0]['statuses'].items())} | {cell(runs[0]['best'], 4)} |")
        if on and off:
            same = on[0]["settings"] == off[0]["settings"]
            print(f"\nrefill ÷ no refill: {median(r['wall'] for r in on) / median(r['wall'] for r in off):.3f} "
                  f"(goal ≤ 0.7); the same trials asked: {'yes' if same else 'NO'}")


def walls(runs: list[dict]) -> str:
    return ", ".join(f"{run['wall']:.2f}" for run in runs)


def read_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder of the data and every run (default: a temporary folder, removed)")
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds of the grids and of refill (default "
                                                   f"{FULL['rounds']})")
    parser.add_argument("--seeds", type=int, help=f"search seeds 0..N-1 (default {FULL['seeds']})")
    parser.add_argument("--trials", type=int, help=f"trials of each search (default {FULL['trials']})")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rows", type=int, help=f"rows of the generated data (default {FULL['rows']})")
    parser.add_argument("--epochs", type=int, help=f"each member's epochs (default {FULL['epochs']})")
    parser.add_argument("--min-epochs", type=int, help=f"the pruner's R (default {FULL['min_epochs']})")
    parser.add_argument("--reduction-factor", type=int, help=f"the pruner's η (default {FULL['reduction_factor']})")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--search-args", default="", help="more flags for numbamlp's searches, e.g. '--stack-size 4'")
    parser.add_argument("--sklearn-grid-rounds", type=int, default=1,
                        help="rounds that also run scikit-learn's grid (its scores, hence its target, are the same "
                             "every time; minutes at full size)")
    parser.add_argument("--quick", action="store_true", help="everything tiny: " + ", ".join(
        f"{k} {v}" for k, v in QUICK.items()))
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        CHILDREN[args.child](json.loads(args.spec))
        return 0
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    problem = next((f"--{k.replace('_', '-')} must be at least {low}, got {getattr(args, k)}"
                    for k, low in (("rounds", 1), ("seeds", 1), ("trials", 1), ("rows", 100), ("epochs", 1),
                                   ("min_epochs", 1), ("reduction_factor", 2), ("batch_size", 1))
                    if getattr(args, k) < low), None)
    if problem:
        parser.exit(2, f"Error: {problem}\n")

    sys.path.insert(0, str(HERE.parent))
    from many import machine_info  # bench/'s own helper

    print(f"# bench/search.py  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  load {os.getloadavg()[0]:.2f}")
    print("# " + shlex.join([Path(sys.executable).name, "bench/search.py", *(argv if argv is not None
                                                                             else sys.argv[1:])]))
    print("# " + json.dumps(machine_info(os.cpu_count())))
    import optuna
    import sklearn

    print(f"# optuna {optuna.__version__}, scikit-learn {sklearn.__version__}; rows {args.rows}, epochs "
          f"{args.epochs}, batch {args.batch_size}, trials {args.trials}, R {args.min_epochs}, η "
          f"{args.reduction_factor}, seeds {args.seeds}, rounds {args.rounds}, parts {' '.join(args.parts)}",
          flush=True)
    temporary = None
    if args.out is None:
        temporary = tempfile.TemporaryDirectory(prefix="numbamlp-bench-search-")
        out = Path(temporary.name)
    else:
        out = Path(args.out)
    try:
        bench = Bench(args, out.resolve())
        bench.prepare()
        bench.warm_up()
        bench.run()
        bench.report()
    finally:
        if temporary is not None:
            temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
