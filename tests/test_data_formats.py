"""Data formats (issue 16): .csv, .parquet, .npz and a folder of .npy files read to the same
arrays, split, standardised and trained on alike; bad files are one clear DataError (and,
through the command line, one line and exit 2); a folder's X is read through a memory map;
the in-place split and the chunked passes give what the plain numpy computations give."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import numbamlp.data as data
from numbamlp.config import DataConfig, TrainConfig
from numbamlp.data import DataError, Standardizer, load_dataset, prepare, prepare_for, read_features, split_arrays
from numbamlp.trainer import Trainer

FORMATS = ("csv", "parquet", "npz", "npy")


def table(rows=200, features=4, seed=0):
    """X (rows, features) float64 rounded to 5 decimals (a CSV holds them exactly), y (rows,)
    in 3 classes from a linear teacher."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(rows, features)), 5)
    y = np.argmax(X @ rng.normal(size=(features, 3)), axis=1)
    return X, y


def write(folder, fmt, X, y, X_test=None, y_test=None):
    """(X, y) as a file (or folder) of format ``fmt``; the label column last (csv, parquet).
    For npy, X.npy is float32, as a user writes a file meant to be mapped."""
    if fmt == "csv":
        path = folder / "d.csv"
        lines = [",".join([f"f{j}" for j in range(X.shape[1])] + ["label"])]
        lines += [",".join([repr(float(v)) for v in row] + [str(label)]) for row, label in zip(X, y)]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "parquet":
        path = folder / "d.parquet"
        pq.write_table(pa.table({**{f"f{j}": X[:, j] for j in range(X.shape[1])}, "label": y}), path)
    elif fmt == "npz":
        path = folder / "d.npz"
        extra = {} if X_test is None else {"X_test": X_test, "y_test": y_test}
        np.savez(path, X=X, y=y, **extra)
    else:
        path = folder / "npy"
        path.mkdir()
        np.save(path / "X.npy", X.astype(np.float32))
        np.save(path / "y.npy", y)
        if X_test is not None:
            np.save(path / "X_test.npy", X_test.astype(np.float32))
            np.save(path / "y_test.npy", y_test)
    return str(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_reader_gives_the_table(tmp_path, fmt):
    X, y = table()
    loaded = load_dataset(write(tmp_path, fmt, X, y), dtype=np.float32)
    np.testing.assert_array_equal(loaded.X, X.astype(np.float32))
    np.testing.assert_array_equal(loaded.y, y)
    assert loaded.y.dtype.kind == "i"


def test_parquet_in_row_groups_batches_column_groups_and_blocks_on_threads(tmp_path, monkeypatch):
    """Every path of the Parquet copy at once: several row groups (one of odd length), record
    batches, groups of columns, blocks of rows shared among threads, integer, boolean and
    float32 columns beside float64 ones, the label column in the middle."""
    import numbamlp.data as data

    rng = np.random.default_rng(3)
    rows = 1003
    columns = {"a": rng.normal(size=rows), "b": rng.integers(-50, 50, rows),
               "c": rng.normal(size=rows).astype(np.float32), "label": rng.integers(0, 4, rows),
               "d": rng.random(rows) < 0.5, "e": rng.normal(size=rows)}
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=300)
    assert pq.ParquetFile(path).metadata.num_row_groups == 4
    monkeypatch.setattr(data.parquet, "PARQUET_GROUP_BYTES", 2 * 8 * 300)  # two columns at a time
    monkeypatch.setattr(data.parquet, "PARQUET_BLOCK_ROWS", 7)
    monkeypatch.setattr(data.parquet, "_copy_threads", lambda: 3)
    loaded = load_dataset(str(path), label_column="label", dtype=np.float32)
    expected = np.stack([columns[name].astype(np.float64) for name in "abcde"], axis=1).astype(np.float32)
    np.testing.assert_array_equal(loaded.X, expected)
    np.testing.assert_array_equal(loaded.y, columns["label"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_prediction_reads_features_with_or_without_labels_in_every_format(tmp_path, fmt):
    """read_features (numbamlp predict) needs no labels: a file of features alone gives the
    features a labelled file gives; labels are not read (text labels in a Parquet file
    included), and a label column named by --label-column is left out."""
    X, y = table()
    # (a label column is named: one column more than the features, nothing else says which)
    labelled = read_features(write(tmp_path, fmt, X, y), 4, label_column="label" if fmt in ("csv", "parquet") else None)
    bare_dir = tmp_path / "bare"
    bare_dir.mkdir()
    if fmt == "csv":
        bare = bare_dir / "d.csv"
        bare.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in X))
    elif fmt == "parquet":
        bare = bare_dir / "d.parquet"
        pq.write_table(pa.table({f"f{j}": X[:, j] for j in range(4)}), bare)
        named = bare_dir / "named.parquet"
        pq.write_table(pa.table({"kind": np.where(y == 0, "cat", "dog"), **{f"f{j}": X[:, j] for j in range(4)}}),
                       named)
        np.testing.assert_array_equal(read_features(str(named), 4, label_column="kind"), X)
    elif fmt == "npz":
        bare = bare_dir / "d.npz"
        np.savez(bare, X=X)
    else:
        bare = bare_dir / "npy"
        bare.mkdir()
        np.save(bare / "X.npy", X.astype(np.float32))
    expected = X.astype(np.float32) if fmt == "npy" else X
    np.testing.assert_array_equal(labelled, expected)
    np.testing.assert_array_equal(read_features(str(bare), 4), expected)
    with pytest.raises(DataError, match="has 4 features but the model expects 2"):
        read_features(str(bare), 2)  # (3 would take a csv or parquet file's last column for labels)


