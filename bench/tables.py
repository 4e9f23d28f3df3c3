"""Raw tables (issue 27): `numbamlp train` on a CSV with text, missing and ID columns
against scikit-learn's ColumnTransformer + MLPClassifier on the same split; predictions
from CSV, Parquet, a DataFrame and ONNX; read time and peak memory against pyarrow.

    python bench/tables.py [--rows 50000] [--seed 0] [--out DIR] [--repeat 3] [--read-repeat 5]
                           [--big-rows 1000000]
                           [--parts generate sklearn numbamlp read memory] [--skip-sklearn] [--against REV]
                           [--hidden 64] [--epochs 20] [--batch-size 256] [--lr 0.001] [--alpha 1e-4]
                           [--numbamlp-args "--drop id"]

The table (generated from --seed, written to --out as table.csv and table.parquet, plus a
1,000-row tiny.csv / tiny.parquet of the same generator for the fixed costs; kept, so the
other parts can be rerun without --parts generate):

  id                unique strings "C0123456" (not in row order): an identifier, not a feature
  age               18-90, 5 % empty (at random)
  tenure_months     0-120
  monthly_spend     log-normal, 8 % empty (more often on the basic plan, and churn-prone)
  support_calls     Poisson counts
  days_since_login  1 decimal, 10 % empty (never logged in: churn-prone)
  discount          0-0.3, 6 % empty (= no discount: a median fill is wrong, the indicator fixes it)
  plan              basic / pro / enterprise (60 / 30 / 10 %)
  region            20 values, geometric shares (region_00 ~20 %, region_19 ~0.3 %)
  city              1,000 values, Zipf shares (s = 1.1): a few hundred have < 10 rows
  autopay           yes / no, 3 % empty
  churn             0 / 1, 5 % ones: a logistic teacher, non-linear in the numbers (log tenure,
                    a U in spend, calls × plan, age extremes, saturating login gap), with plan,
                    region and city effects and effects of missingness itself

Parts (--parts, default all):

  generate  the files above (timed).
  sklearn   scikit-learn, in a child process:
              ColumnTransformer([OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10)
                                   on the text columns (an empty cell is a category of its own),
                                 SimpleImputer(strategy="median", add_indicator=True) + StandardScaler
                                   on the numbers], id dropped)
              + MLPClassifier(hidden (H,), relu, adam lr, batch, alpha, max_iter = epochs,
                              n_iter_no_change = epochs so that every epoch runs, no early stopping)
            on the CSV read by pandas.  The test rows are numbamlp's own: numbamlp's
            holdout_split (data.test_fraction 0.25, the run's --seed as data seed) on the row
            indices, so both sides train and test on identical rows.  Reports test ROC AUC,
            accuracy (threshold 0.5), fit+transform seconds and the process's wall time.
  numbamlp  `numbamlp train --data table.csv --label-column churn` with the same recipe (adam, lr,
            batch, epochs, hidden, weight decay = alpha / batch, which is scikit-learn's L2 term
            per example; id left to numbamlp's identifier detection unless --numbamlp-args
            says otherwise), timed as a whole process.  Test accuracy from summary.json;
            ROC AUC from summary.json's test_roc_auc when the run writes it, else from
            `numbamlp predict --proba` on the same test rows (written as test.csv).  That
            prediction's accuracy must equal summary.json's: the check that both sides split
            alike.  Then, once: the probabilities of those rows from test.csv, test.parquet,
            a DataFrame (load_model(...).predict_proba) and the ONNX export fed raw columns.
            sklearn and numbamlp rounds are interleaved (order reversed every round); a
            numbamlp warm-up run (compile cache) comes first.
  read      numbamlp_read(file) (below) against pyarrow.csv.read_csv / pyarrow.parquet.read_table
            of the same file, at --rows and at --big-rows, each a fresh process timed around the
            call alone (after an untimed read of tiny.* that takes lazy imports out), interleaved,
            files in the page cache, --read-repeat rounds, medians.  Issue 27's bound: 1.5×.
  memory    peak RSS (/usr/bin/time) of `numbamlp train --epochs 1`, of numbamlp_read and (for
            scale) of pyarrow's own read, on the --big-rows file (default 1,000,000 rows: at
            50,000 the float32 features are 2 MB, below the noise of a peak RSS) minus on tiny.*
            of the same format (the fixed cost of Python, Numba and that reader's libraries),
            ÷ the float32 features (rows × 10 feature columns × 4 bytes).  Issue 27's bound: 2.5.

  encodings numbamlp's choice for a many-category column, measured: the table encoded as
            numbamlp does it (one-hot up to ONEHOT_MAX_CATEGORIES buckets, above that the
            target's cross-fitted mean: region and city) against every categorical column
            one-hot (ONEHOT_MAX_CATEGORIES raised past city's buckets), in this process: the
            same split, the numbamlp recipe above as a Trainer on the encoded training rows;
            inputs, the encoded X's MB, training seconds, test ROC AUC and accuracy, rounds
            interleaved, medians.

Every failing numbamlp step is reported in one line (its last line of stderr) and the
rest goes on, so the script runs before numbamlp can train on text columns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from many import tree_at  # noqa: E402  (bench/'s own helper)

PARTS = ("generate", "sklearn", "numbamlp", "read", "memory", "encodings")
FORMATS = ("csv", "parquet")
ID, LABEL = "id", "churn"
NUMERIC = ["age", "tenure_months", "monthly_spend", "support_calls", "days_since_login", "discount"]
TEXT = ["plan", "region", "city", "autopay"]
FEATURES = NUMERIC + TEXT
TEST_FRACTION = 0.25  # numbamlp's data.test_fraction default
TINY_ROWS = 1000
HERE = Path(__file__).resolve()


# ---------------------------------------------------------------- numbamlp's reader
def numbamlp_read(path: str):
    """numbamlp's read of a table file, as the read and memory parts time it: the table
    reader (numbamlp.data.read_table: the columns typed, text as categories' codes, empty
    cells missing, the id column found and left out), into training's float32."""
    import warnings

    from numbamlp.data import ColumnRoles, DataNote, read_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)  # (the note on the id column)
        return read_table(path, LABEL, ColumnRoles(), dtype=np.float32)


