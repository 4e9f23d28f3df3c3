"""A scikit-learn classifier backed by numbamlp's Trainer.

    from numbamlp import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(128,), max_iter=30, random_state=0).fit(X, y)

Parameters follow scikit-learn's own ``MLPClassifier`` where they mean the same thing
(``alpha`` is the L2 weight decay added to the gradient, as numbamlp applies it).  Like
scikit-learn's, it does not standardise features: put a ``StandardScaler`` before it in a
``Pipeline``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

# The scikit-learn checks that float32 cannot pass, with the reasons, for check_estimator's
# expected_failed_checks (scikit-learn's own mechanism).  The float64 default passes them all.
FLOAT32_EXPECTED_FAILURES = {
    "check_methods_subset_invariance": (
        "float32 BLAS GEMM rounds differently for different row counts (a 1-row batch takes "
        "the GEMV path), so probabilities of a row vary by ~1e-7 with how rows are batched"
    ),
    "check_sample_weight_equivalence_on_dense_data": (
        "float32: weighted and repeated rows are summed in different orders; the ~1e-7 "
        "differences grow over the epochs past the check's 1e-7 tolerance"
    ),
}


def expected_failed_checks(estimator) -> dict:
    """What ``check_estimator(..., expected_failed_checks=...)`` should expect for ``estimator``."""
    return dict(FLOAT32_EXPECTED_FAILURES) if estimator.dtype == "float32" else {}


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained with numbamlp's kernels.

    hidden_layer_sizes: widths of the hidden layers.  activation: one of
    numbamlp.ACTIVATION_NAMES.  solver: sgd, momentum, nesterov, adam or adamw.
    max_iter: epochs.  early_stopping: hold out ``validation_fraction`` and stop after
    ``n_iter_no_change`` epochs without improvement, restoring the best weights.
    backend: cpu, numpy or reference.  dtype: float64 (the default, as in scikit-learn) or
    float32, which is faster but, because BLAS's float32 GEMM rounds differently for
    different row counts, gives probabilities that vary by ~1e-7 with how rows are batched
    (so it fails check_methods_subset_invariance's 1e-7 tolerance).
    """

    def __init__(
        self,
        hidden_layer_sizes=(128,),
        activation="relu",
        solver="sgd",
        learning_rate_init=0.05,
        momentum=0.9,
        alpha=1e-3,
        batch_size=32,
        max_iter=30,
        learning_rate="constant",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        class_weight=None,
        random_state=None,
        backend="cpu",
        dtype="float64",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.random_state = random_state
        self.backend = backend
        self.dtype = dtype

    def _config(self, epochs: int):
        from numbamlp.config import TrainConfig

        seed = self.random_state
        if seed is None or isinstance(seed, np.random.RandomState):
            rng = seed if seed is not None else np.random.mtrand._rand
            seed = int(rng.randint(np.iinfo(np.int32).max))
        class_weight = self.class_weight
        if isinstance(class_weight, dict):
            class_weight = {str(k): float(v) for k, v in class_weight.items()}
        return TrainConfig.model_validate({
            "seed": int(seed), "backend": self.backend, "dtype": self.dtype, "epochs": epochs,
            "batch_size": self.batch_size,
            "model": {"hidden": list(self.hidden_layer_sizes), "activation": self.activation},
            "optimizer": {"name": self.solver, "lr": self.learning_rate_init, "momentum": self.momentum,
                          "weight_decay": self.alpha},
            "schedule": {"name": self.learning_rate},
            "early_stopping": {"patience": self.n_iter_no_change if self.early_stopping else None},
            "class_weight": class_weight,
            "data": {"val_fraction": self.validation_fraction if self.early_stopping else 0.0},
        })

    def fit(self, X, y, sample_weight=None):
        """Train from scratch for ``max_iter`` epochs.  X (N, D), y (N,), sample_weight (N,)."""
        from numbamlp.trainer import Trainer

        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y has 1 class ({self.classes_[0]!r}); classification needs at least 2")
        self._trainer = Trainer(self._config(self.max_iter))
        self._train(X, y, sample_weight)
        return self

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One more epoch over (X, y).  The first call must list every class in ``classes``."""
        from numbamlp.trainer import Trainer

        first = not hasattr(self, "_trainer")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("the first call to partial_fit must pass classes=[every class label]")
            self.classes_ = unique_labels(classes)
            if len(self.classes_) < 2:
                raise ValueError("classes must list at least 2 labels")
            self._trainer = Trainer(self._config(0))
            self._trainer.classes_ = self.classes_
        elif not np.isin(y, self.classes_).all():
            raise ValueError("y holds labels that were not in classes on the first partial_fit call")
        trainer = self._trainer
        trainer.config = trainer.config.model_copy(update={"epochs": trainer.epoch + 1})
        self._train(X, y, sample_weight)
        return self

    def _train(self, X, y, sample_weight) -> None:
        from numbamlp.trainer import TrainingDiverged

        trainer = self._trainer
        try:
            trainer.fit(X, y, sample_weight=sample_weight)
        except TrainingDiverged as err:
            raise ValueError(f"{err} (learning_rate_init={self.learning_rate_init:g}); "
                             "lower learning_rate_init") from None
        self.n_iter_ = trainer.epoch
        self.loss_curve_ = [m["loss"] for m in trainer.history]
        self.validation_scores_ = [m["val_accuracy"] for m in trainer.history if "val_accuracy" in m]
        self.model_ = trainer.model

    def predict_proba(self, X):
        """Class probabilities (N, C), columns in the order of ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        from numbamlp.model import softmax

        return softmax(self._trainer.scores(X))

    def predict(self, X):
        """The most probable class label of each row."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