def test_prediction_on_a_folder_without_x_npy_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="a directory without X.npy"):
        read_features(str(tmp_path / "empty"), 4)


@pytest.mark.parametrize("fmt", FORMATS)
def test_string_labels_in_every_format(tmp_path, fmt):
    X, y = table(rows=60)
    names = np.array(["cat", "dog", "eel"])[y]
    source = write(tmp_path, fmt, X, names)
    loaded = load_dataset(source)
    assert loaded.y.dtype.kind == "U" and list(loaded.y) == list(names)
    splits = prepare(DataConfig(train=source), seed=0, dtype=np.float32)
    assert set(splits.y_train) == set(splits.y_test) == {"cat", "dog", "eel"}


def test_every_format_splits_standardises_and_trains_alike(tmp_path):
    """The same rows held out, the same standardisation and, trained on, the same weights
    bit for bit, whichever file holds the table (the CSV holds the numbers exactly)."""
    X, y = table(rows=300)
    config = {"epochs": 2, "batch_size": 32, "model": {"hidden": [8]}, "seed": 3}
    results = {}
    for fmt in FORMATS:
        (tmp_path / fmt).mkdir()
        splits = prepare(DataConfig(train=write(tmp_path / fmt, fmt, X, y), val_fraction=0.1), seed=1,
                         dtype=np.float32)
        trainer = Trainer(config)
        trainer.fit(splits.X_train, splits.y_train, splits.X_val, splits.y_val)
        results[fmt] = (splits, trainer.model.flat_params.copy(), trainer.evaluate(splits.X_test, splits.y_test))
    first, params, scores = results["csv"]
    for fmt in FORMATS[1:]:
        other, other_params, other_scores = results[fmt]
        for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
            np.testing.assert_array_equal(getattr(other, name), getattr(first, name), err_msg=f"{fmt} {name}")
        np.testing.assert_array_equal(other.standardizer.mean, first.standardizer.mean)
        np.testing.assert_array_equal(other.standardizer.scale, first.standardizer.scale)
        np.testing.assert_array_equal(other_params, params, err_msg=fmt)
        assert other_scores == scores