# ---------------------------------------------------------------- the table
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def generate(rows: int, seed: int):
    """(the table as a pyarrow.Table, nulls where cells are empty; the teacher's probability
    of churn of every row, whose ROC AUC is the ceiling of any model's)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    # Category effects are drawn from their own stream, so the tiny file of the same seed
    # shares the teacher with the big one.
    effects = np.random.default_rng([seed, 1])
    plan_names = np.array(["basic", "pro", "enterprise"])
    region_names = np.array([f"region_{i:02d}" for i in range(20)])
    city_names = np.array([f"city_{i:04d}" for i in range(1000)])
    region_share = 0.75 ** np.arange(20)
    city_share = 1.0 / np.arange(1, 1001) ** 1.1  # Zipf: the rarest ~0.015 % of rows each

    plan = rng.choice(3, rows, p=[0.6, 0.3, 0.1])
    region = rng.choice(20, rows, p=region_share / region_share.sum())
    city = rng.choice(1000, rows, p=city_share / city_share.sum())
    autopay = rng.random(rows) < 0.45 + 0.2 * plan  # enterprise accounts pay automatically more often
    age = np.clip(np.round(rng.normal(45, 14, rows)), 18, 90)
    tenure = np.clip(np.round(rng.gamma(2.0, 15.0, rows)), 0, 120)
    spend = np.round(np.exp(rng.normal(np.log(40) + 0.5 * plan, 0.5)), 2)
    calls = rng.poisson(1.0 + 0.5 * (plan == 0))
    login = np.round(rng.exponential(8.0, rows), 1)
    discount = np.round(rng.uniform(0, 0.3, rows), 3)

    # Which cells are empty: partly at random, partly tied to the row (so the was-missing
    # indicators carry signal of their own).
    age_na = rng.random(rows) < 0.05
    spend_na = rng.random(rows) < np.where(plan == 0, 0.11, 0.035)
    login_na = rng.random(rows) < 0.10
    discount_na = rng.random(rows) < 0.06
    autopay_na = rng.random(rows) < 0.03
    discount = np.where(discount_na, 0.0, discount)  # an empty discount is no discount

    logit = (np.array([0.5, 0.0, -0.7])[plan]
             + effects.normal(0, 0.4, 20)[region]
             + effects.normal(0, 0.6, 1000)[city]
             - 0.9 * np.log1p(tenure / 6)
             + 0.5 * ((np.log(spend) - np.log(40) - 0.5 * plan) / 0.5) ** 2
             + 0.3 * calls * (1 + (plan == 0))
             + 0.7 * ((age < 25) | (age > 70))
             + 1.0 * np.tanh(login / 15)
             - 3.0 * discount
             - 0.5 * autopay
             + 0.8 * spend_na + 1.2 * login_na + 0.4 * autopay_na)
    lo, hi = -20.0, 20.0  # the intercept that gives 5 % positives in expectation
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(logit + mid).mean() < 0.05 else (lo, mid)
    p_true = _sigmoid(logit + lo)
    churn = (rng.random(rows) < p_true).astype(np.int64)

    def masked(values, na):
        return pa.array(values, mask=na)

    return pa.table({
        ID: pa.array([f"C{i:07d}" for i in rng.permutation(rows) + 100_000]),
        "age": masked(age.astype(np.int64), age_na),
        "tenure_months": pa.array(tenure.astype(np.int64)),
        "monthly_spend": masked(spend, spend_na),
        "support_calls": pa.array(calls.astype(np.int64)),
        "days_since_login": masked(login, login_na),
        "discount": masked(discount, discount_na),
        "plan": pa.array(plan_names[plan]),
        "region": pa.array(region_names[region]),
        "city": pa.array(city_names[city]),
        "autopay": masked(np.where(autopay, "yes", "no"), autopay_na),
        LABEL: pa.array(churn),
    }), p_true


def write(table, folder: Path, stem: str) -> dict[str, Path]:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    paths = {fmt: folder / f"{stem}.{fmt}" for fmt in FORMATS}
    # Unquoted, as pandas and spreadsheets write them; a null is an empty cell.
    pa_csv.write_csv(table, paths["csv"], pa_csv.WriteOptions(quoting_style="none", quoting_header="none"))
    pq.write_table(table, paths["parquet"])
    return paths


def split_rows(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) exactly as `numbamlp train --seed SEED` holds them out:
    numbamlp's own split on the row indices."""
    from numbamlp.data.splits import holdout_split

    train, test, _, _ = holdout_split(np.arange(len(y)), np.asarray(y), TEST_FRACTION, seed)
    return train, test


