"""The public model API: construction, initialisation, parameters and inference."""

import numpy as np
import pytest

import numbamlp
from naive import answers_differ_in_threads, assert_close
from numbamlp import MLP, loss_and_grads, reference
from numbamlp.io import save_model
from numbamlp.kernels import ACTIVATION_NAMES, BackendUnavailable, get_backend


def test_public_names():
    for name in ("MLP", "loss_and_grads", "ACTIVATION_NAMES"):
        assert hasattr(numbamlp, name)
    assert numbamlp.ACTIVATION_NAMES == ("relu", "leaky_relu", "elu", "sigmoid", "gelu", "silu", "tanh")


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        MLP([3, 4, 2], activation="swish")
    for name in ACTIVATION_NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize("bad", [[3], [3, 0, 2], []])
def test_bad_layers_rejected(bad):
    with pytest.raises(ValueError, match="layers"):
        MLP(bad)


def test_bad_dtype_and_backend_rejected():
    with pytest.raises(ValueError, match="dtype"):
        MLP([2, 2], dtype="float16")
    with pytest.raises(ValueError, match="valid backends"):
        get_backend("gpu")


def test_params_are_live_views_of_one_flat_buffer():
    model = MLP([4, 3, 2], seed=0)
    assert [(W.shape, b.shape) for W, b in model.params] == [((3, 4), (3,)), ((2, 3), (2,))]
    assert model.flat_params.size == 3 * 4 + 3 + 2 * 3 + 2
    model.params[1][1][...] = 7.0
    assert (model.flat_params[-2:] == 7.0).all()


@pytest.mark.parametrize("activation,scheme", [("relu", "he"), ("gelu", "he"), ("tanh", "glorot"), ("sigmoid", "glorot")])
def test_initialisation_scale(activation, scheme):
    W, b = MLP([400, 300, 2], activation=activation, dtype="float64", seed=3).params[0]
    expected_std = np.sqrt(2 / 400) if scheme == "he" else np.sqrt(6 / 700) / np.sqrt(3)
    assert W.std() == pytest.approx(expected_std, rel=0.02)
    assert (b == 0).all()


def test_same_seed_same_weights_different_seed_different():
    a, b, c = MLP([5, 4, 3], seed=1), MLP([5, 4, 3], seed=1), MLP([5, 4, 3], seed=2)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert not np.array_equal(a.flat_params, c.flat_params)


def test_from_params_copies_and_checks_shapes():
    W1, b1 = np.ones((3, 2)), np.zeros(3)
    model = MLP.from_params([(W1, b1), (np.ones((2, 3)), np.zeros(2))], activation="tanh")
    assert model.layers == [2, 3, 2] and model.dtype == np.float64 and model.activation == "tanh"
    W1[...] = 5.0
    assert (model.params[0][0] == 1.0).all()
    with pytest.raises(ValueError, match="layer 1"):
        MLP.from_params([(np.ones((3, 2)), np.zeros(3)), (np.ones((2, 4)), np.zeros(2))])
    with pytest.raises(ValueError, match="b must have shape"):
        MLP.from_params([(np.ones((3, 2)), np.zeros((3, 1)))])


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_scores_proba_predict(backend, activation):
    rng = np.random.default_rng(0)
    model = MLP([6, 8, 5, 4], activation=activation, dtype="float64", seed=4)
    X = rng.normal(size=(9, 6))
    S = model.scores(X, backend=backend)
    assert S.shape == (9, 4)
    assert_close(S, reference.scores(model.params, activation, X), np.float64, "scores")
    P = model.predict_proba(X, backend=backend)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X, backend=backend), np.argmax(S, axis=1))


def test_inputs_of_any_real_dtype_and_layout_are_converted():
    rng = np.random.default_rng(1)
    model = MLP([5, 7, 3], dtype="float32", seed=0)
    X = rng.normal(size=(5, 11))  # we use its transpose: (11, 5), not C-contiguous
    X_t = X.T
    assert not X_t.flags.c_contiguous
    expected = model.scores(np.ascontiguousarray(X_t, dtype=np.float32))
    np.testing.assert_array_equal(model.scores(X_t), expected)
    np.testing.assert_array_equal(model.scores(X_t[::1, :]), expected)
    ints = rng.integers(-3, 3, size=(4, 5))
    np.testing.assert_array_equal(model.scores(ints), model.scores(ints.astype(np.float32)))
    y = np.array([0, 2, 1, 1, 0, 2, 1, 0, 0, 1, 2], dtype=np.int8)
    loss_t, _ = loss_and_grads(model, X_t, y)
    loss_c, _ = loss_and_grads(model, np.ascontiguousarray(X_t), y.astype(np.int64))
    assert loss_t == loss_c