def test_the_split_is_the_old_split(tmp_path):
    """split_arrays by index gives the rows and the standardisation of the copies it
    replaced: stratified_split on the arrays, then Standardizer on the training rows."""
    X, y = table(rows=150)
    config = DataConfig(val_fraction=0.2)
    splits = split_arrays(X.copy(), y, config, seed=5)
    X_rest, X_test, y_rest, y_test = data.stratified_split(X, y, config.test_fraction, 5)
    X_train, X_val, y_train, y_val = data.stratified_split(X_rest, y_rest, config.val_fraction, 5)
    mean, scale = X_train.mean(axis=0), X_train.std(axis=0)
    np.testing.assert_allclose(splits.standardizer.mean, mean, rtol=1e-13)
    np.testing.assert_allclose(splits.standardizer.scale, scale, rtol=1e-13)
    for got, want in ((splits.X_train, X_train), (splits.X_val, X_val), (splits.X_test, X_test)):
        np.testing.assert_allclose(got, (want - mean) / scale, rtol=1e-12, atol=1e-12)
    for got, want in ((splits.y_train, y_train), (splits.y_val, y_val), (splits.y_test, y_test)):
        np.testing.assert_array_equal(got, want)


def test_in_place_split_matches_the_copying_one_and_leaves_a_callers_array(tmp_path, monkeypatch):
    monkeypatch.setattr("numbamlp.arrays.CHUNK_BYTES", 8 * 4 * 7)  # chunks of 7 rows: many of them
    X, y = table(rows=100)
    config = DataConfig(val_fraction=0.15)
    given = X.astype(np.float32)
    before = given.copy()
    copied = split_arrays(given, y, config, seed=2, dtype=np.float32)
    np.testing.assert_array_equal(given, before)  # a caller's array is only read
    in_place = split_arrays(given, y, config, seed=2, dtype=np.float32, overwrite=True)
    for name in ("X_train", "X_val", "X_test"):
        np.testing.assert_array_equal(getattr(in_place, name), getattr(copied, name))
        assert np.shares_memory(getattr(in_place, name), given)  # views of the one buffer


def test_chunked_standardizer_matches_numpy(monkeypatch):
    monkeypatch.setattr("numbamlp.arrays.CHUNK_BYTES", 8 * 3 * 5)
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(53, 3)).astype(np.float32)
    X[:, 1] = 0.1  # constant: scale 1
    scaler = Standardizer.fit(X)
    np.testing.assert_allclose(scaler.mean, X.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.scale[[0, 2]], X.astype(np.float64).std(axis=0)[[0, 2]], rtol=1e-12)
    assert scaler.scale[1] == 1.0
    inplace = X.copy()
    scaler.inplace_transform(inplace)
    np.testing.assert_array_equal(inplace, scaler.transform(X).astype(np.float32))


def test_npy_folder_is_memory_mapped_and_used_through_the_map(tmp_path):
    X, y = table(rows=80)
    folder = write(tmp_path, "npy", X, y, X_test=X[:20], y_test=y[:20])
    loaded = load_dataset(folder)
    assert isinstance(loaded.X, np.memmap) and not loaded.X.flags.writeable
    # float32 rows that are neither split nor standardised train from the map itself
    splits = prepare(DataConfig(train=folder, standardize=False), seed=0, dtype=np.float32)
    assert isinstance(splits.X_train, np.memmap) or isinstance(splits.X_train.base, np.memmap)
    # standardised, the rows are gathered from the map once; the file is left as it was
    standardised = prepare(DataConfig(train=folder), seed=0, dtype=np.float32)
    assert not np.shares_memory(standardised.X_train, loaded.X)
    np.testing.assert_array_equal(np.load(tmp_path / "npy" / "X.npy"), X.astype(np.float32))


