"""ONNX export, checked by the real onnxruntime: every activation, 1 and 4097 rows, graph
optimisations off and on, class labels of every kind, standardisation, opsets, the CLI."""

import builtins
import csv
import io

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export is an optional extra (pip install '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the exported files are checked with onnxruntime")

from numbamlp import ACTIVATION_NAMES, MLP  # noqa: E402
from numbamlp.cli.commands.export import export_command  # noqa: E402
from numbamlp.cli.main import main  # noqa: E402
from numbamlp.data import Standardizer, read_features  # noqa: E402
from numbamlp.export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, build_onnx_model, export_onnx  # noqa: E402

# float32 rounding of a few layers is ~1e-7 on a probability; the tanh approximation of GELU
# is ~5e-4 off (test_tanh_gelu_would_fail_the_tolerance), so 1e-5 tells exact from approximate
PROBABILITY_ATOL = 1e-5
NEWEST_OPSET = min(MAX_OPSET, onnx.defs.onnx_opset_version())
LEVELS = {"optimisations off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
          "optimisations on": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


# ---------------------------------------------------------------- helpers
def session(model_or_path, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    source = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def score(sess, X):
    """(probabilities (N, C), label (N,)) from onnxruntime."""
    P, label = sess.run(["probabilities", "label"], {"X": np.asarray(X, dtype=np.float32)})
    return P, label


def assert_close(actual, expected, atol, what):
    """|actual − expected| ≤ atol everywhere, naming the worst element otherwise."""
    error = np.abs(np.asarray(actual, dtype=np.float64) - expected)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(error), error.shape))
    assert error[worst] <= atol, (f"{what}: worst at {worst}: onnxruntime {float(actual[worst])!r}, "
                                  f"numbamlp {float(expected[worst])!r}, |diff| {error[worst]:.3e} > {atol:.0e}")
    return float(error[worst])


def assert_labels_match(label, model, X):
    """onnxruntime's labels equal MLP.predict's, except where numbamlp's two best logits are so
    close (< 1e-5) that float32 rounding may order them either way."""
    S = np.sort(model.scores(X), axis=1)
    near_tie = S[:, -1] - S[:, -2] < 1e-5
    label, expected = np.asarray(label).tolist(), model.predict(X).tolist()
    wrong = [i for i, (a, e) in enumerate(zip(label, expected)) if a != e and not near_tie[i]]
    assert not wrong, f"labels differ on rows {wrong[:10]}: onnxruntime {[label[i] for i in wrong[:10]]}"


def raw_features(rows, seed=0):
    """(rows, 5) float32 features with offsets and spreads far from standardised."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(rows, 5)) * [1.0, 10.0, 0.1, 3.0, 50.0] + [0.0, 100.0, -5.0, 40.0, 1000.0]).astype(np.float32)


def classifier(activation="relu", classes=("ant", "bee", "cat"), standardize=True, dtype="float32", seed=1):
    """An MLP [5, 16, 12, 3] with its standardisation fitted on raw_features and class labels."""
    model = MLP([5, 16, 12, 3], activation, dtype=dtype, seed=seed)
    if standardize:
        model.input_transform = Standardizer.fit(raw_features(500, seed=7).astype(np.float64))
    model.classes = None if classes is None else np.asarray(classes)
    return model


def check_export(model, tmp_path, opset=None, rows=(1, 4097), atol=PROBABILITY_ATOL):
    """Export ``model``, run onnx's full check on the file, and compare onnxruntime with
    numbamlp at every optimisation level and batch size; the worst probability error."""
    path = tmp_path / "model.onnx"
    export_onnx(model, path, opset=opset)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    worst = 0.0
    for level_name, level in LEVELS.items():
        sess = session(path, level)
        for n in rows:
            X = raw_features(n, seed=n)
            P, label = score(sess, X)
            assert P.shape == (n, model.n_classes) and P.dtype == np.float32 and label.shape == (n,)
            worst = max(worst, assert_close(P, model.predict_proba(X), atol, f"{level_name}, {n} rows"))
            assert_labels_match(label, model, X)
    return worst


# ---------------------------------------------------------------- the graph
@pytest.mark.parametrize("opset", [DEFAULT_OPSET, NEWEST_OPSET])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_every_activation_matches_numbamlp(activation, opset, tmp_path):
    worst = check_export(classifier(activation), tmp_path, opset)
    print(f"{activation} opset {opset}: max |ΔP| {worst:.2e}")


@pytest.mark.parametrize("opset", range(MIN_OPSET, NEWEST_OPSET + 1))
def test_every_supported_opset_loads_and_agrees(opset, tmp_path):
    # GELU changes form at opset 20 (Erf → Gelu); SiLU would at 24 (Swish) but does not
    for activation in ("gelu", "silu"):
        check_export(classifier(activation), tmp_path, opset, rows=(64,))


def test_tanh_gelu_would_fail_the_tolerance():
    """The tolerance tells exact GELU from the tanh approximation: the same graph with the Gelu
    node switched to approximate="tanh" is ~5e-4 off, 40× the tolerance."""
    model = classifier("gelu")
    proto = build_onnx_model(model, opset=20)
    gelu = [node for node in proto.graph.node if node.op_type == "Gelu"]
    assert len(gelu) == 2 and all(onnx.helper.get_attribute_value(n.attribute[0]) == b"none" for n in gelu)
    X = raw_features(4097)
    exact, _ = score(session(proto), X)
    assert_close(exact, model.predict_proba(X), PROBABILITY_ATOL, "exact GELU")
    for node in gelu:
        node.attribute[0].s = b"tanh"
    approximate, _ = score(session(proto), X)
    assert np.abs(approximate - model.predict_proba(X)).max() > 10 * PROBABILITY_ATOL


def test_gelu_below_opset_20_is_exact_through_erf():
    ops = [node.op_type for node in build_onnx_model(classifier("gelu"), opset=19).graph.node]
    assert "Erf" in ops and "Gelu" not in ops and "Tanh" not in ops


def test_silu_is_sigmoid_times_input_at_every_opset():
    for opset in (DEFAULT_OPSET, NEWEST_OPSET):
        ops = [node.op_type for node in build_onnx_model(classifier("silu"), opset=opset).graph.node]
        assert ops.count("Sigmoid") == 2 and "Swish" not in ops


@pytest.mark.parametrize("classes,expected_type", [
    (("ant", "bee", "cat"), "object"),  # strings: ArgMax + Gather on a string constant
    ((3, 7, 11), "int64"),
    ((-1.5, 0.0, 2.5), "float64"),
    (None, "int64"),  # no labels: the class index
])
def test_labels_are_the_models_class_values(classes, expected_type, tmp_path):
    model = classifier("tanh", classes=classes)
    check_export(model, tmp_path, rows=(300,))  # labels equal MLP.predict's
    _, label = score(session(tmp_path / "model.onnx"), raw_features(300))
    assert label.dtype == np.dtype(expected_type)


def test_two_class_bool_labels(tmp_path):
    model = MLP([5, 8, 2], "relu", seed=3)
    model.classes = np.array([False, True])
    check_export(model, tmp_path, rows=(200,))


def test_model_without_standardisation(tmp_path):
    model = classifier("elu", standardize=False)
    check_export(model, tmp_path)
    assert not any(t.name.startswith(("mean", "scale")) for t in onnx.load(tmp_path / "model.onnx").graph.initializer)


def test_standardisation_is_exact_for_features_far_from_zero(tmp_path):
    """Features of 12345.678 ± 0.01: centring with a float32-rounded mean alone would be off by
    up to 5e-4 / 0.01 = 0.05 standard deviations; the mean's second float32 part removes that."""
    rng = np.random.default_rng(5)
    X = (12345.678 + 0.01 * rng.normal(size=(4097, 4))).astype(np.float32)
    model = MLP([4, 8, 3], "tanh", seed=2)
    model.input_transform = Standardizer.fit(X.astype(np.float64))
    proto = build_onnx_model(model)
    P, _ = score(session(proto), X)
    assert_close(P, model.predict_proba(X), PROBABILITY_ATOL, "large offset")
    for tensor in proto.graph.initializer:  # the same graph with mean_lo dropped is visibly off
        if tensor.name.startswith("mean_lo"):
            tensor.CopyFrom(onnx.numpy_helper.from_array(np.zeros(4, np.float32), tensor.name))
    P_hi_only, _ = score(session(proto), X)
    assert np.abs(P_hi_only - model.predict_proba(X)).max() > 10 * PROBABILITY_ATOL


def test_float64_model_exports_as_a_float32_graph(tmp_path):
    model = classifier("sigmoid", dtype="float64")
    check_export(model, tmp_path)
    proto = onnx.load(tmp_path / "model.onnx")
    assert {t.data_type for t in proto.graph.initializer if not t.name.startswith("classes")} == {onnx.TensorProto.FLOAT}
    assert {p.key: p.value for p in proto.metadata_props}["dtype"] == "float64 (exported as float32)"


def test_file_metadata_ir_version_and_dynamic_batch(tmp_path):
    model = classifier("leaky_relu")
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", DEFAULT_OPSET)]
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(proto.opset_import) == 8
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["layers"] == "[5, 16, 12, 3]" and meta["activation"] == "leaky_relu"
    assert meta["classes"] == '["ant", "bee", "cat"]' and meta["numbamlp_version"] and meta["task"] == "classification"
    (X,) = proto.graph.input
    assert X.name == "X" and X.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in X.type.tensor_type.shape.dim] == ["N", 5]
    assert [o.name for o in proto.graph.output] == ["probabilities", "label"]
    assert not list(tmp_path.glob(".m.onnx.tmp-*"))  # written through a renamed temporary
    assert meta["feature_names"] == "null"
    model.feature_names = ["a", "b", "c", "d", "e"]  # (a model trained on a table with a header)
    export_onnx(model, tmp_path / "named.onnx")
    named = onnx.load(tmp_path / "named.onnx")
    assert json.loads({p.key: p.value for p in named.metadata_props}["feature_names"]) == ["a", "b", "c", "d", "e"]
    assert named.graph.input[0].doc_string == "columns, in order: a, b, c, d, e"