# ---------------------------------------------------------------- child processes
CLI = [str(Path(sys.executable).with_name("numbamlp"))]

SKLEARN_SCRIPT = """
import json, sys, time, warnings
start = time.perf_counter()
import numpy as np, pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_info
from numbamlp.data.splits import holdout_split
args = json.loads(sys.argv[1])
read_start = time.perf_counter()
frame = pd.read_csv(args["path"])
read_s = time.perf_counter() - read_start
y = frame.pop(args["label"]).to_numpy()
train, test, _, _ = holdout_split(np.arange(len(y)), y, args["test_fraction"], args["seed"])
X = frame.drop(columns=[args["id"]])
prep = ColumnTransformer([
    ("text", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10), args["text"]),
    ("numbers", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
     args["numeric"])])
clf = MLPClassifier(hidden_layer_sizes=tuple(args["hidden"]), activation="relu", solver="adam",
                    learning_rate_init=args["lr"], batch_size=args["batch_size"], alpha=args["alpha"],
                    max_iter=args["epochs"], n_iter_no_change=args["epochs"], early_stopping=False,
                    random_state=args["seed"])
model = make_pipeline(prep, clf)
fit_start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # "max_iter reached": every epoch ran, as asked
    model.fit(X.iloc[train], y[train])
fit_s = time.perf_counter() - fit_start
predict_start = time.perf_counter()
p = model.predict_proba(X.iloc[test])[:, 1]
predict_s = time.perf_counter() - predict_start
inputs = prep.transform(X.iloc[:5])
print(json.dumps({"roc_auc": roc_auc_score(y[test], p), "accuracy": accuracy_score(y[test], (p >= 0.5).astype(y.dtype)),
                  "read_s": read_s, "fit_s": fit_s, "predict_s": predict_s, "epochs_run": clf.n_iter_,
                  "inputs": inputs.shape[1], "sparse": hasattr(inputs, "toarray"),
                  "train_rows": len(train), "test_rows": len(test), "test_positives": int(y[test].sum()),
                  "blas": [(i.get("internal_api"), i.get("num_threads")) for i in threadpool_info()],
                  "in_process_s": time.perf_counter() - start}))
"""

# Both readers first read the tiny file of the same format (argv[2]), untimed: the first
# call of pyarrow.parquet.read_table imports pyarrow.dataset and more (~0.3 s here, more than
# the read of 50,000 rows itself), a fixed cost that is not the file's read.  numbamlp's child
# loads this file by path (a module named "tables" could be PyTables) for numbamlp_read.
READ_NUMBAMLP = """
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("bench_tables", sys.argv[3])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
bench.numbamlp_read(sys.argv[2])
start = time.perf_counter()
data = bench.numbamlp_read(sys.argv[1])
seconds = time.perf_counter() - start
shape = getattr(getattr(data, "X", None), "shape", None)  # (whatever the reader returns)
print(json.dumps({"seconds": seconds, "shape": None if shape is None else list(shape)}))
"""

READ_PYARROW = """
import json, sys, time
import pyarrow.csv, pyarrow.parquet
read = lambda path: pyarrow.csv.read_csv(path) if path.endswith(".csv") else pyarrow.parquet.read_table(path)
read(sys.argv[2])
start = time.perf_counter()
table = read(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "shape": [table.num_rows, table.num_columns]}))
"""