def test_csv_rows_beyond_the_first_blocks_estimate_grow_the_array(tmp_path, monkeypatch):
    monkeypatch.setattr(data.csv_files, "CSV_BLOCK_BYTES", 4096)
    long_rows = [f"{1 / 3:.15f},{2 / 3:.15f},0" for _ in range(200)]  # ~38 bytes a row
    short_rows = [f"{i % 7},{i % 5},{i % 2}" for i in range(3000)]  # ~6 bytes a row
    path = tmp_path / "g.csv"
    path.write_text("\n".join(long_rows + short_rows) + "\n")
    assert data._read_csv_arrow(path, None, np.float32) is not None  # pyarrow read it
    loaded = load_dataset(str(path), dtype=np.float32)
    assert loaded.X.shape == (3200, 2)
    np.testing.assert_array_equal(loaded.X[-1], [2999 % 7, 2999 % 5])


def test_csv_that_pyarrow_refuses_is_read_by_the_csv_module(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("\n1_000,2,a\n3,4,b\n")  # a leading blank line, a number with an underscore
    assert data._read_csv_arrow(path, None, np.float64) is None
    loaded = load_dataset(str(path))
    np.testing.assert_array_equal(loaded.X, [[1000, 2], [3, 4]])


def test_without_pyarrow_csv_still_reads_and_parquet_says_what_to_install(tmp_path, monkeypatch):
    X, y = table(rows=30)
    csv_path, parquet_path = write(tmp_path, "csv", X, y), write(tmp_path, "parquet", X, y)
    with_pyarrow = load_dataset(csv_path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    without = load_dataset(csv_path)
    np.testing.assert_array_equal(without.X, with_pyarrow.X)
    np.testing.assert_array_equal(without.y, with_pyarrow.y)
    with pytest.raises(DataError, match="needs pyarrow: pip install pyarrow"):
        load_dataset(parquet_path)


def test_more_than_the_memory_available_says_what_to_do(tmp_path, monkeypatch):
    X, y = table(rows=50)
    monkeypatch.setattr(data.memory, "_available_memory", lambda: 100)  # bytes
    for fmt in FORMATS:
        (tmp_path / fmt).mkdir()
        source = write(tmp_path / fmt, fmt, X, y)
        with pytest.raises(DataError, match="only 0.0 GB of memory is available; train on a sample of the rows"):
            prepare(DataConfig(train=source), seed=0, dtype=np.float32)


def bad_files(root):
    """{case: (source, the exact message)} of files each reader must refuse."""
    X, y = table(rows=20)
    cases = {}
    path = root / "text.parquet"
    pq.write_table(pa.table({"a": X[:, 0], "when": pa.array(np.arange(20), pa.timestamp("s")), "label": y}), path)
    cases["parquet date feature"] = (str(path), f"{path}: column 'when' holds timestamp[ms], which numbamlp cannot "
                                     "use as a feature: drop it (--drop when) or turn it into numbers first")
    path = root / "nolabel.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "label": [0, None]}), path)
    cases["parquet missing label"] = (str(path), f"{path}: the label column has 1 missing labels (first in data row 1, counting from 0)")
    path = root / "features.parquet"
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1]}), path)
    cases["parquet without labels"] = (str(path), f"{path}: the label column (column 'b', the last) holds "
                                       "non-integral numbers, so it looks like a feature; choose the label column "
                                       "with --label-column NAME|INDEX (0-based)")
    path = root / "junk.parquet"
    path.write_bytes(b"not parquet at all")
    cases["not parquet"] = (str(path), None)
    folder = root / "short"
    folder.mkdir()
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y[:-1])
    cases["npy lengths"] = (str(folder), f"{folder}: X.npy has 20 rows but y.npy has 19 labels")
    folder = root / "noy"
    folder.mkdir()
    np.save(folder / "X.npy", X)
    cases["npy without y"] = (str(folder), f"{folder} holds no y.npy (found: X.npy)")
    folder = root / "nan"
    folder.mkdir()
    np.save(folder / "X.npy", np.where(X > 1.5, np.nan, X).astype(np.float32))
    np.save(folder / "y.npy", y)
    first = tuple(int(i) for i in np.argwhere(X > 1.5)[0])
    cases["npy NaN"] = (str(folder), f"{folder}: X has {int((X > 1.5).sum())} NaN or infinite values (first at "
                        f"X[{first[0]}, {first[1]}], counting from 0)")
    folder = root / "cut"
    folder.mkdir()
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    (folder / "X.npy").write_bytes((folder / "X.npy").read_bytes()[:-8])
    cases["npy truncated"] = (str(folder), None)
    folder = root / "empty"
    folder.mkdir()
    cases["folder without npy"] = (str(folder), f"{folder} is a directory without X.npy and y.npy; expected a data "
                                   "file or a folder holding X.npy and y.npy")
    return cases


