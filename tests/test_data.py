"""Data at the boundary: every source loads, every bad input is one clear DataError."""

import numpy as np
import pytest

from numbamlp.config import DataConfig
from numbamlp.data import BUILTIN_SETS, DataError, load_dataset, prepare, read_features


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_builtin_sets_load(name):
    from numbamlp.data import REGRESSION_SETS

    data = load_dataset(f"builtin:{name}", task="regression" if name in REGRESSION_SETS else "classification")
    assert data.X.ndim == 2 and len(data.X) == len(data.y) and len(np.unique(data.y)) >= 2


def test_npz_with_test_arrays_uses_them(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    np.savez(tmp_path / "d.npz", X=X, y=y, X_test=X[:10], y_test=y[:10])
    splits = prepare(DataConfig(train=str(tmp_path / "d.npz")), seed=0)
    assert len(splits.y_train) == 40 and len(splits.y_test) == 10


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_with_and_without_header_and_label_column(tmp_path):
    with_header = load_dataset(write(tmp_path, "a.csv", "f1,f2,label\n1,2,a\n3,4,b\n"))
    without = load_dataset(write(tmp_path, "b.csv", "1,2,a\n3,4,b\n"))
    np.testing.assert_array_equal(with_header.X, without.X)
    assert list(with_header.y) == ["a", "b"] == list(without.y)
    by_name = load_dataset(write(tmp_path, "c.csv", "label,f1,f2\n0,1,2\n1,3,4\n"), label_column="label")
    by_index = load_dataset(str(tmp_path / "c.csv"), label_column=0)
    np.testing.assert_array_equal(by_name.X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(by_name.y, by_index.y)
    assert by_name.y.dtype.kind == "i"  # numeric labels become integers


def test_read_features_ignores_a_label_column_only_when_there_is_one(tmp_path):
    path = write(tmp_path, "p.csv", "1,2,cat\n3,4,dog\n")
    # one column too many, and no names to say which: refused, not the last taken silently
    with pytest.raises(DataError, match="one more than the model's 2 features, and nothing says which one is not a "
                                        "feature: name it with --label-column"):
        read_features(path, 2)
    np.testing.assert_array_equal(read_features(path, 2, label_column=-1), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(read_features(write(tmp_path, "q.csv", "1,2\n3,4\n"), 2), [[1, 2], [3, 4]])
    with pytest.raises(DataError, match="3 features but the model expects 5"):
        read_features(write(tmp_path, "r.csv", "1,2,3\n"), 5)


def test_read_features_reads_csv_through_pyarrow_and_names_a_bad_cell_through_the_csv_module(tmp_path, monkeypatch):
    """Prediction reads a CSV as training does (pyarrow's reader; the csv module only for a
    file pyarrow refuses, whose messages name the row, column and value)."""
    import numbamlp.data as data

    rng = np.random.default_rng(0)
    X = np.round(rng.normal(size=(300, 3)), 5)
    labelled = write(tmp_path, "l.csv", "a,b,c,label\n" + "".join(f"{a},{b},{c},{k % 2}\n" for k, (a, b, c) in enumerate(X)))
    bare = write(tmp_path, "b.csv", "".join(f"{a},{b},{c}\n" for a, b, c in X))
    named = write(tmp_path, "n.csv", "y,a,b,c\n" + "".join(f"cat,{a},{b},{c}\n" for a, b, c in X))
    bad = write(tmp_path, "bad.csv", "1,2,3\n4,x,6\n")
    with monkeypatch.context() as patched:
        patched.setattr(data, "_csv_rows", lambda *args: pytest.fail("the csv module read a file pyarrow takes"))
        np.testing.assert_array_equal(read_features(labelled, 3, label_column="label"), X)
        np.testing.assert_array_equal(read_features(bare, 3), X)
        np.testing.assert_array_equal(read_features(named, 3, label_column="y"), X)
    with pytest.raises(DataError, match=r"row 2, column 2 \('2'\): 'x' is text, so the column looks categorical"):
        read_features(bad, 3)


BAD_CSV = {
    "a non-number cell": ("x,y,label\n1,2,a\n3,oops,b\n", "row 3, column 2 ('y'): 'oops' is text, so the column looks categorical"),
    "a ragged row": ("1,2,a\n3,b\n", "row 2 has 2 columns, expected 3"),
    "no rows": ("\n\n", "has no rows"),
    "a header only": ("a,b,label\n", "header but no data rows"),
    "one column": ("1\n2\n", "at least one feature column"),
    "an infinite value": ("1,inf,a\n2,3,b\n", "NaN or infinite"),
    "a NaN": ("1,nan,a\n2,3,b\n", "NaN or infinite"),
    "non-integral numeric labels": ("1,2,0.5\n2,3,1\n", "non-integral"),
}


@pytest.mark.parametrize("case", BAD_CSV)
def test_bad_csv_is_a_clear_error(tmp_path, case):
    text, message = BAD_CSV[case]
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(write(tmp_path, "bad.csv", text))


BAD_NPZ = {
    "no y": (dict(X=np.ones((3, 2))), "has no array 'y'"),
    "3-D X": (dict(X=np.ones((3, 2, 2)), y=np.zeros(3)), "must be 2-D"),
    "length mismatch": (dict(X=np.ones((3, 2)), y=np.zeros(4)), "3 rows but y has 4 labels"),
    "empty": (dict(X=np.ones((0, 2)), y=np.zeros(0)), "X is empty"),
    "NaN in X": (dict(X=np.array([[1.0, np.nan]]), y=np.zeros(1)), "NaN or infinite values"),
    "NaN label": (dict(X=np.ones((2, 2)), y=np.array([0.0, np.nan])), "NaN or infinite labels"),
    "string X": (dict(X=np.array([["a", "b"]]), y=np.zeros(1)), "X must hold numbers"),
    "half of the test pair": (dict(X=np.ones((2, 2)), y=np.zeros(2), X_test=np.ones((1, 2))), "only one of"),
}


@pytest.mark.parametrize("case", BAD_NPZ)
def test_bad_npz_is_a_clear_error(tmp_path, case):
    arrays, message = BAD_NPZ[case]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(str(tmp_path / "bad.npz"))


def test_single_class_and_unknown_sources(tmp_path):
    np.savez(tmp_path / "one.npz", X=np.ones((4, 2)), y=np.zeros(4))
    with pytest.raises(DataError, match="single class"):
        prepare(DataConfig(train=str(tmp_path / "one.npz")), seed=0)
    for source, message in [("nope.npz", "not found"), (str(tmp_path), "is a directory"),
                            (write(tmp_path, "d.txt", "1"), "unsupported data file"),
                            ("builtin:mnist", "unknown built-in")]:
        with pytest.raises(DataError, match=message):
            load_dataset(source)
    with pytest.raises(DataError, match="not a valid .npz archive"):
        load_dataset(write(tmp_path, "garbage.npz", "not a zip"))


# ---------------------------------------------------------------- a table's columns, by name
def _table(path, names, columns):
    path.write_text(",".join(names) + "\n" + "".join(",".join(map(str, row)) + "\n" for row in zip(*columns)))
    return path


@pytest.fixture(scope="module")
def named_run(tmp_path_factory):
    """A model trained on a CSV file whose header names its features a, b, c (label last)."""
    from numbamlp.config import TrainConfig
    from numbamlp.run import train_run

    folder = tmp_path_factory.mktemp("named")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + 2 * X[:, 1] - X[:, 2] > 0).astype(int)
    train = _table(folder / "train.csv", ["a", "b", "c", "label"], [*X.T, y])
    run = train_run(TrainConfig.model_validate({"epochs": 3, "model": {"hidden": [8]}, "data": {"train": str(train)}}),
                    out=folder / "run")
    return folder, X, run


def test_a_model_file_records_its_features_names_and_predict_matches_columns_by_name(named_run):
    """A file with an id column added, or two columns swapped, was read by position: the
    house model predicted 1,383,598 / -1,439,083 for prices of 233k-492k, exit 0."""
    from numbamlp.io import load_model

    folder, X, run = named_run
    model = load_model(run["model_path"])
    assert model.feature_names == ["a", "b", "c"]
    expected = model.predict_proba(X)
    reordered = _table(folder / "reordered.csv", ["id", "c", "label", "a", "b"],
                       [np.arange(len(X)), X[:, 2], np.zeros(len(X), int), X[:, 0], X[:, 1]])
    got = model.predict_proba(read_features(str(reordered), 3, names=model.feature_names))
    np.testing.assert_array_equal(got, expected)
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"id": [f"h{i}" for i in range(len(X))], "b": X[:, 1], "a": X[:, 0], "c": X[:, 2]}),
                   folder / "reordered.parquet")
    got = model.predict_proba(read_features(str(folder / "reordered.parquet"), 3, names=model.feature_names))
    np.testing.assert_array_equal(got, expected)
    missing = _table(folder / "missing.csv", ["a", "c"], [X[:, 0], X[:, 2]])
    with pytest.raises(DataError, match="has no column 'b', which the model was trained with"):
        read_features(str(missing), 3, names=model.feature_names)
    headerless = folder / "headerless.csv"
    headerless.write_text("".join(f"{a},{b},{c},7\n" for a, b, c in X))
    with pytest.raises(DataError, match="has no header row and 4 columns; the model expects 3 features, named"):
        read_features(str(headerless), 3, names=model.feature_names)


