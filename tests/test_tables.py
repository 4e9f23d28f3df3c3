"""Real tables: text (categorical) columns, missing cells and column roles, handled inside
the model (numbamlp.encoding, numbamlp.data.tables), checked against the reference path's
one-row statement of the same maths (numbamlp.reference.encode_row) and end to end through
the command line: CSV, Parquet and a DataFrame give one model and one prediction."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import numbamlp
from numbamlp.arrays import DataError
from numbamlp.config import DataConfig
from numbamlp.data import DataNote, prepare
from numbamlp.encoding import (ONEHOT_MAX_CATEGORIES, PRIOR_ROWS, TableEncoder, TextColumn, fit_table,
                               table_columns)
from numbamlp.reference import encode_row

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


def messy_frame(rows: int = 600, seed: int = 0):
    """An id, numbers with missing cells, a few-category text column with missing cells, a
    60-category one (target-mean coded), and a label that depends on all of them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": [f"C{i:05d}" for i in range(rows)],
        "age": rng.normal(40, 10, rows).round(1),
        "visits": rng.integers(0, 20, rows),
        "plan": rng.choice(["basic", "pro", "enterprise"], rows, p=[0.6, 0.3, 0.1]),
        "city": rng.choice([f"city{k}" for k in range(60)], rows),
    })
    frame.loc[rng.random(rows) < 0.1, "age"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "plan"] = None
    signal = (frame.plan == "enterprise") * 2.0 + np.nan_to_num((frame.age - 40) / 10) + frame.age.isna() * 1.5 \
        + frame.city.str.endswith("7") * 2.0 - 1.0
    frame["churn"] = np.where(signal + rng.normal(0, 0.5, rows) > 0.5, "yes", "no")
    return frame


def reference_rows(encoder: TableEncoder, frame) -> np.ndarray:
    """encode_row over every row of a DataFrame, from the encoder's JSON alone."""
    document = json.loads(json.dumps(encoder.to_json()))  # (what a model file holds, exactly)
    rows = frame.to_dict("records")
    return np.hstack([encode_row(document, row) for row in rows]).T


def test_the_encoding_equals_the_reference_row_by_row():
    frame = messy_frame(400)
    columns = table_columns(frame, ["age", "visits", "plan", "city"], ["plan", "city"])
    encoder, _ = fit_table(columns, frame.churn.to_numpy(), "classification", min_category_rows=3, seed=0)
    kinds = {coding.name: getattr(coding, "onehot", None) for coding in encoder.codings}
    assert kinds == {"age": None, "visits": None, "plan": True, "city": False}  # (60 cities > ONEHOT_MAX_CATEGORIES)
    new = messy_frame(50, seed=1)
    new.loc[:4, "city"] = ["nowhere", None, "city3", "  city4 ", "city99"]  # unseen, missing, known, spaced, unseen
    new.loc[5:8, "age"] = np.nan
    new.loc[9, "plan"] = "gold"  # a plan training never saw: the shared bucket (no column of its own here)
    encoded = encoder.transform(table_columns(new, encoder.columns, encoder.categorical))
    np.testing.assert_array_equal(encoded, reference_rows(encoder, new))
    plan = encoder.codings[2]
    assert plan.categories == ["basic", "enterprise", "pro", ""] and plan.width == 4  # ("" = missing, own category)
    assert not encoded[9, 3:7].any()  # (unseen plan, and no rare plan in training: all zeros, as handle_unknown)


def test_rare_and_unseen_categories_share_one_bucket():
    text = TextColumn.from_values(["a"] * 12 + ["b"] * 12 + ["rare1", "rare2"])
    target = np.zeros((26, 1))
    encoder = TableEncoder.fit({"c": text}, target, min_category_rows=10, target_names=["1"])
    (coding,) = encoder.codings
    assert coding.categories == ["a", "b"] and coding.width == 3  # (rare rows exist: the shared bucket has a column)
    encoded = encoder.transform({"c": TextColumn.from_values(["rare1", "never seen", "a"])})
    np.testing.assert_array_equal(encoded, [[0, 0, 1], [0, 0, 1], [1, 0, 0]])