# Probabilities of the test rows from a DataFrame and from the ONNX export fed raw columns.
AGREE_SCRIPT = """
import json, sys
import numpy as np, pandas as pd
import numbamlp
run, parquet, out = sys.argv[1:4]
frame = pd.read_parquet(parquet).drop(columns=[sys.argv[4]])
result = {}
try:
    np.save(out + "/p_dataframe.npy", numbamlp.load_model(run).predict_proba(frame))
    result["dataframe"] = "ok"
except Exception as e:
    result["dataframe"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
try:
    import onnxruntime
    session = onnxruntime.InferenceSession(out + "/model.onnx", providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) == 1 and inputs[0].name not in frame.columns:
        one = inputs[0]
        raise ValueError(f"the graph takes one input {one.name} {one.type} {one.shape}, not raw columns")
    feeds = {}
    # One (N, 1) input per raw column (our column names are valid input names as they are):
    # text with "" where missing, numbers as double (float for a float input) with NaN where missing.
    for i in inputs:
        column = frame[i.name]
        if "string" in i.type:
            feeds[i.name] = column.astype(object).where(column.notna(), "").to_numpy(dtype=object).astype(str)
        else:
            dtype = np.float64 if "double" in i.type else np.float32
            feeds[i.name] = column.to_numpy(dtype=dtype, na_value=np.nan)
        feeds[i.name] = feeds[i.name].reshape(-1, 1)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, feeds)))
    np.save(out + "/p_onnx.npy", np.asarray(outputs.get("probabilities", outputs[names[0]]), dtype=np.float64))
    result["onnx"] = "ok"
except Exception as e:
    result["onnx"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
print(json.dumps(result))
"""


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def run_child(command: list[str], cwd: Path, measure_rss: bool = False, env: dict | None = None) -> dict:
    """Run a command; its wall time, stdout, return code, last line of stderr and, with
    measure_rss, its own peak RSS in MB.  The peak comes from /usr/bin/time, as in
    bench/data.py: Linux carries a process's peak RSS across exec, so getrusage in (or for)
    a child forked from this process, which holds the table, could report this process's."""
    with tempfile.NamedTemporaryFile("r") as rss:
        prefix = ["/usr/bin/time", "-f", "%M", "-o", rss.name] if measure_rss else []
        start = time.perf_counter()
        done = subprocess.run(prefix + command, capture_output=True, text=True, cwd=cwd,
                              env=None if env is None else {**os.environ, **env})
        wall = time.perf_counter() - start
        peak = None
        if measure_rss and done.returncode == 0:
            peak = int(rss.read().split()[-1]) / 1024
    return {"wall": wall, "stdout": done.stdout, "rc": done.returncode, "error": last_line(done.stderr),
            "peak_mb": peak}


