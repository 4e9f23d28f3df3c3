"""The scikit-learn estimator: check_estimator, pipelines, grid search, partial_fit."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from numbamlp import MLPClassifier
from numbamlp.estimator import expected_failed_checks


@pytest.mark.slow
@pytest.mark.parametrize("params", [{}, {"random_state": 0}, {"random_state": 0, "dtype": "float32"},
                                    {"random_state": 0, "solver": "adam", "learning_rate_init": 0.01}])
def test_check_estimator(params):
    estimator = MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, expected_failed_checks=expected_failed_checks(estimator))
    statuses = {r["check_name"]: r["status"] for r in results}
    assert "failed" not in statuses.values()
    assert sum(s == "passed" for s in statuses.values()) >= 50


def test_pipeline_and_grid_search():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=40, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)],
                                 "mlpclassifier__activation": ["relu", "tanh"]}, cv=3)
    search.fit(X, y)
    assert search.best_score_ > 0.9
    assert search.predict(X).shape == (150,)


def test_string_labels_sample_weight_and_partial_fit():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier(max_iter=30, random_state=0).fit(X, names, sample_weight=np.linspace(0.5, 2, 150))
    assert set(clf.predict(X)) <= set(names) and clf.score(X, names) > 0.9
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.predict_proba(X).shape == (150, 3) and clf.n_iter_ == 30 and len(clf.loss_curve_) == 30
    online = MLPClassifier(random_state=0)
    for _ in range(30):
        online.partial_fit(X, names, classes=["setosa", "versicolor", "virginica"])
    assert online.n_iter_ == 30 and online.score(X, names) > 0.9
    with pytest.raises(ValueError, match="classes="):
        MLPClassifier().partial_fit(X, names)


def test_divergence_is_an_error_not_nan_predictions():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="diverged.*lower learning_rate_init"):
        MLPClassifier(learning_rate_init=1e30, dtype="float32", max_iter=5, random_state=0).fit(X, y)


def test_early_stopping_option():
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(early_stopping=True, n_iter_no_change=3, max_iter=500, random_state=0)
    clf.fit(StandardScaler().fit_transform(X), y)
    assert clf.n_iter_ < 500 and len(clf.validation_scores_) == clf.n_iter_