def test_target_means_are_smoothed_and_cross_fitted():
    """Many categories: each bucket's smoothed mean of the positive class, and a training
    row's own label never reaches its own feature (cross-fitting)."""
    k = ONEHOT_MAX_CATEGORIES + 4
    texts = [f"c{j}" for j in range(k) for _ in range(10)]
    y = np.array([1.0 if j % 2 == 0 and i < 8 else 0.0 for j in range(k) for i in range(10)])
    text = TextColumn.from_values(texts)
    encoder = TableEncoder.fit({"c": text}, y[:, None], min_category_rows=10, target_names=["yes"])
    (coding,) = encoder.codings
    assert not coding.onehot and coding.width == 1
    prior = y.mean()
    assert coding.table[coding.categories.index("c0"), 0] == pytest.approx((8 + PRIOR_ROWS * prior) / (10 + PRIOR_ROWS))
    assert coding.table[-1, 0] == pytest.approx(prior)  # (the shared bucket, empty in training: the overall mean)
    (start, values), = encoder.cross_fitted({"c": text}, y[:, None], seed=3)
    flipped = y.copy()
    flipped[0] = 1.0 - flipped[0]
    (_, values_flipped), = encoder.cross_fitted({"c": text}, flipped[:, None], seed=3)
    assert values_flipped[0, 0] == values[0, 0]  # (its own label is not in its own value)
    assert not np.array_equal(values_flipped, values)  # (but it is in the other folds' rows')


def test_train_on_a_raw_csv_predict_and_eval_agree(cli, tmp_path):
    frame = messy_frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    code, output = cli("train", "--data", tmp_path / "t.csv", "--label-column", "churn", "--out", tmp_path / "run",
                       "--epochs", 8, "--hidden", 16)
    assert code == 0, output
    assert "column 'id' holds a different value in every row, like an identifier" in output
    model = numbamlp.load_model(tmp_path / "run")
    assert model.feature_names == ["age", "visits", "plan", "city"] and model.table.categorical == ["plan", "city"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    code, output = cli("eval", tmp_path / "run", "--json")
    assert code == 0, output
    scored = json.loads(output)
    assert scored["accuracy"] == pytest.approx(summary["test_accuracy"]) and scored["rows"] == 150
    code, output = cli("predict", tmp_path / "run", "--data", tmp_path / "t.csv", "--keep", "id", "--proba",
                       "--out", tmp_path / "p.csv")
    assert code == 0, output
    written = pd.read_csv(tmp_path / "p.csv")
    shuffled = frame.drop(columns=["churn"]).iloc[:, ::-1]  # (columns by name, in any order, the label absent)
    np.testing.assert_allclose(written[["p_no", "p_yes"]].to_numpy(), model.predict_proba(shuffled), atol=1e-6)
    assert written.id.tolist() == frame.id.tolist()


def test_csv_parquet_and_dataframe_give_one_model(cli, tmp_path):
    frame = messy_frame(300)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    for name in ("t.csv", "t.parquet"):
        code, output = cli("train", "--data", tmp_path / name, "--label-column", "churn", "--drop", "id",
                           "--out", tmp_path / name.replace(".", "_"), "--epochs", 3, "--hidden", 8)
        assert code == 0, output
        assert "identifier" not in output  # (--drop id: no note)
    from_csv, from_parquet = (numbamlp.load_model(tmp_path / d) for d in ("t_csv", "t_parquet"))
    np.testing.assert_array_equal(from_csv.flat_params, from_parquet.flat_params)
    assert from_csv.table.to_json() == from_parquet.table.to_json()
    np.testing.assert_array_equal(from_csv.predict_proba(frame), from_parquet.predict_proba(frame))
    code, output = cli("predict", tmp_path / "t_csv", "--data", tmp_path / "t.parquet", "--proba")
    assert code == 0, output


@pytest.mark.filterwarnings("ignore::numbamlp.data.DataNote")  # (the id note: its text is tested above)
def test_column_roles(tmp_path):
    frame = messy_frame(200)
    frame["zip"] = np.random.default_rng(0).choice([2139, 10001, 94105], len(frame))
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = dict(train=str(tmp_path / "t.csv"), label_column="churn")
    splits = prepare(DataConfig(**config, features=["age", "zip"], categorical=["zip"]), seed=0)
    assert splits.feature_names == ["age", "zip"] and splits.table.categorical == ["zip"]
    assert splits.table.codings[1].categories == ["10001", "2139", "94105"]  # (numbers read as categories' text)
    splits = prepare(DataConfig(**config, drop=["id", "city", "zip"]), seed=0)
    assert splits.feature_names == ["age", "visits", "plan"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataNote)  # (an identifier named as a feature: no note)
        assert prepare(DataConfig(**config, features=["id", "age"]), seed=0).feature_names == ["id", "age"]
    for settings, message in (
        (dict(drop=["nope"]), "has no column 'nope'; its columns are 'id', 'age', 'visits'"),
        (dict(features=["age"], categorical=["plan"]), "categorical column 'plan' is not among the features given"),
        (dict(missing="error"), "feature column 'age' has a missing value in data row 5, counting from 0"),
    ):
        with pytest.raises(DataError, match=message):
            prepare(DataConfig(**config, **settings), seed=0)


@pytest.mark.filterwarnings("ignore::numbamlp.data.DataNote")  # (the id note: its text is tested above)
def test_numbers_with_a_typo_are_refused_not_read_as_categories(tmp_path):
    frame = messy_frame(100)
    frame["visits"] = frame.visits.astype(str)
    frame.loc[7, "visits"] = "twelve"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="column 'visits' holds numbers, but 'twelve' in data row 7 .* --categorical "
                                        "visits"):
        prepare(DataConfig(train=str(tmp_path / "t.csv"), label_column="churn"), seed=0)
    splits = prepare(DataConfig(train=str(tmp_path / "t.csv"), label_column="churn", categorical=["visits"]), seed=0)
    assert "visits" in splits.table.categorical