# ---------------------------------------------------------------- the parts
class Bench:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.cwd = self.out / "cwd"  # empty: `python -c` puts its working directory first on sys.path
        self.paths = {fmt: self.out / f"table.{fmt}" for fmt in FORMATS}
        self.tiny = {fmt: self.out / f"tiny.{fmt}" for fmt in FORMATS}
        self.meta = self.out / "table.json"

    # -- generate
    def generate(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        table, p_true = generate(self.args.rows, self.args.seed)
        made = time.perf_counter() - start
        write(table, self.out, "table")
        written = time.perf_counter() - start - made
        write(generate(TINY_ROWS, self.args.seed)[0], self.out, "tiny")
        y = table.column(LABEL).to_numpy()
        nulls = {name: table.column(name).null_count for name in table.column_names if table.column(name).null_count}
        cities = np.unique(table.column("city").to_numpy(zero_copy_only=False), return_counts=True)[1]
        self.meta.write_text(json.dumps({"rows": self.args.rows, "seed": self.args.seed}))
        from sklearn.metrics import roc_auc_score

        _, test_rows = split_rows(y, self.args.seed)
        ceiling = roc_auc_score(y[test_rows], p_true[test_rows])
        print(f"generated {self.args.rows} rows in {made:.2f} s, written in {written:.2f} s: "
              + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in self.paths.values())
              + f"; churn {y.mean():.2%}; empty cells {nulls}; cities {len(cities)} "
              f"({int(np.sum(cities < 10))} with < 10 rows); the teacher's own test ROC AUC {ceiling:.4f}", flush=True)

    def check_files(self) -> None:
        """The other parts run on files generated earlier: they must be of these --rows and --seed."""
        meta = json.loads(self.meta.read_text()) if self.meta.exists() else None
        if meta != {"rows": self.args.rows, "seed": self.args.seed}:
            raise SystemExit(f"{self.out} holds no table of --rows {self.args.rows} --seed {self.args.seed} "
                             f"({meta}); add --parts generate")
        self.cwd.mkdir(exist_ok=True)

    def labels(self) -> np.ndarray:
        import pyarrow.parquet as pq

        return pq.read_table(self.paths["parquet"], columns=[LABEL]).column(LABEL).to_numpy()

    # -- sklearn and numbamlp
    def sklearn(self) -> dict:
        a = self.args
        spec = {"path": str(self.paths["csv"]), "label": LABEL, "id": ID, "text": TEXT, "numeric": NUMERIC,
                "hidden": a.hidden, "lr": a.lr, "batch_size": a.batch_size, "alpha": a.alpha, "epochs": a.epochs,
                "seed": a.seed, "test_fraction": TEST_FRACTION}
        child = run_child([sys.executable, "-c", SKLEARN_SCRIPT, json.dumps(spec)], self.cwd)
        if child["rc"] != 0:
            raise SystemExit(f"scikit-learn failed: {child['error']}")
        return {**json.loads(last_line(child["stdout"])), "wall": child["wall"]}

    def numbamlp_command(self, data: Path, out: Path, epochs: int | None = None) -> list[str]:
        a = self.args
        return CLI + ["train", "--data", str(data), "--label-column", LABEL, "--out", str(out), "--quiet",
                      "--hidden", ",".join(map(str, a.hidden)), "--optimizer", "adam", "--lr", str(a.lr),
                      "--weight-decay", repr(a.alpha / a.batch_size), "--batch-size", str(a.batch_size),
                      "--epochs", str(a.epochs if epochs is None else epochs), "--seed", str(a.seed),
                      *shlex.split(a.numbamlp_args)]

    def numbamlp(self, run: Path, test_rows: np.ndarray, y: np.ndarray) -> dict:
        # (--overwrite: a rerun with the same --out replaces the runs of the last one)
        child = run_child(self.numbamlp_command(self.paths["csv"], run) + ["--overwrite"], self.cwd)
        if child["rc"] != 0:
            return {"wall": child["wall"], "error": child["error"]}
        summary = json.loads((run / "summary.json").read_text())
        result = {"wall": child["wall"], "accuracy": summary["test_accuracy"], "train_s": summary.get("wall_s"),
                  "test_rows": summary.get("test_rows"), "roc_auc": summary.get("test_roc_auc"), "run": run,
                  "auc_source": "summary.json", "layers": summary.get("layers")}
        try:  # which columns it used (the id should not be one)
            import numbamlp

            result["features"] = numbamlp.load_model(run).feature_names
        except Exception as e:  # (noted, not fatal: the metrics stand without it)
            result["features"] = f"load_model failed: {type(e).__name__}: {e}"
        # Our own prediction of the test rows: the ROC AUC when the summary lacks it, and the
        # check that these are the rows the run held out (the same accuracy).
        p = self.predict_file(run, self.out / "test.csv")
        if isinstance(p, str):
            result["split_check"] = f"predict failed: {p}"
            return result
        from sklearn.metrics import roc_auc_score

        ours = float(np.mean((p[:, -1] >= 0.5) == y[test_rows]))
        result["p"] = p
        result["roc_auc_from_predict"] = roc_auc_score(y[test_rows], p[:, -1])
        if result["roc_auc"] is None:  # (summary.json has no test_roc_auc yet)
            result["roc_auc"], result["auc_source"] = result["roc_auc_from_predict"], "numbamlp predict --proba"
        same = abs(ours - result["accuracy"]) < 1e-9 and result["test_rows"] in (None, len(test_rows))
        result["split_check"] = "same rows" if same else (
            f"DIFFERENT: accuracy {ours:.6f} from predict on our test rows, {result['accuracy']:.6f} in summary.json")
        return result

    def predict_file(self, run: Path, data: Path):
        """Probabilities (N, C) from `numbamlp predict --proba` on a file, or its error line."""
        out = self.out / f"predict-{data.suffix[1:]}.csv"
        child = run_child(CLI + ["predict", str(run), "--data", str(data), "--label-column", LABEL, "--proba",
                                 "--out", str(out), "--overwrite"], self.cwd)
        if child["rc"] != 0:
            return child["error"]
        import pyarrow.csv as pa_csv

        table = pa_csv.read_csv(out)
        return np.column_stack([table.column(name).to_numpy() for name in table.column_names
                                if name.startswith("p_")]).astype(np.float64)

    def agree(self, run: Path, p_csv: np.ndarray) -> None:
        """Goal 2: one model file, the same probabilities from CSV, Parquet, a DataFrame and ONNX."""
        sources = {"csv (predict)": p_csv}
        p = self.predict_file(run, self.out / "test.parquet")
        sources["parquet (predict)"] = p
        export = run_child(CLI + ["export", str(run), "--out", str(self.out / "model.onnx"), "--overwrite"], self.cwd)
        child = run_child([sys.executable, "-c", AGREE_SCRIPT, str(run), str(self.out / "test.parquet"),
                           str(self.out), LABEL], self.cwd)
        status = json.loads(last_line(child["stdout"])) if child["rc"] == 0 else {
            "dataframe": child["error"], "onnx": child["error"]}
        if export["rc"] != 0:
            status["onnx"] = f"export failed: {export['error']}"
        for name, key in (("DataFrame (load_model)", "dataframe"), ("ONNX, raw columns", "onnx")):
            sources[name] = np.load(self.out / f"p_{key}.npy") if status[key] == "ok" else status[key]
        print("probabilities of the test rows, max |difference| from predict on test.csv (printed to 6 digits; "
              "goal: ONNX within 1e-5):")
        for name, p in sources.items():
            if isinstance(p, str):
                print(f"  {name}: failed: {p}")
            elif p.shape != p_csv.shape:
                print(f"  {name}: shape {p.shape}, not {p_csv.shape}")
            else:
                print(f"  {name}: {np.max(np.abs(p - p_csv)):.2e}")
        frame, onnx = sources["DataFrame (load_model)"], sources["ONNX, raw columns"]
        if not isinstance(frame, str) and not isinstance(onnx, str) and frame.shape == onnx.shape:
            print(f"  ONNX against the DataFrame's, both unrounded: {np.max(np.abs(onnx - frame)):.2e}")

    def compare(self) -> None:
        a = self.args
        import pyarrow.parquet as pq

        y = self.labels()
        _, test_rows = split_rows(y, a.seed)
        test = pq.read_table(self.paths["parquet"]).take(test_rows)
        write(test, self.out, "test")
        print(f"\n## scikit-learn against numbamlp train: {len(y) - len(test_rows)} training rows, {len(test_rows)} "
              f"test rows ({int(y[test_rows].sum())} positive), numbamlp's split with seed {a.seed}")
        print(f"recipe: hidden ({','.join(map(str, a.hidden))}), relu, adam lr {a.lr:g}, batch {a.batch_size}, "
              f"{a.epochs} epochs, L2 alpha {a.alpha:g} (numbamlp --weight-decay {a.alpha / a.batch_size:g})")
        print("numbamlp:", shlex.join(self.numbamlp_command(Path("table.csv"), Path("RUN"))), flush=True)
        sides = [side for side in ("sklearn", "numbamlp") if side in a.parts]
        if "numbamlp" in sides:  # warm the compile cache (and learn whether it trains at all)
            warm = self.numbamlp(self.out / "runs" / "warmup", test_rows, y)
            if "error" in warm:
                print(f"numbamlp train FAILED: {warm['error']}", flush=True)
                sides.remove("numbamlp")
        results: dict[str, list[dict]] = {side: [] for side in sides}
        for r in range(a.repeat):
            for side in sides if r % 2 == 0 else sides[::-1]:
                if side == "sklearn":
                    results[side].append(self.sklearn())
                else:
                    results[side].append(self.numbamlp(self.out / "runs" / f"round{r}", test_rows, y))
                got = results[side][-1]
                print(f"  round {r} {side}: wall {got['wall']:.2f} s" +
                      (f", ROC AUC {got['roc_auc'] or float('nan'):.4f}, accuracy {got['accuracy']:.4f}"
                       if "error" not in got else "")
                      + (f"  ({got['error']})" if "error" in got else ""), flush=True)
        for side in list(results):
            failed = [r["error"] for r in results[side] if "error" in r]
            results[side] = [r for r in results[side] if "error" not in r]
            if failed:
                print(f"{side} failed in {len(failed)} of {a.repeat} rounds: {failed[0]}")
            if not results[side]:
                del results[side]
        if not results:
            return
        print(f"\nmedians of {a.repeat} interleaved rounds ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}); "
              "wall: the whole process (start, imports, read, fit, score); in-process: scikit-learn's pipeline fit "
              "(transform + MLP), numbamlp's summary wall_s (read, prepare, train, test, write)")
        print("| side | test ROC AUC | test accuracy | wall s | in-process s | wall × scikit-learn's |")
        print("|---|---|---|---|---|---|")
        def median(runs, key):
            values = [r[key] for r in runs if r.get(key) is not None]
            return statistics.median(values) if values else float("nan")

        med = {side: {key: median(runs, key) for key in ("roc_auc", "accuracy", "wall")}
               for side, runs in results.items()}
        base = med["sklearn"]["wall"] if "sklearn" in med else None
        for side, runs in results.items():
            inner = [r.get("fit_s") or r.get("train_s") for r in runs]
            inner = statistics.median(inner) if None not in inner else None
            m = med[side]
            ratio = "" if base is None else f"{m['wall'] / base:.2f}"
            print(f"| {'scikit-learn' if side == 'sklearn' else 'numbamlp train'} | {m['roc_auc']:.4f} | "
                  f"{m['accuracy']:.4f} | {m['wall']:.2f} | {'' if inner is None else f'{inner:.2f}'} | {ratio} |")
        if "sklearn" in results:
            s = results["sklearn"][0]
            layout = "sparse" if s["sparse"] else "dense"
            print(f"scikit-learn: {s['inputs']} inputs after the ColumnTransformer ({layout}),"
                  f" {s['epochs_run']} epochs, pandas read {s['read_s']:.2f} s, predict {s['predict_s']:.2f} s, "
                  f"BLAS threads {s['blas']}; every wall: {[round(r['wall'], 2) for r in results['sklearn']]}")
        if "numbamlp" in results:
            n = results["numbamlp"]
            print(f"numbamlp: layers {n[-1]['layers']}, features {n[-1]['features']}; split check: "
                  f"{n[-1].get('split_check')}; ROC AUC from {n[-1]['auc_source']}; "
                  f"every wall: {[round(r['wall'], 2) for r in n]}")
            if "p" in n[-1]:
                self.agree(n[-1]["run"], n[-1]["p"])
        if "sklearn" in med and "numbamlp" in med:
            d_auc = med["numbamlp"]["roc_auc"] - med["sklearn"]["roc_auc"]
            d_acc = med["numbamlp"]["accuracy"] - med["sklearn"]["accuracy"]
            ratio = med["numbamlp"]["wall"] / med["sklearn"]["wall"]
            # "within 0.005": a numbamlp ahead by more is shown as such, not as a failure to match
            verdict = lambda d: "within 0.005" if abs(d) <= 0.005 else ("ahead" if d > 0 else "BEHIND")  # noqa: E731
            print(f"goals: numbamlp − scikit-learn: ROC AUC {d_auc:+.4f} ({verdict(d_auc)}), accuracy {d_acc:+.4f} "
                  f"({verdict(d_acc)}); wall {ratio:.2f}× ({'≤' if ratio <= 0.5 else 'ABOVE'} 0.5)", flush=True)

    # -- the big file of the read and memory parts
    def big_files(self) -> dict[str, Path]:
        """table.* at --big-rows rows (same generator and seed), written on first use and kept.
        At 50,000 rows the float32 features are 2 MB: below the run-to-run noise of a peak RSS
        (and of the fixed costs a tiny file removes), so the memory bound needs more rows."""
        rows = self.args.big_rows
        if rows == self.args.rows:
            return self.paths
        paths = {fmt: self.out / f"big-{rows}-s{self.args.seed}.{fmt}" for fmt in FORMATS}
        if not all(path.exists() for path in paths.values()):
            start = time.perf_counter()
            write(generate(rows, self.args.seed)[0], self.out, f"big-{rows}-s{self.args.seed}")
            print(f"\n(generated the {rows}-row files in {time.perf_counter() - start:.1f} s: "
                  + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.0f} MB" for p in paths.values()) + ")", flush=True)
        return paths

    # -- read
    def read(self) -> None:
        a = self.args
        sizes = {a.rows: self.paths, a.big_rows: self.big_files()}
        for paths in sizes.values():  # every read finds the file in the page cache
            for path in paths.values():
                path.read_bytes()
        readers = ["numbamlp", "pyarrow"] + ([f"numbamlp at {a.against}"] if a.against else [])
        old_tree = {"PYTHONPATH": str(tree_at(a.against))} if a.against else None
        times = {(n, fmt): {reader: [] for reader in readers} for n in sizes for fmt in FORMATS}
        failed: dict[tuple, str] = {}
        for r in range(a.read_repeat):
            for (n, fmt), got in times.items():
                for reader in readers if r % 2 == 0 else readers[::-1]:
                    if reader == "numbamlp" and (n, fmt) in failed:
                        continue
                    code = READ_PYARROW if reader == "pyarrow" else READ_NUMBAMLP
                    child = run_child([sys.executable, "-c", code, str(sizes[n][fmt]), str(self.tiny[fmt]), str(HERE)],
                                      self.cwd, env=old_tree if reader.startswith("numbamlp at") else None)
                    if child["rc"] != 0:
                        failed[(n, fmt)] = child["error"]
                        continue
                    got[reader].append(json.loads(last_line(child["stdout"]))["seconds"])
        print(f"\n## read time: numbamlp_read against pyarrow's own read of the file, each a fresh process timed "
              f"around the call (after an untimed read of the tiny file), medians of {a.read_repeat} interleaved "
              f"rounds (load {os.getloadavg()[0]:.2f})")
        before = f" {a.against} s | its ratio |" if a.against else ""
        print(f"| rows | format | file MB | numbamlp s | pyarrow s | ratio (goal ≤ 1.5) |{before}")
        print("|---|---|---|---|---|---|" + ("---|---|" if a.against else ""))
        for (n, fmt), got in times.items():
            theirs = statistics.median(got["pyarrow"])
            ours = statistics.median(got["numbamlp"]) if got["numbamlp"] else None
            then = statistics.median(got[readers[-1]]) if a.against else None
            print(f"| {n} | {fmt} | {sizes[n][fmt].stat().st_size / 1e6:.1f} | "
                  f"{'failed' if ours is None else f'{ours:.3f}'} | {theirs:.3f} | "
                  f"{'' if ours is None else f'{ours / theirs:.2f}'} |"
                  + (f" {then:.3f} | {then / theirs:.2f} |" if a.against else ""))
        for (n, fmt), error in failed.items():
            print(f"numbamlp_read({n} rows, {fmt}) FAILED: {error}")
        print("every read (s): " + json.dumps({f"{n} {fmt}": {k: [round(v, 3) for v in vs] for k, vs in t.items() if vs}
                                               for (n, fmt), t in times.items()}), flush=True)

    # -- memory
    def memory(self) -> None:
        a = self.args
        paths = self.big_files()
        data_mb = a.big_rows * len(FEATURES) * 4 / 1e6
        runs = self.out / "runs"

        def peak(what: str, fmt: str, paths: dict[str, Path], tag: str):
            if what == "train":
                command = self.numbamlp_command(paths[fmt], runs / f"memory-{tag}-{fmt}", epochs=1) + ["--overwrite"]
            else:
                code = READ_NUMBAMLP if what == "read" else READ_PYARROW
                command = [sys.executable, "-c", code, str(paths[fmt]), str(self.tiny[fmt]), str(HERE)]
            child = run_child(command, self.cwd, measure_rss=True)
            return child["peak_mb"] if child["rc"] == 0 else child["error"]

        print(f"\n## peak memory above a {TINY_ROWS}-row file of the same format, × the float32 features "
              f"({a.big_rows} × {len(FEATURES)} × 4 B = {data_mb:.1f} MB; goal ≤ 2.5)")
        print("| what | format | peak MB | tiny-file peak MB | × float32 data |")
        print("|---|---|---|---|---|")
        errors = []
        # pyarrow's own read for scale: its table alone holds the text columns as strings, which
        # for this table weigh more than the float32 features do.
        labels = {"train": "numbamlp train --epochs 1", "read": "numbamlp_read",
                  "pyarrow": "pyarrow's read (reference)"}
        for what, label in labels.items():
            for fmt in FORMATS:
                big, tiny = peak(what, fmt, paths, "big"), peak(what, fmt, self.tiny, "tiny")
                if isinstance(big, str) or isinstance(tiny, str):
                    errors.append(f"{label} {fmt} FAILED: {big if isinstance(big, str) else tiny}")
                    print(f"| {label} | {fmt} | failed | failed | |")
                    continue
                print(f"| {label} | {fmt} | {big:.0f} | {tiny:.0f} | {(big - tiny) / data_mb:.2f} |", flush=True)
        for error in errors:
            print(error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0, help="of the table, the split and both models")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "numbamlp-bench-tables"),
                        help="folder of the files and runs (kept for reruns)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds of scikit-learn and numbamlp")
    parser.add_argument("--read-repeat", type=int, default=5, help="interleaved rounds of reads")
    parser.add_argument("--against", metavar="REV", help="the read part also times numbamlp's reader at this git "
                                                         "revision, interleaved (before/after)")
    parser.add_argument("--big-rows", type=int, default=1_000_000,
                        help="rows of the second file of the read part and the file of the memory part")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--skip-sklearn", action="store_true", help="the same as leaving sklearn out of --parts")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, default=1e-4, help="scikit-learn's L2 term (its default)")
    parser.add_argument("--numbamlp-args", default="", help="more `numbamlp train` options, e.g. '--drop id'")
    args = parser.parse_args()
    if args.skip_sklearn and "sklearn" in args.parts:
        args.parts.remove("sklearn")

    import threadpoolctl

    blas = [(i.get("internal_api"), i.get("num_threads")) for i in threadpoolctl.threadpool_info()]
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                                      "OPENBLAS_CORETYPE") if k in os.environ}
    print(f"# bench/tables.py  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {platform.node()}  {os.cpu_count()} CPUs "
          f"(affinity {len(os.sched_getaffinity(0))})  load {os.getloadavg()[0]:.2f}  "
          f"python {platform.python_version()}"
          f"  numpy {np.__version__}  BLAS {blas}  env {env}  numbamlp threads: all cores (its default)")
    print("# " + shlex.join([Path(sys.executable).name, "bench/tables.py", *sys.argv[1:]]), flush=True)
    bench = Bench(args)
    if "generate" in args.parts:
        bench.generate()
    bench.check_files()
    if "sklearn" in args.parts or "numbamlp" in args.parts:
        bench.compare()
    if "read" in args.parts:
        bench.read()
    if "memory" in args.parts:
        bench.memory()
    if "encodings" in args.parts:
        compare_encodings(bench.paths["csv"], args)


