"""Data at the boundary: every source loads, every bad input is one clear DataError."""

import json

import numpy as np
import pytest
from naive import FEW, QUICK, assert_one_line_error, labelled_in_the_middle, numbamlp, write_csv

from numbamlp import load_model
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
        patched.setattr(data.prediction, "_csv_rows", lambda *args: pytest.fail("the csv module read a file pyarrow takes"))
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
    ("pro", "'pro' is text, so the column looks categorical, where numbers are read (a model trained on numbers "
            "takes numbers): drop the column, or train on the table as it is"),
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


# ---------------------------------------------------------------- labels and class names as a file writes them
def iris_rows():
    from sklearn.datasets import load_iris

    X_iris, y_iris = load_iris(return_X_y=True)
    return X_iris, y_iris


def test_a_regression_target_that_is_not_a_number_is_named(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in 572c187."""
    rows = [["x", "t"], *[[i, i * 0.5] for i in range(40)]]
    rows[6][1] = "abc"
    path = write_csv(tmp_path / "t.csv", rows[0], rows[1:])
    code, output = cli("train", "--task", "regression", "--data", path, *FEW)
    assert code == 2 and "row 7, column 2 ('t'): 'abc' is not a number" in output
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    for cells, phrase in (([str(i * 0.5) for i in range(39)] + ["abc"], "row 40, column 2 ('t'): 'abc' is not a number"),
                          ([str(i * 0.5) for i in range(40)], "holds numbers as text")):
        pq.write_table(pa.table({"x": [float(i) for i in range(40)], "t": cells}), tmp_path / "t.parquet")
        code, output = cli("train", "--task", "regression", "--data", tmp_path / "t.parquet", *FEW)
        assert code == 2 and phrase in output, output


def test_csv_class_names_that_look_like_numbers_stay_distinct_and_as_written(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 0db4bf1."""
    X_iris, y_iris = iris_rows()
    for names in (["01", "1", "2"], ["12345678901234567", "12345678901234568", "3"], ["001", "002", "003"]):
        path = write_csv(tmp_path / "c.csv", ["a", "b", "c", "d", "kind"],
                         [[*row, names[label]] for row, label in zip(X_iris, y_iris)])
        code, output = cli("train", "--data", path, "--out", tmp_path / names[0], *FEW)
        assert code == 0 and "layers [4, 8, 3]" in output, output
        assert sorted(map(str, load_model(tmp_path / names[0]).classes.tolist())) == sorted(names)
    path = write_csv(tmp_path / "int.csv", ["a", "b", "c", "d", "kind"],
                     [[*row, label] for row, label in zip(X_iris, y_iris)])
    assert cli("train", "--data", path, "--out", tmp_path / "ints", *FEW)[0] == 0
    assert load_model(tmp_path / "ints").classes.dtype.kind == "i"  # plain integers stay numbers


def test_a_utf8_bom_and_a_label_column_by_index_keep_every_row(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 0db4bf1."""
    X_iris, y_iris = iris_rows()
    body = "".join(",".join([*(f"{v:g}" for v in row), str(label)]) + "\n" for row, label in zip(X_iris, y_iris))
    (tmp_path / "bom.csv").write_text("\ufeff" + body, encoding="utf-8")
    assert cli("train", "--data", tmp_path / "bom.csv", "--out", tmp_path / "bom", *FEW)[0] == 0
    code, output = cli("predict", tmp_path / "bom", "--data", tmp_path / "bom.csv", "--label-column", "4")
    assert code == 0 and len(output.splitlines()) == 1 + 150  # every row, not the first taken for a header
    (tmp_path / "bomhead.csv").write_text("\ufeffa,b,c,d,kind\n" + body, encoding="utf-8")
    assert cli("train", "--data", tmp_path / "bomhead.csv", "--label-column", "kind", "--out", tmp_path / "bh",
               *FEW)[0] == 0
    first = "".join(",".join([str(label), *(f"{v:g}" for v in row)]) + "\n" for row, label in zip(X_iris, y_iris))
    (tmp_path / "first.csv").write_text(first)
    assert cli("train", "--data", tmp_path / "first.csv", "--label-column", "0", "--out", tmp_path / "lf", *FEW)[0] == 0
    code, output = cli("eval", tmp_path / "lf", "--data", tmp_path / "first.csv", "--label-column", "0")
    assert code == 0 and "(150 rows:" in output, output


def test_empty_label_cells_are_refused_and_byte_labels_are_text(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 0db4bf1."""
    X_iris, y_iris = iris_rows()
    rows = [[*row, label] for row, label in zip(X_iris, y_iris)]
    rows[9][-1] = ""
    code, output = cli("train", "--data", write_csv(tmp_path / "m.csv", list("abcde"), rows), *FEW)
    assert code == 2 and "the label column has an empty cell (first in data row 9" in output
    np.savez(tmp_path / "bytes.npz", X=X_iris, y=np.array([b"a", b"b", b"c"])[y_iris])
    assert cli("train", "--data", tmp_path / "bytes.npz", "--out", tmp_path / "b", *FEW)[0] == 0
    assert load_model(tmp_path / "b").classes.tolist() == ["a", "b", "c"]


def test_values_beyond_float32_are_said_to_be_and_data_errors_say_what_went_wrong(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 0db4bf1."""
    X_iris, y_iris = iris_rows()
    rows = [[*row, label] for row, label in zip(X_iris, y_iris)]
    rows[5][0] = "1e39"
    path = write_csv(tmp_path / "big.csv", list("abcde"), rows)
    code, output = cli("train", "--data", path, *FEW)
    assert code == 2 and "beyond float32's range" in output and "RuntimeWarning" not in output, output
    assert cli("train", "--data", path, "--dtype", "float64", "--out", tmp_path / "f64", *FEW)[0] == 0
    ids = write_csv(tmp_path / "ids.csv", list("abcde"), [[*row, i] for i, row in enumerate(X_iris)])
    code, output = cli("train", "--data", ids, *FEW)
    assert code == 2 and "150 distinct values in 150 rows" in output and "an ID or a feature" in output, output
    code, output = cli("train", "--data", ids, "--task", "classification", *FEW)  # (insisted: the split's word)
    assert code == 2 and "150 classes among 150 rows: is its label column an ID" in output
    code, output = cli("train", "--data", "builtin:iris", "--label-column", "2", *FEW)
    assert code == 2 and "names a column of a CSV or Parquet file" in output


def test_a_label_column_the_header_lacks_is_named_with_the_columns_it_has(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 83b266c."""
    data = labelled_in_the_middle(tmp_path)
    code, output = cli("train", "--data", data, "--label-column", "lable", "--out", tmp_path / "run", *FEW)
    assert code == 2 and "no column named 'lable'; its columns are 'a', 'label', 'b', 'c'" in output, output


def test_a_named_label_column_of_fractions_is_refused_as_labels_not_taken_for_a_feature(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 83b266c.

    The message told the user to pass --label-column, which they had passed."""
    rows = [[f"{i * 0.1:.1f}", f"{(i % 3) + 0.5}"] for i in range(30)]
    data = write_csv(tmp_path / "f.csv", ["a", "label"], rows)
    code, output = cli("train", "--data", data, "--label-column", "label", "--out", tmp_path / "run", *FEW)
    assert code == 2 and "non-integral numeric labels" in output and "choose the label column" not in output
    code, output = cli("train", "--data", data, "--out", tmp_path / "run", *FEW)  # guessed: said to be a feature
    assert code == 2 and "looks like a feature; choose the label column" in output


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_named_label_column_of_class_names_trains_and_evaluates(tmp_path, suffix, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 3548755.

    A fix for named label columns (83b266c) sent every named column of class names
    through the regression targets' check: 'setosa' is not a number."""
    names = np.array(["setosa", "versicolor", "virginica"])[np.arange(60) % 3]
    values = np.random.default_rng(3).normal(size=(60, 2))
    path = tmp_path / f"named{suffix}"
    if suffix == ".csv":
        write_csv(path, ["species", "a", "b"], [[n, f"{p:.3f}", f"{q:.3f}"] for n, (p, q) in zip(names, values)])
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"species": names, "a": values[:, 0], "b": values[:, 1]}), path)
    code, output = cli("train", "--data", path, "--label-column", "species", "--out", tmp_path / "run", *FEW)
    assert code == 0, output
    code, output = cli("eval", tmp_path / "run", "--data", path)
    assert code == 0 and "setosa" in output, output


def test_random_bytes_npz_is_not_a_valid_archive(tmp_path):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    (tmp_path / "r.npz").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DataError, match=r"r.npz is not a valid .npz archive \(not a zip file\)"):
        load_dataset(str(tmp_path / "r.npz"))