@pytest.mark.parametrize("case", ["parquet date feature", "parquet missing label",
                                  "parquet without labels",
                                  "not parquet", "npy lengths", "npy without y", "npy NaN", "npy truncated",
                                  "folder without npy"])
def test_bad_files_are_one_clear_data_error(tmp_path, case):
    source, message = bad_files(tmp_path)[case]
    with pytest.raises(DataError) as error:
        prepare(DataConfig(train=source), seed=0, dtype=np.float32)
    text = str(error.value)
    assert "\n" not in text and source in text
    if message is not None:
        assert text == message


def test_bad_files_through_the_command_line_are_one_line_and_exit_2(tmp_path):
    cases = bad_files(tmp_path)
    # an .npy folder whose X claims ~1 TB (a sparse file: no disk used): mapped, then refused
    # before the copy that would not fit, with what to do
    folder = tmp_path / "huge"
    folder.mkdir()
    rows, columns = 1000, 250_000_000
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
    header["shape"] = (rows, columns)
    try:
        with open(folder / "X.npy", "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.truncate(f.tell() + rows * columns * 4)
    except OSError:
        pytest.skip("no sparse 1 TB file here")
    np.save(folder / "y.npy", np.arange(rows) % 2)
    cases["npy larger than memory"] = (str(folder), None)
    for case in ("parquet date feature", "npy lengths", "npy larger than memory"):
        source, message = cases[case]
        run = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", "train", "--data", source, "--out",
                              str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1, (case, run.stderr)
        if message is not None:
            assert lines[0] == f"Error: {message}"
        else:
            assert "GB of memory is available; train on a sample of the rows" in lines[0]
        assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- each feature's dtype
def test_each_reader_records_each_features_dtype(tmp_path):
    """What a model file records beside the names: a Parquet schema's types, an array's
    dtype, a CSV column's kind (whole numbers or not)."""
    X = np.column_stack([np.round(np.linspace(-1, 1, 40), 3), np.arange(40) % 7])
    y = np.arange(40) % 2
    (tmp_path / "csv").mkdir()
    assert load_dataset(write(tmp_path / "csv", "csv", X, y)).feature_dtypes == ["float64", "int64"]
    np.savez(tmp_path / "d.npz", X=X.astype(np.float32), y=y)
    assert load_dataset(str(tmp_path / "d.npz")).feature_dtypes == ["float32", "float32"]
    (tmp_path / "npy").mkdir()
    assert load_dataset(write(tmp_path / "npy", "npy", X, y)).feature_dtypes == ["float32", "float32"]
    assert load_dataset("builtin:iris").feature_dtypes == ["float64"] * 4
    pq.write_table(pa.table({"age": pa.array(np.arange(40) % 9, pa.int32()), "member": np.arange(40) % 3 == 0,
                             "income": X[:, 0].astype(np.float32), "label": y}), tmp_path / "d.parquet")
    assert load_dataset(str(tmp_path / "d.parquet")).feature_dtypes == ["int32", "bool", "float32"]
    splits = prepare(DataConfig(train=str(tmp_path / "d.parquet")), seed=0)
    assert splits.feature_dtypes == ["int32", "bool", "float32"]


def _features_parquet(path, **columns):
    pq.write_table(pa.table(columns), path)
    return str(path)


@pytest.mark.parametrize("age, member, says", [
    (pa.array(["30", "41", "52"]), [True, False, True], "feature column 'age' is string here but int64 in training"),
    (pa.array([30, 41, 52], pa.timestamp("ms")), [True, False, True], "'age' is timestamp[ms] here but int64 in training"),
    (pa.array([30, 41, 52]), pa.array([1, 0, 1]), "feature column 'member' is int64 here but bool in training"),
    (pa.array([True, False, True]), [True, False, True], "'age' is bool here but int64 in training"),
])
def test_parquet_prediction_refuses_a_feature_whose_kind_changed(tmp_path, age, member, says):
    """A number read as text, a date or a flag means something else to the model: refused by
    name with both dtypes, where it was a number (or a flag) at training."""
    path = _features_parquet(tmp_path / "new.parquet", id=["a", "b", "c"], member=member, age=age)
    with pytest.raises(DataError) as refused:
        read_features(path, 2, names=["age", "member"], dtypes=["int64", "bool"])
    assert says in str(refused.value) and "\n" not in str(refused.value), str(refused.value)


def test_parquet_prediction_takes_integers_for_floats_and_back(tmp_path):
    path = _features_parquet(tmp_path / "new.parquet", member=[True, False, True], age=pa.array([30.5, 41.0, 52.0]))
    got = read_features(path, 2, names=["age", "member"], dtypes=["int64", "bool"])
    np.testing.assert_array_equal(got, [[30.5, 1], [41, 0], [52, 1]])
    path = _features_parquet(tmp_path / "ints.parquet", a=pa.array([1, 2], pa.int8()), b=pa.array([3, 4], pa.uint16()))
    np.testing.assert_array_equal(read_features(path, 2, names=["a", "b"], dtypes=["float32", "float64"]),
                                  [[1, 3], [2, 4]])


# ---------------------------------------------------------------- given validation and test sets in the training dtype
def test_given_float64_validation_and_test_sets_reach_training_as_float32_with_standardize_off(tmp_path):
    """A folder's X.npy is memory-mapped in the file's own dtype (float64 here); the given
    validation and test sets are cast to the training dtype as the splits are made
    (split_arrays), which is the only cast they get when standardize is off (nothing
    writes to them); skipped for given sets with standardize off, it passed every other
    test.  Here the float32 config's splits, as train_run trains on them, are float32
    arrays holding the files' values."""
    X, y = table(rows=160)
    parts = {"train": slice(0, 100), "X_test": slice(100, 120), "val": slice(120, 140), "test": slice(140, 160)}
    for folder in ("train", "val", "test"):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "X.npy", X[parts[folder]])
        np.save(tmp_path / folder / "y.npy", y[parts[folder]])
    np.save(tmp_path / "train" / "X_test.npy", X[parts["X_test"]])
    np.save(tmp_path / "train" / "y_test.npy", y[parts["X_test"]])
    assert np.load(tmp_path / "val" / "X.npy", mmap_mode="r").dtype == np.float64
    for test, expected_test in ((None, "X_test"), (str(tmp_path / "test"), "test")):
        config = TrainConfig.model_validate({"dtype": "float32", "data": {
            "train": str(tmp_path / "train"), "val": str(tmp_path / "val"), "test": test, "standardize": False}})
        splits = prepare_for(config)
        for split, part in (("X_train", "train"), ("X_val", "val"), ("X_test", expected_test)):
            got = getattr(splits, split)
            assert got.dtype == np.float32 and not isinstance(got, np.memmap), (split, got.dtype, type(got))
            np.testing.assert_array_equal(got, X[parts[part]].astype(np.float32), err_msg=split)
        assert splits.standardizer is None