@pytest.mark.parametrize(
    "X,y,message",
    [
        (np.ones((3, 5)), [0, 1], "vector of 3 labels"),
        (np.ones((2, 4)), [0, 1], "4 features but the model expects 5"),
        (np.ones(5), [0], "2-D"),
        (np.full((2, 5), np.nan), [0, 1], "NaN"),
        (np.ones((2, 5)), [0, 3], r"\[0, 3\)"),
        (np.ones((2, 5)), [-1, 1], r"\[0, 3\), found -1\.\.1"),
        (np.ones((2, 5)), np.array([1, -128], dtype=np.int8), r"found -128\.\.1"),
        (np.ones((2, 5)), [0.5, 1], "non-integral"),
        (np.array([["a"] * 5] * 2), [0, 1], "real numbers"),
        (np.ones((0, 5)), [], "no rows"),
    ],
)
def test_bad_inputs_are_clear_value_errors(X, y, message):
    with pytest.raises(ValueError, match=message):
        loss_and_grads(MLP([5, 4, 3]), X, y)


def test_auto_backend_falls_back_to_numpy_without_numba(monkeypatch):
    import numbamlp.kernels as kernels

    real_import = kernels.importlib.import_module

    def no_numba(name):
        if name.endswith("cpu_backend"):
            raise ModuleNotFoundError("No module named 'numba'", name="numba")
        return real_import(name)

    monkeypatch.setattr(kernels.importlib, "import_module", no_numba)
    with pytest.raises(BackendUnavailable, match="pip install numba"):
        get_backend("cpu")
    assert get_backend("auto").__name__.endswith("numpy_backend")


def test_as_features_copies_an_unaligned_buffer_into_an_aligned_one():
    """Arrays unpickled from a message (Dask's) can be unaligned; numpy gathers rows from
    those on a slow path, so as_features hands the trainers an aligned copy."""
    from numbamlp.arrays import as_features

    raw = np.zeros(8 * 4 * 3 + 1, dtype=np.uint8)
    unaligned = raw[1:].view(np.float64).reshape(4, 3)
    unaligned[...] = np.arange(12.0).reshape(4, 3)
    assert not unaligned.flags.aligned
    X = as_features(unaligned, 3, np.float64)
    assert X.flags.aligned and X.flags.c_contiguous
    np.testing.assert_array_equal(X, np.arange(12.0).reshape(4, 3))


# ---------------------------------------------------------------- fixed costs (issue 24)
def _layer_by_layer_scores(model, X, backend):
    """The scores as the public, checked kernels compute them, each call into fresh arrays."""
    kernels = get_backend(backend)
    h = np.ascontiguousarray(X, dtype=model.dtype)
    for layer, (W, b) in enumerate(model.params):
        A = np.empty((h.shape[0], W.shape[0]), dtype=model.dtype)
        kernels.affine_forward(A, h, W, b)
        if layer < len(model.params) - 1:
            kernels.relu_forward(A, A.copy(), 0.0)
        h = A
    return h


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_scores_through_the_cached_workspace_and_unchecked_kernels_are_the_same_bits(dtype, backend):
    model = MLP([6, 9, 7, 4], dtype=dtype, seed=3)
    X = np.random.default_rng(0).normal(size=(150, 6))  # (more rows than a kept workspace holds)
    for rows in (X[:1], X, X[:64], X[:3], X[:65], X[:1], X.astype(dtype)):  # kept workspace, or one for the call
        np.testing.assert_array_equal(model.scores(rows, backend), _layer_by_layer_scores(model, rows, backend))
    np.testing.assert_array_equal(model.predict(X[:1], backend), model.predict(X, backend)[:1])


def test_each_thread_scores_with_its_own_workspace():
    """The service predicts from several threads with one model: no thread's rows may land in
    another's result."""
    model = MLP([8, 32, 5], seed=1)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(rows, 8)).astype(np.float32) for rows in (1, 7, 64, 1, 200, 3)]
    assert answers_differ_in_threads(model.scores, batches, threads=4, calls=300) == []