def test_a_csv_without_a_label_column_says_which_column_was_taken(tmp_path):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    rows = np.random.default_rng(0).normal(size=(10, 3))
    (tmp_path / "f.csv").write_text("x1,x2,x3\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        load_dataset(str(tmp_path / "f.csv"))
    assert "the label column (column 'x3', the last) holds non-integral numbers" in str(err.value)
    assert "--label-column" in str(err.value)


# ---------------------------------------------------------------- CSV headers
def _rows(values, labels):
    return "".join(",".join(f"{v:.4f}" for v in row) + f",{label}\n" for row, label in zip(values, labels))


def test_a_header_of_numbers_over_a_label_column_of_numbers_is_a_header(tmp_path):
    """Reported 2026-11-30 by a new user (third look); fixed in c82e6ce.

    Columns named 2019, 2020, 2021 and 'label': the names were read as a data row and
    'label' became a class of one row."""
    from numbamlp.data import load_dataset

    values = np.random.default_rng(2).normal(size=(40, 3))
    labels = (values[:, 0] > 0).astype(int)
    (tmp_path / "years.csv").write_text("2019,2020,2021,label\n" + _rows(values, labels))
    data = load_dataset(str(tmp_path / "years.csv"))
    assert data.X.shape == (40, 3) and set(data.y.tolist()) == {0, 1}
    (tmp_path / "names.csv").write_text(_rows(values, np.array(["a", "b"])[labels]))  # no header: class names
    assert load_dataset(str(tmp_path / "names.csv")).X.shape == (40, 3)


@pytest.mark.parametrize("head", [",f0,f1,f2,label\n", "\n\nf0,f1,f2,label\n"], ids=["empty-name", "blank-lines"])
def test_csvs_with_an_unnamed_column_or_leading_blank_lines_take_the_fast_reader(tmp_path, head):
    """Reported 2026-11-30 by a new user (third look); fixed in c82e6ce.

    pandas' to_csv writes an unnamed index column; such files (and leading blank lines)
    went to the csv module's reader, ~20x the data in memory on a 250 MB file."""
    from pathlib import Path

    from numbamlp.data import _read_csv_arrow, load_dataset

    values = np.random.default_rng(3).normal(size=(30, 3))
    labels = np.arange(30) % 2
    rows = _rows(np.column_stack([np.arange(30), values]), labels) if head.startswith(",") else _rows(values, labels)
    path = tmp_path / "f.csv"
    path.write_text(head + rows)
    assert _read_csv_arrow(Path(path), None, np.float32) is not None  # (pyarrow's streaming reader took it)
    data = load_dataset(str(path))
    assert data.X.shape == (30, 4 if head.startswith(",") else 3) and data.y.tolist() == labels.tolist()


# ---------------------------------------------------------------- test and validation files, checked first
def _write_npz(path, X, y):
    np.savez(path, X=X, y=y)
    return path


def test_test_data_is_checked_before_the_first_epoch(tmp_path):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), np.arange(60) % 3
    _write_npz(tmp_path / "train.npz", X, y)
    _write_npz(tmp_path / "unseen.npz", X[:10], np.r_[y[:8], 7, 9])
    run = numbamlp("train", "--data", "train.npz", "--test", "unseen.npz", "--out", "r1", *QUICK, cwd=tmp_path)
    assert_one_line_error(run, 2, "unseen.npz has 2 labels that the training data never shows: 7, 9")
    run = numbamlp("train", "--test", "builtin:iris", "--out", "r2", *QUICK, cwd=tmp_path)
    assert_one_line_error(run, 2, "builtin:iris has 4 features but the training data builtin:digits has 64")
    run = numbamlp("train", "--data", "train.npz", "--val", "unseen.npz", "--out", "r3", *QUICK, cwd=tmp_path)
    assert_one_line_error(run, 2, "unseen.npz has 2 labels that the training data never shows")
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3", "runs"))


def test_a_validation_file_is_used_for_early_stopping(tmp_path, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(90, 3)), np.arange(90) % 3
    X[:, 0] += y  # learnable
    _write_npz(tmp_path / "train.npz", X[:60], y[:60])
    _write_npz(tmp_path / "val.npz", X[60:], y[60:])
    result = cli.invoke("train", "--data", tmp_path / "train.npz", "--val", tmp_path / "val.npz",
                        "--patience", "3", "--epochs", "5", "--hidden", "8", "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all("val_accuracy" in m for m in metrics)
    # validation rows came from the file (30 rows), none from training's 60 (45 trained on, 15 tested)
    assert all(abs(m["val_accuracy"] * 30 - round(m["val_accuracy"] * 30)) < 1e-9 for m in metrics)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["test_rows"] == 15
    both = cli.invoke("train", "--val", "x.npz", "--val-fraction", "0.1")
    assert both.exit_code == 2 and "val and val_fraction are both set" in both.output