def compare_encodings(csv_path: Path, args) -> None:
    """The "encodings" part (see the module docstring)."""
    import warnings

    import numbamlp.encoding as encoding
    from numbamlp import Trainer
    from numbamlp.config import DataConfig
    from numbamlp.data import DataNote, prepare
    from numbamlp.metrics import classification_metrics

    config = {"model": {"hidden": args.hidden}, "optimizer": {"name": "adam", "lr": args.lr,
              "weight_decay": args.alpha / args.batch_size}, "batch_size": args.batch_size, "epochs": args.epochs,
              "seed": args.seed}
    choices = {"numbamlp's (one-hot ≤ 16 buckets, else target means)": encoding.ONEHOT_MAX_CATEGORIES,
               "every categorical one-hot": 1 << 30}
    results = {name: [] for name in choices}
    default = encoding.ONEHOT_MAX_CATEGORIES
    for round_ in range(args.repeat):
        for name, limit in (choices.items() if round_ % 2 == 0 else reversed(choices.items())):
            encoding.ONEHOT_MAX_CATEGORIES = limit
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DataNote)
                    splits = prepare(DataConfig(train=str(csv_path), label_column=LABEL), args.seed, dtype=np.float32)
            finally:
                encoding.ONEHOT_MAX_CATEGORIES = default
            trainer = Trainer(config)
            start = time.perf_counter()
            trainer.fit(splits.X_train, splits.y_train)
            seconds = time.perf_counter() - start
            classes = trainer.model.classes.tolist()
            y_idx = np.array([classes.index(v) for v in splits.y_test.tolist()])
            scores = classification_metrics(y_idx, trainer.model.predict_proba(splits.X_test), len(classes))
            results[name].append((splits.X_train.shape[1], (splits.X_train.nbytes + splits.X_test.nbytes) / 2**20,
                                  seconds, scores["roc_auc"], scores["accuracy"]))
    print(f"\n## a many-category column: target means against one-hot, {args.repeat} interleaved rounds, medians "
          f"(load {os.getloadavg()[0]:.2f})")
    print("| encoding | inputs | X MB | training s | test ROC AUC | test accuracy |\n|---|---|---|---|---|---|")
    for name, rows in results.items():
        inputs, megabytes, seconds, auc, accuracy = (statistics.median(column) for column in zip(*rows))
        print(f"| {name} | {inputs:.0f} | {megabytes:.1f} | {seconds:.2f} | {auc:.4f} | {accuracy:.4f} |")


if __name__ == "__main__":
    main()