def test_the_features_dtypes_are_in_the_metadata_beside_their_names(tmp_path):
    model = classifier("relu")
    export_onnx(model, tmp_path / "m.onnx")
    assert {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}["feature_dtypes"] == "null"
    model.feature_names, model.feature_dtypes = list("abcde"), ["int64", "float64", "bool", "float32", "int8"]
    export_onnx(model, tmp_path / "typed.onnx")
    meta = {p.key: p.value for p in onnx.load(tmp_path / "typed.onnx").metadata_props}
    assert json.loads(meta["feature_dtypes"]) == ["int64", "float64", "bool", "float32", "int8"]
    assert json.loads(meta["feature_names"]) == list("abcde")


def test_a_fitted_estimator_exports_its_model(tmp_path):
    from numbamlp.estimator import MLPClassifier

    X, y = raw_features(120), np.repeat(["x", "y", "z"], 40)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    P, label = score(session(build_onnx_model(clf)), X)
    assert_close(P, clf.predict_proba(X), PROBABILITY_ATOL, "MLPClassifier")
    assert label.tolist() == clf.predict(X).tolist()


# ---------------------------------------------------------------- refusals, one line each
@pytest.mark.parametrize("opset", [12, NEWEST_OPSET + 1, "17", 17.0, True])
def test_unsupported_opsets_are_refused(opset, tmp_path):
    with pytest.raises(ValueError, match=f"unsupported opset .*{MIN_OPSET} to {NEWEST_OPSET}") as err:
        export_onnx(classifier(), tmp_path / "m.onnx", opset=opset)
    assert "\n" not in str(err.value) and not (tmp_path / "m.onnx").exists()


