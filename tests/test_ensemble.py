"""A stack's members as one model (numbamlp.Ensemble): probabilities averaged, each member
as it is alone, saved to one directory and loaded back."""

import numpy as np
import pytest

from numbamlp import MLP, Ensemble, StackTrainer
from numbamlp.data import load_dataset
from numbamlp.io import ModelFileError


@pytest.fixture(scope="module")
def iris_stack():
    iris = load_dataset("builtin:iris")
    names = np.array(["setosa", "versicolor", "virginica"])[iris.y]
    stack = StackTrainer([{"epochs": 8, "seed": s, "model": {"hidden": [8]}} for s in range(4)])
    stack.fit(iris.X, names)
    return stack, iris.X, names


def test_an_ensemble_averages_its_members_probabilities_each_computed_as_alone(iris_stack):
    stack, X, names = iris_stack
    ensemble = stack.ensemble()
    members = np.stack([t.model.predict_proba(X) for t in stack.trainers])
    np.testing.assert_array_equal(ensemble.member_predict_proba(X), members)
    np.testing.assert_array_equal(ensemble.predict_proba(X), members.mean(axis=0))
    assert ensemble.predict(X).tolist() == ensemble.classes[np.argmax(members.mean(axis=0), axis=1)].tolist()
    assert set(ensemble.predict(X)) <= set(names)
    assert len(stack.ensemble(members=[0, 2])) == 2


def test_an_ensemble_saves_to_one_directory_and_loads_back_the_same(iris_stack, tmp_path):
    stack, X, _ = iris_stack
    ensemble = stack.ensemble()
    ensemble.save(tmp_path / "ensemble")
    assert sorted(p.name for p in (tmp_path / "ensemble").iterdir()) == [
        "ensemble.json", *[f"member-{k:03d}.safetensors" for k in range(4)]]
    loaded = Ensemble.load(tmp_path / "ensemble")
    np.testing.assert_array_equal(loaded.predict_proba(X), ensemble.predict_proba(X))
    assert loaded.predict(X).tolist() == ensemble.predict(X).tolist()
    (tmp_path / "ensemble" / "ensemble.json").write_text('{"format": "numbamlp-ensemble", "members": ["../x"]}')
    with pytest.raises(ModelFileError, match="is not a numbamlp ensemble file"):
        Ensemble.load(tmp_path / "ensemble")
    with pytest.raises(ModelFileError, match="holds no ensemble"):
        Ensemble.load(tmp_path)


def test_a_regressor_ensemble_averages_values():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    stack = StackTrainer([{"task": "regression", "epochs": 5, "seed": s, "model": {"hidden": [8]}} for s in range(3)])
    stack.fit(X, y)
    ensemble = stack.ensemble()
    np.testing.assert_array_equal(ensemble.predict(X), np.mean([t.model.predict(X) for t in stack.trainers], axis=0))


def test_models_that_do_not_answer_alike_are_refused():
    with pytest.raises(ValueError, match="model 1 is a classification of 4 features"):
        Ensemble([MLP([3, 4, 2]), MLP([4, 4, 2])])
    with pytest.raises(ValueError, match="at least one model"):
        Ensemble([])
    with pytest.raises(ValueError, match="no models yet"):
        StackTrainer([{"epochs": 1}]).ensemble()