def test_a_model_that_has_scored_pickles_and_copies_without_its_workspaces():
    import copy
    import pickle

    model = MLP([4, 6, 3], seed=0)
    X = np.random.default_rng(0).normal(size=(5, 4))
    S = model.scores(X)
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model), copy.copy(model)):
        assert "_scoring_local" not in twin.__dict__
        np.testing.assert_array_equal(twin.scores(X), S)


# ---------------------------------------------------------------- each feature's name and dtype
def _named_model():
    model = MLP([3, 4, 2], seed=0)
    model.feature_names, model.feature_dtypes = ["age", "member", "income"], ["int64", "bool", "float64"]
    return model


def test_a_model_file_keeps_its_features_dtypes_and_one_without_them_still_loads(tmp_path):
    from numbamlp.io import MODEL_FORMAT, ModelFileError, load_model, read_safetensors, write_safetensors

    model = _named_model()
    save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.feature_dtypes == ["int64", "bool", "float64"] and loaded.feature_names == model.feature_names
    tensors, meta = read_safetensors(tmp_path / "m.safetensors", MODEL_FORMAT)
    del meta["feature_dtypes"]  # (a file written before dtypes were kept)
    write_safetensors(tmp_path / "old.safetensors", tensors, meta)
    old = load_model(tmp_path / "old.safetensors")
    X = np.array([[30.0, 1.0, 2.5], [41.0, 0.0, 1.5]])
    assert old.feature_dtypes is None
    np.testing.assert_array_equal(old.predict_proba(X), model.predict_proba(X))
    write_safetensors(tmp_path / "bad.safetensors", tensors, {**meta, "feature_dtypes": ["int64", 3]})
    with pytest.raises(ModelFileError, match="feature dtypes do not match 3 inputs"):
        load_model(tmp_path / "bad.safetensors")


def test_a_dataframe_column_whose_kind_changed_is_refused_by_name(tmp_path):
    """A column of numbers become text (object), dates, or flags for numbers: the model would
    take other numbers than it was trained on, or fail on the first text cell."""
    pd = pytest.importorskip("pandas")
    model = _named_model()
    table = pd.DataFrame({"id": ["a", "b"], "income": [2.5, 1.5], "age": [30, 41], "member": [True, False]})
    expected = model.predict_proba(table[["age", "member", "income"]].to_numpy(dtype=float))
    np.testing.assert_array_equal(model.predict_proba(table), expected)
    np.testing.assert_array_equal(model.predict_proba(table.astype({"age": float, "income": "float32"})),
                                  model.predict_proba(table.astype({"income": "float32"}).iloc[:, [2, 3, 1]]
                                                      .to_numpy(dtype=float)))  # (int vs float: the same meaning)
    for changed, says in [({"age": object}, "feature column 'age' is object here but int64 in training"),
                          ({"age": "datetime64[ns]"}, "'age' is datetime64[ns] here but int64 in training"),
                          ({"member": int}, "'member' is int64 here but bool in training")]:
        with pytest.raises(ValueError) as refused:
            model.predict(table.astype(changed))
        assert says in str(refused.value) and "\n" not in str(refused.value), str(refused.value)
    model.feature_dtypes = None  # (a model file from before dtypes: taken as it comes)
    np.testing.assert_array_equal(model.predict_proba(table.astype({"member": int})), expected)


def test_a_model_pickled_before_feature_names_and_dtypes_unpickles_without_them():
    pd = pytest.importorskip("pandas")
    model = _named_model()
    state = model.__getstate__()
    del state["feature_names"], state["feature_dtypes"]  # (an MLP pickled before they were kept)
    old = MLP.__new__(MLP)
    old.__setstate__(state)
    assert old.feature_names is None and old.feature_dtypes is None
    table = pd.DataFrame({"age": [30.0], "member": [1.0], "income": [2.5]})
    np.testing.assert_array_equal(old.predict_proba(table), model.predict_proba(table.to_numpy()))


# ---------------------------------------------------------------- construction: whole numbers
def test_layer_sizes_and_seeds_must_be_whole_numbers():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    with pytest.raises(ValueError, match="whole numbers"):
        MLP([3, 4.5, 2])
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        MLP([3, 4, 2], seed=-1)