def regressor(activation="relu", outputs=2, standardize_targets=True, seed=1):
    """A regressor MLP [5, 16, 12, K]: features standardised as classifier's, and targets far
    from standardised (means ~1000, spreads ~50), as a fitted one holds them."""
    model = MLP([5, 16, 12, outputs], activation, dtype="float32", seed=seed, task="regression")
    model.input_transform = Standardizer.fit(raw_features(500, seed=7).astype(np.float64))
    if standardize_targets:
        model.target_transform = Standardizer(np.linspace(1000.0, -300.0, outputs), np.linspace(50.0, 3.0, outputs))
    return model


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_a_regressors_predictions_match_numbamlp(activation, tmp_path):
    """predictions (N, K) float32, in the targets' units, within 1e-4 of their scale."""
    model = regressor(activation)
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    for level_name, level in LEVELS.items():
        sess = session(path, level)
        assert [o.name for o in sess.get_outputs()] == ["predictions"]
        for n in (1, 4097):
            X = raw_features(n, seed=n)
            (predictions,) = sess.run(["predictions"], {"X": X})
            expected = model.predict(X)
            assert predictions.shape == (n, 2) and predictions.dtype == np.float32
            assert_close(predictions, expected, 1e-4 * np.abs(expected).max(), f"{level_name}, {n} rows")