def test_a_table_is_matched_by_its_column_names_in_python_too(named_run):
    pd = pytest.importorskip("pandas")
    from numbamlp.io import load_model

    _, X, run = named_run
    model = load_model(run["model_path"])
    table = pd.DataFrame({"id": range(len(X)), "c": X[:, 2], "a": X[:, 0], "b": X[:, 1]})
    np.testing.assert_array_equal(model.predict_proba(table), model.predict_proba(X))
    with pytest.raises(ValueError, match="no column 'b'"):
        model.predict(table.drop(columns="b"))


def test_pandas_header_of_unnamed_columns_is_a_header(tmp_path):
    """pandas' to_csv of unnamed columns writes the header 0,1,...: it was read as a data row,
    and predict gave 6 predictions for 5 rows, each shifted by one, exit 0."""
    rows = np.arange(15, dtype=float).reshape(5, 3) / 10
    path = tmp_path / "pandas.csv"
    path.write_text("0,1,2\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    X = read_features(str(path), 3)
    np.testing.assert_array_equal(X, rows)
    train = tmp_path / "train.csv"
    train.write_text("0,1,2\n" + "".join(f"{a},{b},{i % 2}\n" for i, (a, b, _) in enumerate(rows)))
    assert load_dataset(str(train)).X.shape == (5, 2)


def test_labels_that_look_like_a_regression_target_are_refused_unless_the_task_is_given(tmp_path):
    """A price column trained as 1,995 classes (19,360 on 20,000 rows), test accuracy 0.0000,
    without a word."""
    from numbamlp.config import TrainConfig
    from numbamlp.data import prepare_for

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    price = np.round(200_000 + 50_000 * X[:, 0]).astype(int)
    house = _table(tmp_path / "house.csv", ["a", "b", "c", "price"], [*X.T, price])
    with pytest.raises(DataError, match="looks like a regression target, not classes: give --task regression"):
        prepare_for(TrainConfig.model_validate({"data": {"train": str(house)}}))
    assert prepare_for(TrainConfig.model_validate({"task": "regression", "data": {"train": str(house)}})).X_train.shape[1] == 3
    insisted = TrainConfig.model_validate({"task": "classification", "data": {"train": str(house), "test_fraction": 0.5}})
    with pytest.raises(DataError, match="too few to hold out"):  # (it goes on as classes, to the split's own check)
        prepare_for(insisted)
    prepare_for(TrainConfig.model_validate({"data": {"train": "builtin:digits"}}))  # (10 classes: classes)


@pytest.mark.parametrize("cell, says", [
    ("pro", "'pro' is text, so the column looks categorical; numbamlp reads numeric features only: drop the column "
            "or encode it as numbers"),
    ("", "'' is a missing value; numbamlp needs every feature cell to be a number: fill the missing cells"),
    ("NA", "'NA' is a missing value"),
])
def test_a_cell_that_is_not_a_number_is_said_to_be_text_or_missing(tmp_path, cell, says):
    """A text cell, an empty one and 'NA' all said "fix the cell, or name the column as the
    label column": wrong for a categorical feature or a missing value."""
    path = tmp_path / "cells.csv"
    path.write_text("age,plan,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20))
                    + f"30,{cell},1\n")
    with pytest.raises(DataError) as refused:
        load_dataset(str(path))
    assert says in str(refused.value) and "column 2 ('plan')" in str(refused.value), str(refused.value)


def test_sparse_or_featureless_x_says_so():
    from scipy import sparse

    from numbamlp.trainer import Trainer

    with pytest.raises(ValueError, match=r"X is a sparse matrix \(csr_matrix, 10 × 3\).*pass X.toarray\(\)"):
        Trainer({"epochs": 1}).fit(sparse.random(10, 3, density=0.5, format="csr"), np.arange(10) % 2)
    with pytest.raises(ValueError, match=r"X has no features \(0 columns\)"):
        Trainer({"epochs": 1}).fit(np.zeros((10, 0)), np.arange(10) % 2)


@pytest.mark.parametrize("name, delimiter, decimal", [
    ("semicolons.csv", ";", "."), ("decimal_commas.csv", ";", ","), ("tabs.tsv", "\t", "."),
    ("pipes.csv", "|", "."), ("gzipped.csv.gz", ",", "."), ("zstd.tsv.zst", "\t", "."),
])
def test_a_csv_files_delimiter_decimal_mark_and_compression_are_read_as_written(tmp_path, name, delimiter, decimal):
    """A semicolon-separated file said "needs at least one feature column and a label
    column"; with decimal commas "row 2 has 4 columns, expected 1"; .tsv and .csv.gz were
    refused as unsupported."""
    import pyarrow as pa

    rng = np.random.default_rng(1)
    X = np.round(rng.normal(size=(50, 3)), 4)
    y = (X[:, 0] > 0).astype(int)
    cell = (lambda v: f"{v}".replace(".", ",")) if decimal == "," else str
    text = delimiter.join(["a", "b", "c", "label"]) + "\n" + "".join(
        delimiter.join([*map(cell, row), str(label)]) + "\n" for row, label in zip(X, y))
    path = tmp_path / name
    if name.endswith((".gz", ".zst")):
        with pa.output_stream(str(path), compression="detect") as stream:
            stream.write(text.encode())
    else:
        path.write_text(text)
    data = load_dataset(str(path))
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    np.testing.assert_array_equal(read_features(str(path), 3, names=["a", "b", "c"]), X)
    np.testing.assert_array_equal(read_features(str(path), 3, label_column="label"), X)
    bad = tmp_path / ("bad" + "".join(path.suffixes))  # a bad cell is still named by the csv module's reading
    broken = text.replace(cell(X[2, 1]), "oops", 1)
    if name.endswith((".gz", ".zst")):
        with pa.output_stream(str(bad), compression="detect") as stream:
            stream.write(broken.encode())
    else:
        bad.write_text(broken)
    with pytest.raises(DataError, match=r"row 4, column 2 \('b'\): 'oops' is text"):
        load_dataset(str(bad))


def test_a_stratified_split_that_cannot_give_the_asked_share_says_what_it_did(tmp_path):
    """1,995 price classes shrank the test split from 500 rows to 5 without a word."""
    import subprocess
    import sys

    from numbamlp.config import TrainConfig
    from numbamlp.data import DataNote, prepare_for

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    labels = np.where(np.arange(400) < 60, np.arange(400) % 3, 100 + np.arange(400))
    path = _table(tmp_path / "many.csv", ["a", "b", "c", "label"], [*X.T, labels])
    config = TrainConfig.model_validate({"task": "classification", "data": {"train": str(path)}})
    with pytest.warns(DataNote, match=r"the test split holds 15 rows, not the 100 \(0.25 of 400\) asked: 340 of 343 "
                                      "classes have a single row"):
        prepare_for(config)
    run = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", "train", "--data", str(path), "--task",
                          "classification", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stderr.startswith("note: ") and "UserWarning" not in run.stderr, run.stderr


# ---------------------------------------------------------------- a CSV file's header, as the user says
def _spectra(path, first_row, rows):
    """A CSV file: ``first_row`` (a list of cells, or None for none) over ``rows`` (N, W) of numbers."""
    lines = ([",".join(first_row)] if first_row is not None else []) + [",".join(f"{v:g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_the_header_setting_overrides_detection_in_training(tmp_path):
    """Wavelengths for names and a numeric label: detection reads the first row as data; the
    user says it is a header (and the reverse)."""
    from numbamlp.data import feature_names

    rows = np.array([[0.5, 0.25, 1], [0.75, 0.5, 0], [0.25, 0.125, 1]])
    path = _spectra(tmp_path / "spectra.csv", ["400", "410", "1"], rows)
    assert load_dataset(path).X.shape == (4, 2) and feature_names(path) is None
    named = load_dataset(path, header=True)
    np.testing.assert_array_equal(named.X, rows[:, :2])
    assert feature_names(path, header=True) == ["400", "410"]
    pandas = _spectra(tmp_path / "pandas.csv", ["0", "1", "2"], rows)  # (detected as a header)
    assert load_dataset(pandas).X.shape == (3, 2) and load_dataset(pandas, header=False).X.shape == (4, 2)
    assert feature_names(pandas, header=False) is None
    splits = prepare(DataConfig(train=path, header=True, test_fraction=0.34), seed=0)
    assert splits.feature_names == ["400", "410"] and len(splits.y_train) + len(splits.y_test) == 3


def test_a_first_row_a_model_cannot_tell_is_refused_unless_the_header_is_given(tmp_path):
    """A model whose features are named by numbers (wavelengths), a file whose first row is
    numbers but not those names: a header lacking some, or data? Either guess can be silently
    wrong: refused, naming the file and --header/--no-header."""
    names = ["400", "410", "420"]
    rows = np.arange(12, dtype=float).reshape(4, 3) / 8
    bare = _spectra(tmp_path / "bare.csv", None, rows)
    with pytest.raises(DataError) as refused:
        read_features(bare, 3, names=names)
    message = str(refused.value)
    assert message.startswith(f"{bare}: ") and "--header or --no-header" in message and "\n" not in message
    np.testing.assert_array_equal(read_features(bare, 3, names=names, header=False), rows)
    with pytest.raises(DataError, match="has no column '400'"):
        read_features(bare, 3, names=names, header=True)
    # the names, in another order, beside an id and a label: a header, without being told
    shuffled = _spectra(tmp_path / "shuffled.csv", ["7", "420", "400", "410", "1"],
                        np.column_stack([np.arange(4), rows[:, 2], rows[:, 0], rows[:, 1], np.ones(4)]))
    np.testing.assert_array_equal(read_features(shuffled, 3, names=names), rows)
    # names that are not numbers: a row of numbers is data, as before
    np.testing.assert_array_equal(read_features(bare, 3, names=["a", "b", "c"]), rows)
    # pandas' names for unnamed columns (0, 1, 2) say nothing but the order: a row of them is a
    # header, any other row of numbers data
    np.testing.assert_array_equal(read_features(bare, 3, names=["0", "1", "2"]), rows)
    pandas = _spectra(tmp_path / "pandas.csv", ["0", "1", "2"], rows)
    np.testing.assert_array_equal(read_features(pandas, 3, names=["0", "1", "2"]), rows)


def test_the_header_setting_is_for_csv_files_only(tmp_path):
    from numbamlp.data import check_header_applies

    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.arange(4) % 2)
    for source in (str(tmp_path / "d.npz"), "builtin:iris"):
        for header in (True, False):
            with pytest.raises(DataError, match="--header/--no-header say whether a CSV file's first row"):
                check_header_applies(header, source)
    check_header_applies(None, str(tmp_path / "d.npz"))
    check_header_applies(True, str(tmp_path / "d.npz"), str(tmp_path / "t.csv"))  # (one CSV file among them)
    with pytest.raises(DataError, match="is not a CSV file"):
        prepare(DataConfig(train=str(tmp_path / "d.npz"), header=False), seed=0)
