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
    np.testing.assert_array_equal(read_features(path, 2), [[1, 2], [3, 4]])
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
        np.testing.assert_array_equal(read_features(labelled, 3), X)
        np.testing.assert_array_equal(read_features(bare, 3), X)
        np.testing.assert_array_equal(read_features(named, 3, label_column="y"), X)
    with pytest.raises(DataError, match=r"row 2, column 2 \('2'\): 'x' is not a number"):
        read_features(bad, 3)


BAD_CSV = {
    "a non-number cell": ("x,y,label\n1,2,a\n3,oops,b\n", "row 3, column 2 ('y'): 'oops' is not a number"),
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