def test_a_regressor_without_target_standardisation_and_one_output(tmp_path):
    model = regressor(outputs=1, standardize_targets=False)
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    X = raw_features(33)
    (predictions,) = session(path).run(["predictions"], {"X": X})
    expected = model.predict(X)
    assert predictions.shape == (33, 1)
    assert_close(predictions[:, 0], expected, 1e-4 * np.abs(expected).max(), "one output")


def test_models_it_cannot_express_are_refused(tmp_path):
    model = classifier(classes=("a", "b"))  # 3 outputs, 2 labels: predict would fail too
    with pytest.raises(ValueError, match="3 outputs but 2 class labels"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="not str"):
        export_onnx("model.safetensors", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def hide_onnx(monkeypatch):
    real_import = builtins.__import__

    def without_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnx)


def test_without_onnx_the_error_names_the_extra(monkeypatch, tmp_path):
    hide_onnx(monkeypatch)
    with pytest.raises(ImportError, match=r"pip install 'numbamlp\[onnx\]'"):
        export_onnx(classifier(), tmp_path / "m.onnx")


# ---------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def iris_run(tmp_path_factory, cli):
    """A real two-epoch run directory on iris."""
    out = tmp_path_factory.mktemp("runs") / "iris"
    result = cli.invoke("train", "--data", "builtin:iris", "--epochs", "2", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_cli_round_trip_matches_numbamlp_predict(iris_run, tmp_path, cli):
    out = tmp_path / "iris.onnx"
    result = cli.invoke("export", iris_run, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {out}: 4-128-3 relu, opset {DEFAULT_OPSET}, IR version 8")
    predicted = cli.invoke("predict", iris_run, "--data", "builtin:iris", "--proba")
    assert predicted.exit_code == 0, predicted.output
    rows = list(csv.reader(io.StringIO(predicted.output)))
    header, rows = rows[0], rows[1:]
    assert header == ["prediction", "p_0", "p_1", "p_2"]
    X = read_features("builtin:iris", 4, None)
    for level in LEVELS.values():
        P, label = score(session(out, level), X)
        assert [str(v) for v in label.tolist()] == [row[0] for row in rows]
        # predict prints 6 significant digits (≤ 5e-7 here)
        assert_close(P, np.array([[float(p) for p in row[1:]] for row in rows]), PROBABILITY_ATOL, "CLI")


def test_cli_refuses_an_existing_file_without_overwrite(iris_run, tmp_path, cli):
    out = tmp_path / "iris.onnx"
    out.write_bytes(b"keep me")
    result = cli.invoke("export", iris_run, "--out", out)
    assert result.exit_code == 2 and "--overwrite" in result.output and len(result.output.splitlines()) == 1
    assert out.read_bytes() == b"keep me"
    result = cli.invoke("export", iris_run, "--out", out, "--overwrite", "--opset", "20")
    assert result.exit_code == 0, result.output
    assert onnx.load(out).opset_import[0].version == 20


@pytest.mark.parametrize("args,message", [
    (["--opset", "12"], "unsupported opset 12: numbamlp exports opsets 13 to"),
    (["--opset", "many"], "'many' is not a valid integer"),
])
def test_cli_bad_opset_is_one_line_exit_2(iris_run, tmp_path, args, message, cli):
    result = cli.invoke("export", iris_run, "--out", tmp_path / "m.onnx", *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_cli_bad_model_and_missing_onnx_are_one_line_exit_2(iris_run, tmp_path, monkeypatch, cli):
    result = cli.invoke("export", tmp_path / "nothing.safetensors", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 2 and "file not found" in result.output and len(result.output.splitlines()) == 1
    hide_onnx(monkeypatch)
    result = cli.invoke("export", iris_run, "--out", tmp_path / "m.onnx")
    assert result.exit_code == 2 and result.output == "Error: ONNX export needs the onnx extra: pip install 'numbamlp[onnx]'\n"
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_is_registered_under_numbamlp():
    if "export" not in main.commands:
        pytest.skip("cli/main.py does not register the export command yet (main.add_command(export_command))")
    assert main.commands["export"] is export_command


def test_cli_help_states_the_library_opsets():
    # the help is a literal (cli/ imports no library module at its top, for a fast --help)
    (opset,) = [p for p in export_command.params if p.name == "opset"]
    assert f"{MIN_OPSET} to {MAX_OPSET}" in opset.help and f"default: {DEFAULT_OPSET}" in opset.help


# ---------------------------------------------------------------- a model trained on a table
def table_frame(rows, seed, classes):
    """A raw table as a user brings one: ``amount`` (far from zero, ~10 % missing), ``plan``
    (3 texts, ~10 % missing: one-hot), ``city`` (30 texts, 5 of them rarer than the 10 rows a
    category needs: target means), ``score (%)`` (a name to sanitise) and the label ``y``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    amount = 1000.0 + 50.0 * rng.normal(size=rows)
    plan = rng.choice(["basic", "pro", "enterprise"], rows).astype(object)
    weights = np.r_[np.full(25, 1.0), np.full(5, 0.05)]  # (c25..c29: rarer than a category's 10 rows)
    city_index = rng.choice(30, rows, p=weights / weights.sum())
    score = rng.uniform(0.0, 100.0, rows)
    if classes == 2:
        y = np.where((amount > 1000.0) ^ (plan == "pro"), "yes", "no")
    else:
        y = np.array(["low", "mid", "high"])[(amount > 1000.0).astype(int) + (city_index % 3 == 0)]
    amount[rng.random(rows) < 0.1] = np.nan
    plan[rng.random(rows) < 0.1] = None
    return pd.DataFrame({"amount": amount, "plan": plan, "city": [f"c{k:02d}" for k in city_index],
                         "score (%)": score, "y": y})


def prediction_frame(tmp_path, classes):
    """Rows to predict, read from a CSV as a user would: new rows, plus unseen texts in both
    text columns, missing cells in every column (city had none at training) and a row with
    every cell missing."""
    import pandas as pd

    frame = table_frame(300, seed=99, classes=classes).drop(columns="y")
    frame.loc[0:4, "plan"] = "gold"
    frame.loc[5:9, "city"] = "atlantis"
    frame.loc[10:14, "city"] = None
    frame.loc[15, :] = None
    path = tmp_path / "new.csv"
    frame.to_csv(path, index=False)
    return pd.read_csv(path)


@pytest.fixture(scope="module", params=[2, 3], ids=["two classes", "three classes"])
def table_run(request, tmp_path_factory, cli):
    """(run directory, its model, onnx file) of a real run on a raw CSV, exported by the CLI."""
    from numbamlp import load_model

    root = tmp_path_factory.mktemp("table")
    table_frame(800, seed=0, classes=request.param).to_csv(root / "train.csv", index=False)
    result = cli.invoke("train", "--data", root / "train.csv", "--label-column", "y", "--out", root / "run",
                        "--epochs", "3", "--quiet")
    assert result.exit_code == 0, result.output
    result = cli.invoke("export", root / "run", "--out", root / "table.onnx")
    assert result.exit_code == 0, result.output
    return root / "run", load_model(root / "run" / "model.safetensors"), root / "table.onnx"


def table_feeds(sess, frame):
    """onnxruntime's inputs from a DataFrame's raw columns, found through the file's
    ``input_columns``: numbers as double (N, 1), NaN where missing; texts as string (N, 1), ""
    where missing."""
    columns = json.loads(sess.get_modelmeta().custom_metadata_map["input_columns"])
    feeds = {}
    for given in sess.get_inputs():
        column = frame[columns[given.name]]
        if given.type == "tensor(string)":
            feeds[given.name] = column.fillna("").astype(str).to_numpy(dtype=object).reshape(-1, 1)
        else:
            feeds[given.name] = column.to_numpy(dtype=np.float64, na_value=np.nan).reshape(-1, 1)
    return feeds


def test_a_table_models_graph_takes_the_raw_columns_and_equals_predict(table_run, tmp_path):
    """Trained by `numbamlp train` on a raw CSV, exported by `numbamlp export`: onnxruntime on
    raw rows (unseen and rare texts, missing cells) gives predict_proba's probabilities within
    1e-5 and predict's labels, graph optimisations off and on, 1 row and all."""
    _, model, path = table_run
    amount, plan, city, score = model.table.codings
    # what the rows below exercise: the median and its indicator, a one-hot column whose missing
    # cell is a category of its own, a target-mean column whose missing cell shares a bucket
    assert amount.indicator and not score.indicator
    assert plan.onehot and "" in plan.categories and "gold" not in plan.categories
    assert not city.onehot and "" not in city.categories and "atlantis" not in city.categories
    assert city.width == (1 if len(model.classes) == 2 else 3)
    frame = prediction_frame(tmp_path, len(model.classes))
    assert set(frame["city"].dropna()) - set(city.categories) > {"atlantis"}  # (rare ones too)
    expected = model.predict_proba(frame)
    for level_name, level in LEVELS.items():
        sess = session(path, level)
        for rows in (slice(15, 16), slice(None)):
            part = frame.iloc[rows].reset_index(drop=True)
            P, label = sess.run(["probabilities", "label"], table_feeds(sess, part))
            assert P.dtype == np.float32 and P.shape == (len(part), len(model.classes))
            assert_close(P, expected[rows], PROBABILITY_ATOL, f"{level_name}, {len(part)} rows")
            assert_labels_match(label, model, part)


def test_a_table_models_inputs_and_metadata(table_run):
    _, model, path = table_run
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    kinds = {onnx.TensorProto.DOUBLE: "double", onnx.TensorProto.STRING: "string"}
    shapes = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input]
    assert [(i.name, kinds[i.type.tensor_type.elem_type], shape) for i, shape in zip(proto.graph.input, shapes)] == [
        ("amount", "double", ["N", 1]), ("plan", "string", ["N", 1]),
        ("city", "string", ["N", 1]), ("score_", "double", ["N", 1])]
    assert proto.graph.input[3].doc_string == "column 'score (%)': a number (NaN where missing)"
    assert sorted((o.domain, o.version) for o in proto.opset_import) == [("", DEFAULT_OPSET), ("ai.onnx.ml", 2)]
    assert proto.ir_version == 8
    assert {n.op_type for n in proto.graph.node} >= {"LabelEncoder", "Gather", "IsNaN", "Where", "Concat"}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["input_columns"]) == {"amount": "amount", "plan": "plan", "city": "city",
                                                 "score_": "score (%)"}
    assert json.loads(meta["feature_names"]) == model.feature_names == ["amount", "plan", "city", "score (%)"]
    assert json.loads(meta["feature_dtypes"]) == model.feature_dtypes
    assert json.loads(meta["categorical"]) == ["plan", "city"]
    assert json.loads(meta["layers"])[0] == model.table.width


def constructed_table_model(task="classification", dtype="float32"):
    """(a table model built by hand, not trained: its edge cases, a frame to predict): column
    names that need sanitising or clash with the graph's own names, a number far from zero, a
    text column with no category of its own, one whose missing cell has no bucket of its own,
    a target-mean column whose missing cell has one."""
    import pandas as pd

    from numbamlp.encoding import CategoryCoding, NumberCoding, TableEncoder, table_columns

    rng = np.random.default_rng(4)
    codings = [NumberCoding("label", 12345.678, True),
               CategoryCoding("a b", [], np.ones((1, 1)), onehot=True),
               CategoryCoding("a-b", ["x", "y"], np.eye(3)[:, :2], onehot=True),
               CategoryCoding("2x", ["p", "q", ""], rng.uniform(size=(4, 3)), onehot=False),
               NumberCoding("sub_1", 0.5, False),
               NumberCoding("", -2.0, True)]
    table = TableEncoder(codings)
    n = 257
    frame = pd.DataFrame({
        "label": 12345.678 + 0.01 * rng.normal(size=n),
        "a b": rng.choice(["u", "v", None], n),
        "a-b": rng.choice(["x", "y", "z", None], n),
        "2x": rng.choice(["p", "q", "r", None], n),
        "sub_1": rng.normal(size=n),
        "": rng.normal(size=n)})
    for column in ("label", "sub_1", ""):
        frame.loc[rng.random(n) < 0.2, column] = np.nan
    outputs = 2 if task == "regression" else 3
    model = MLP([table.width, 8, outputs], "tanh", dtype=dtype, seed=6, task=task)
    model.table, model.feature_names = table, table.columns
    encoded = table.transform(table_columns(frame, table.columns, table.categorical))
    model.input_transform = Standardizer.fit(encoded).leaving(~table.scaled())
    if task == "regression":
        model.target_transform = Standardizer(np.array([500.0, -3.0]), np.array([20.0, 0.5]))
    else:
        model.classes = np.array(["ant", "bee", "cat"])
    return model, frame


def test_input_names_are_sanitised_unique_and_mapped_back():
    from numbamlp.export import input_names

    assert input_names(["amount", "score (%)", "2x", "", "a b", "a-b", "a_b", "label", "probabilities", "é"]) == [
        "amount", "score_", "_2x", "_", "a_b", "a_b_2", "a_b_3", "label_2", "probabilities_2", "__2"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_table_models_edge_cases_equal_predict(dtype, tmp_path):
    """Hand-built codings (constructed_table_model): a text column with no category of its
    own, missing texts with and without a bucket of their own, unseen texts, names to
    sanitise and names the graph uses itself ("label", "sub_1"), and a number of 12345.678 ±
    0.01 that keeps its digits because the inputs are double."""
    model, frame = constructed_table_model(dtype=dtype)
    path = tmp_path / "edge.onnx"
    export_onnx(model, path)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["label_2", "a_b", "a_b_2", "_2x", "sub_1", "_"]
    assert json.loads({p.key: p.value for p in proto.metadata_props}["input_columns"]) == {
        "label_2": "label", "a_b": "a b", "a_b_2": "a-b", "_2x": "2x", "sub_1": "sub_1", "_": ""}
    assert [o.name for o in proto.graph.output] == ["probabilities", "label"]
    expected = model.predict_proba(frame)
    for level_name, level in LEVELS.items():
        sess = session(path, level)
        feeds = table_feeds(sess, frame)
        P, label = sess.run(["probabilities", "label"], feeds)
        assert_close(P, expected, PROBABILITY_ATOL, level_name)
        assert_labels_match(label, model, frame)
        empty = {name: value[:0] for name, value in feeds.items()}  # (no rows: no rows out)
        P0, label0 = sess.run(["probabilities", "label"], empty)
        assert P0.shape == (0, 3) and label0.shape == (0,)
    # the same rows through a float32 input would have lost the amount's digits before the graph
    feeds["label_2"] = feeds["label_2"].astype(np.float32).astype(np.float64)
    P32, _ = session(path).run(["probabilities", "label"], feeds)
    assert np.abs(P32 - expected).max() > 10 * PROBABILITY_ATOL


def test_a_table_regressors_predictions_equal_predict(tmp_path):
    model, frame = constructed_table_model(task="regression")
    path = tmp_path / "edge.onnx"
    export_onnx(model, path)
    sess = session(path)
    (predictions,) = sess.run(["predictions"], table_feeds(sess, frame))
    expected = model.predict(frame)
    assert predictions.shape == (len(frame), 2)
    assert_close(predictions, expected, 1e-4 * np.abs(expected).max(), "table regressor")


@pytest.mark.parametrize("classes", [None, ("stay", "churn")])
def test_a_decision_threshold_decides_the_label(classes, tmp_path):
    """A binary classifier's threshold on the second class's probability is its label in the
    graph too (predict's rule: positive where p ≥ threshold)."""
    model = MLP([5, 8, 2], "relu", seed=4)
    model.input_transform = Standardizer.fit(raw_features(500, seed=7).astype(np.float64))
    model.classes = None if classes is None else np.asarray(classes)
    X = raw_features(2000, seed=5)
    model.threshold = float(np.quantile(model.predict_proba(X)[:, 1], 0.8))  # (far from the argmax's 0.5)
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    P, label = score(session(path), X)
    positive = model.predict_proba(X)[:, 1]
    clear = np.abs(positive - model.threshold) > 1e-6  # (float32's probabilities may round across it)
    assert np.array_equal(np.asarray(label)[clear], model.predict(X)[clear])
    second = 1 if classes is None else classes[1]
    assert (np.asarray(label)[clear] == second).mean() == pytest.approx(0.2, abs=0.01)