def test_a_thousand_categories_stay_narrow(tmp_path):
    """A 1,000-category column is a few target-mean features, not a dense one-hot."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=5000), "shop": rng.choice([f"s{k}" for k in range(1000)], 5000),
                          "y": rng.integers(0, 3, 5000)})
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    splits = prepare(DataConfig(train=str(tmp_path / "t.parquet"), min_category_rows=2), seed=0, dtype=np.float32)
    assert splits.X_train.shape[1] == 1 + 3  # (x, then each class's mean in the shop's bucket)
    assert splits.X_train.dtype == np.float32


def test_the_table_survives_the_model_file(tmp_path):
    frame = messy_frame(200)
    columns = table_columns(frame, ["age", "plan", "city"], ["plan", "city"])
    encoder, _ = fit_table(columns, frame.churn.to_numpy(), "classification", 10, 0)
    model = numbamlp.MLP([encoder.width, 4, 2], seed=0)
    model.table, model.feature_names, model.classes = encoder, encoder.columns, np.array(["no", "yes"])
    numbamlp.save_model(model, tmp_path / "m.safetensors")
    loaded = numbamlp.load_model(tmp_path / "m.safetensors")
    assert loaded.table.to_json() == encoder.to_json()
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    with pytest.raises(ValueError, match="X has no column 'plan'"):
        loaded.predict(frame.drop(columns=["plan"]))
    with pytest.raises(ValueError, match="column 'age' holds 'old', but the model was trained on numbers there"):
        loaded.predict(frame.assign(age=["old"] * len(frame)))


def test_one_text_for_a_category_whichever_way_it_comes(tmp_path):
    """CSV, Parquet and a DataFrame of the same table give one encoding: numbers in a
    categorical column (3.0 and 3), booleans, missing markers (NA, none, -)."""
    from numbamlp.encoding import category_text

    cases = {3.0: "3", "3.0": "3", "03": "3", "1e3": "1000", 7: "7", True: "true", "TRUE": "true", "NA": None,
             " - ": None, "none": None, float("nan"): None, None: None, " pro ": "pro", "A1": "A1"}
    assert {value: category_text(value) for value in cases} == cases
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"store": rng.choice([3.0, 7.0, np.nan], 300), "autopay": rng.choice([True, False, None], 300),
                          "plan": rng.choice(["basic", "pro", "none"], 300), "x": rng.normal(size=300),
                          "y": rng.integers(0, 2, 300)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    settings = dict(label_column="y", categorical=["store", "autopay"])
    encoders = [prepare(DataConfig(train=str(tmp_path / name), **settings), seed=0).table
                for name in ("t.csv", "t.parquet")]
    assert encoders[0].to_json() == encoders[1].to_json()
    assert encoders[0].codings[0].categories == ["3", "7", ""] and encoders[0].codings[1].categories == \
        ["false", "true", ""] and encoders[0].codings[2].categories == ["basic", "pro", ""]
    from_frame = encoders[0].transform(table_columns(frame, encoders[0].columns, encoders[0].categorical))
    from_csv = encoders[0].transform(table_columns(pd.read_csv(tmp_path / "t.csv"), encoders[0].columns,
                                                   encoders[0].categorical))
    np.testing.assert_array_equal(from_frame, from_csv)


def test_a_parquet_category_column_and_held_out_rows(tmp_path):
    """A pandas category column in Parquet is a categorical feature; rows training holds out
    (early stopping, a threshold chosen on them) teach the encoding nothing."""
    from numbamlp.config import DEFAULT_VAL_FRACTION, TrainConfig
    from numbamlp.data import prepare_for

    frame = messy_frame(400).drop(columns=["id"])
    frame["plan"] = pd.Categorical(frame.plan)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    config = TrainConfig(data={"train": str(tmp_path / "t.parquet"), "label_column": "churn"},
                         early_stopping={"patience": 2}, threshold="f1")
    splits = prepare_for(config)
    assert "plan" in splits.table.categorical
    assert len(splits.X_val) == round(DEFAULT_VAL_FRACTION * 300)  # (of the 300 rows the 0.25 test split leaves)
    from numbamlp.data.splits import split_rows

    y = frame.churn.to_numpy().astype(str)
    rows, val_rows, _ = split_rows(y, DataConfig(val_fraction=DEFAULT_VAL_FRACTION), 0, "classification", False, False)
    age = frame.age.to_numpy(np.float32)
    assert splits.table.codings[0].name == "age"
    assert splits.table.codings[0].median == float(np.nanmedian(age[rows]))  # (the training rows' alone)
    assert len(val_rows) == len(splits.X_val)


def test_category_texts_equal_category_text_on_every_kind_of_cell():
    """The vectorised category_texts (Python only for texts it may change) against
    category_text one text at a time: numbers' spellings, missing words, true/false, spaces
    and characters str.strip removes, non-ASCII, and random texts of those characters."""
    import pyarrow as pa

    from numbamlp.encoding import category_text, category_texts

    cells = ["", "  ", "x", " x", "x ", "\x1fx", "x\x1c", "\x0bx", "3", "3.0", "03", "1e3", "-1.5e-3", ".5", "1_000",
             "1__0", "5e", "inf", "-Infinity", "NaN", "nan(1)", "na", "NA", "N/A", "null", "None", "-", "?", "??",
             "true", "FALSE", "True ", "city_0123", "région", "٣", "１", "a-b", "1-2", "+.5e+2", "e5", None,
             "\u00a0x", "x\u2003", "1 2"]
    rng = np.random.default_rng(0)
    alphabet = list("0123456789.-+_eEinfaNtrus \t/?x\x1f\x0b")
    cells += ["".join(rng.choice(alphabet, rng.integers(0, 7))) for _ in range(3000)]
    assert category_texts(pa.array(cells, pa.string())) == [category_text(cell) for cell in cells]


def _same_raw_table(a, b) -> None:
    assert list(a.columns) == list(b.columns) and a.dtypes == b.dtypes
    np.testing.assert_array_equal(a.y, b.y)
    for name, column in a.columns.items():
        other = b.columns[name]
        if isinstance(column, TextColumn):
            assert column.texts == other.texts
            np.testing.assert_array_equal(column.codes, other.codes)
        else:
            assert column.dtype == other.dtype
            np.testing.assert_array_equal(column, other)


def test_the_table_reader_reads_alike_whole_in_blocks_and_streamed(tmp_path, monkeypatch):
    """One table, as CSV and Parquet, read with the defaults (one block) and with tiny
    samples, blocks and batches — the CSV's sample, a whole-file read and the streamed read
    past CSV_WHOLE_BYTES with rows beyond the sample's estimate (the columns grown); the
    Parquet file's first reader continued, or read again without the identifier — gives the
    same raw columns, labels and identifier note."""
    import numbamlp.data.tables as tables
    from numbamlp.data import ColumnRoles, read_table

    frame = messy_frame(3000)
    frame["visits"] = frame["visits"].astype(object)
    frame.loc[2500:, "visits"] = frame.loc[2500:, "visits"] + 0.5  # (decimals below whole numbers: 3, then 3.5)
    frame.loc[2900:, "plan"] = "  pro "  # (spaces around a known text, late)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)

    def read(path, roles=ColumnRoles()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataNote)
            table = read_table(str(path), "churn", roles, dtype=np.float32)
        return table, [str(w.message) for w in caught if issubclass(w.category, DataNote)]

    whole = {kind: read(tmp_path / f"t.{kind}") for kind in ("csv", "parquet")}
    assert any("'id'" in note for note in whole["csv"][1]) and "id" not in whole["csv"][0].columns
    _same_raw_table(whole["csv"][0], whole["parquet"][0])
    assert whole["csv"][0].columns["plan"].texts.count("pro") == 1
    monkeypatch.setattr(tables, "CSV_SAMPLE_BYTES", 2048)
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 4096)
    monkeypatch.setattr(tables, "PARQUET_BATCH_ROWS", 500)
    for whole_bytes in (1 << 30, 0):  # (one read of the file; streamed, block by block)
        monkeypatch.setattr(tables, "CSV_WHOLE_BYTES", whole_bytes)
        table, notes = read(tmp_path / "t.csv")
        _same_raw_table(whole["csv"][0], table)
        assert notes == whole["csv"][1]
    for roles in (ColumnRoles(), ColumnRoles(drop=("id",))):  # (read again without the id; continued)
        table, _ = read(tmp_path / "t.parquet", roles)
        _same_raw_table(whole["parquet"][0], table)


def test_a_cell_of_text_below_the_sample_in_a_column_of_numbers_is_refused_by_name(tmp_path, monkeypatch):
    import numbamlp.data.tables as tables
    from numbamlp.data import ColumnRoles, read_table

    frame = messy_frame(2000)
    frame["age"] = frame["age"].astype(object)
    frame.loc[1900, "age"] = "forty"
    frame.to_csv(tmp_path / "t.csv", index=False)
    monkeypatch.setattr(tables, "CSV_SAMPLE_BYTES", 4096)
    with pytest.raises(DataError, match=r"forty.*--categorical"):
        read_table(str(tmp_path / "t.csv"), "churn", ColumnRoles(drop=("id",)))


def test_prepare_hands_the_raw_columns_back_as_it_encodes_them(tmp_path, monkeypatch):
    """The table's raw columns live in memory maps of their own (column_buffer) whose rows
    are handed back as TableEncoder.transform goes, block by block (RawTable.forget_rows:
    they read as zeros after), and that encoding equals fit_table's of intact columns."""
    import numbamlp.encoding as encoding

    frame = messy_frame(3000)
    frame.to_csv(tmp_path / "t.csv", index=False)
    monkeypatch.setattr(encoding, "TRANSFORM_ROWS", 256)
    config = DataConfig(train=str(tmp_path / "t.csv"), label_column="churn", drop=["id"], test_fraction=0.2)
    real_fit_table, seen = encoding.fit_table, {}

    def watched_fit_table(columns, *args, **kwargs):
        intact = {name: (TextColumn(c.codes.copy(), c.texts) if isinstance(c, TextColumn) else c.copy())
                  for name, c in columns.items()}
        assert np.count_nonzero(np.nan_to_num(intact["age"][:2048])) > 1500  # (as read: ages, 10 % missing)
        encoder, X = real_fit_table(columns, *args, **kwargs)
        np.testing.assert_array_equal(X, real_fit_table(intact, *args)[1])
        seen["age"] = columns["age"]
        return encoder, X

    monkeypatch.setattr(encoding, "fit_table", watched_fit_table)
    prepare(config, seed=0, dtype=np.float32)
    assert np.count_nonzero(seen["age"][:2048]) == 0  # (handed back: the pages of the rows before the last block)
