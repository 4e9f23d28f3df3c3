"""scikit-learn estimators backed by numbamlp's Trainer: MLPClassifier and MLPRegressor.

    from numbamlp import MLPClassifier, MLPRegressor
    clf = MLPClassifier(hidden_layer_sizes=(128,), random_state=0).fit(X, y)
    reg = MLPRegressor(random_state=0).fit(X, y_float)

Parameters follow scikit-learn's own ``MLPClassifier`` where they mean the same thing
(``alpha`` does not: it is the weight decay added to the mean gradient, as numbamlp and
PyTorch apply it, about scikit-learn's alpha ÷ batch_size; see MLPClassifier).  Like
scikit-learn's, it does not standardise an array of numbers: put a ``StandardScaler`` before
it in a ``Pipeline``.

A table is taken as it is, as scikit-learn's HistGradientBoosting takes one
(``categorical_features="from_dtype"``): a pandas DataFrame with categorical columns (dtype
category, object or string) or missing cells, or an array with NaN, is encoded by a
``numbamlp.encoding.TableEncoder`` learned from the training rows (categories, medians with
a was-missing feature, target means) and standardised (``Standardizer.leaving``: numbers and
target means, not the 0/1 features); both become part of ``model_`` (``model_.table``,
``model_.input_transform``), so the estimator, the saved model and ``numbamlp predict`` take
the same raw rows.  Arrays without NaN and DataFrames of numbers alone train as before.

Parameters are checked the way scikit-learn checks its own: ``_parameter_constraints``
(sklearn.utils._param_validation) at the start of ``fit``, raising ``InvalidParameterError``
(a ``ValueError``) that names the parameter and its valid values; the rules that tie two
parameters together are checked next, and anything the training config still refuses is
reported under the estimator's parameter name, never as pydantic's ValidationError.
"""

from __future__ import annotations

import contextlib
import functools
import typing
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import _check_y, check_consistent_length, check_is_fitted, validate_data

from numbamlp.config import (MIN_CATEGORY_ROWS, MOMENTUM_OPTIMIZERS, OPTIMIZER_DEFAULTS, OPTIMIZERS, SCHEDULES,
                             TrainConfig)
from numbamlp.kernels import ACTIVATION_NAMES

# The scikit-learn checks that float32 cannot pass, with the reasons, for check_estimator's
# expected_failed_checks (scikit-learn's own mechanism).  The default (dtype=None: float64 for
# check_estimator's float64 data) and dtype="float64" pass them all.
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

# scikit-learn's activation names that mean one of numbamlp's ("identity" has no counterpart
# and is refused with the valid choices).
ACTIVATION_ALIASES = {"logistic": "sigmoid"}

# The estimator's parameter → the config field it sets; every optimizer setting is passed only
# when the user set it (None: the chosen optimizer's own default, from numbamlp.config).
_OPTIMIZER_FIELDS = {"learning_rate_init": "lr", "momentum": "momentum", "beta_1": "beta1",
                     "beta_2": "beta2", "epsilon": "eps"}

# config location → estimator parameter, to report what the config refuses in the user's terms
_CONFIG_NAMES = {
    ("seed",): "random_state", ("backend",): "backend", ("dtype",): "dtype", ("epochs",): "max_iter",
    ("batch_size",): "batch_size", ("model", "hidden"): "hidden_layer_sizes", ("model", "activation"): "activation",
    ("optimizer",): "solver", ("optimizer", "name"): "solver", ("optimizer", "weight_decay"): "alpha",
    **{("optimizer", field): name for name, field in _OPTIMIZER_FIELDS.items()},
    ("schedule", "name"): "learning_rate", ("early_stopping", "patience"): "n_iter_no_change",
    ("class_weight",): "class_weight", ("data", "val_fraction"): "validation_fraction",
}


def expected_failed_checks(estimator) -> dict:
    """What ``check_estimator(..., expected_failed_checks=...)`` should expect for ``estimator``."""
    return dict(FLOAT32_EXPECTED_FAILURES) if estimator.dtype == "float32" else {}


def _choices(field: str) -> set[str]:
    """The values a Literal field of TrainConfig allows (the schema stays the one source)."""
    return set(typing.get_args(TrainConfig.model_fields[field].annotation))


def _is_dataframe(X) -> bool:
    """Whether X is a pandas DataFrame (or one like it: named columns, each with a dtype)."""
    return hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "iloc")


def _as_it_was_when_refused(method):
    """fit and partial_fit: one that raises leaves the estimator as it was before the call
    (its attributes; a new Trainer is dropped): a bad argument does not cost the fitted
    model, nor does a refused first partial_fit leave a half-fitted estimator behind.  (A
    warm fit that diverges part-way has changed the weights it continued from.)"""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        before = self.__dict__.copy()
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    return guarded


class _PrintEpochs:
    """verbose: one line per epoch on stdout, as scikit-learn's MLPClassifier and
    MLPRegressor print them (the validation score: accuracy, or R² for a regressor)."""

    def __init__(self, score: str):
        self.score = score

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        print(f"Iteration {epoch}, loss = {metrics['loss']:.8f}")
        if self.score in metrics:
            print(f"Validation score: {metrics[self.score]:f}")


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: the parameters scikit-learn's two MLPs share,
    their checks, the TrainConfig they mean, training through numbamlp's Trainer, and the
    fitted weights.  A subclass sets _TASK, _OUT_ACTIVATION and _VALIDATION_SCORE (the
    history's metric behind validation_scores_)."""

    _TASK = "classification"
    _OUT_ACTIVATION = "softmax"
    _VALIDATION_SCORE = "val_accuracy"
    _Y_CHECKS: dict = {}  # (how validate_data checks y: a regressor's are multi-output numbers)

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATION_NAMES) | set(ACTIVATION_ALIASES))],
        "solver": [StrOptions(set(OPTIMIZERS))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither"), None],
        "momentum": [Interval(Real, 0, 1, closed="left"), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(SCHEDULES))],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "backend": [StrOptions(_choices("backend"))],
        "dtype": [StrOptions(_choices("dtype")), None],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left"), None],
        "beta_2": [Interval(Real, 0, 1, closed="left"), None],
        "epsilon": [Interval(Real, 0, None, closed="neither"), None],
        "categorical_features": ["array-like", StrOptions({"from_dtype"}), None],
        "min_category_rows": [Interval(Integral, 1, None, closed="left")],
    }

    def _parameter_error(self, name: str, message: str) -> ValueError:
        return ValueError(f"{type(self).__name__} parameter {name!r}: {message}")

    def _check_partial_fit(self) -> None:
        """What partial_fit cannot do: early stopping (as scikit-learn), and a cosine schedule,
        which spans a fit's max_iter epochs (one call's would always be its last)."""
        if self.early_stopping:
            raise self._parameter_error("early_stopping", "partial_fit does not support early_stopping=True "
                                        "(valid: False), as in scikit-learn")
        if self.learning_rate == "cosine":
            raise self._parameter_error("learning_rate", "partial_fit does not support 'cosine', which spans "
                                        "fit's max_iter epochs (valid: 'constant', 'step')")

    def _plain_features(self, X):
        """X itself when it is what ``validate_data(self, X, reset=False)`` would return as it
        is, and without a warning: a 2-D float32 or float64 numpy array (no subclass) of
        ``n_features_in_`` columns, at least one row, all finite, for an estimator fitted
        without feature names.  None otherwise: validate_data then checks X and says what is
        wrong.  (scikit-learn's checks cost ~60 µs a call, more than a one-row predict.)"""
        from numbamlp.arrays import all_finite

        if (type(X) is np.ndarray and X.ndim == 2 and X.dtype in (np.float32, np.float64) and X.shape[0] > 0
                and X.shape[1] == getattr(self, "n_features_in_", None) and "feature_names_in_" not in self.__dict__
                and self.__dict__.get("_table") is None and all_finite(X)):
            return X
        return None

    def _checked_features(self, X):
        """X for a fitted estimator's prediction, as ``validate_data(reset=False)`` returns it;
        for one fitted on a table, its raw columns ({name: column}, which model_ encodes)."""
        if self.__dict__.get("_table") is not None:
            return self._table_inputs(X, "no_validation", reset=False)[0]
        plain = self._plain_features(X)
        if plain is not None:
            return plain
        with self._no_missing_values_learned():
            return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    @contextlib.contextmanager
    def _no_missing_values_learned(self):
        """scikit-learn's "Input X contains NaN" for an estimator fitted on numbers without
        any (which says the estimator takes none), in this estimator's words."""
        try:
            yield
        except ValueError as err:
            if not str(err).startswith("Input X contains NaN"):
                raise
            raise ValueError(f"Input X contains NaN, but this {type(self).__name__} was fitted on X without missing "
                             "values and learned nothing to fill them with: fit it from scratch on rows that have "
                             "them (their column's median and a was-missing feature are then learned), or impute "
                             "them first") from None

    def _scores(self, X) -> np.ndarray:
        """The fitted model's scores (N, C) (a regressor's outputs (N, K)) of checked X:
        Trainer.scores's (the numpy backend), through the model's per-thread workspace, so
        that threads can predict at once (Trainer.scores has one workspace)."""
        self._trainer.synchronize()
        return self.model_.scores(X, backend="numpy")

    def _hidden(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        if not all(isinstance(h, Integral) and not isinstance(h, bool) and h >= 1 for h in sizes):
            raise self._parameter_error("hidden_layer_sizes", f"got {self.hidden_layer_sizes!r} "
                                   "(valid: an int >= 1 or a sequence of ints >= 1)")
        return [int(h) for h in sizes]

    def _check_combinations(self) -> None:
        """The rules that tie parameters together (each alone was checked by _validate_params)."""
        self._hidden()
        uses = OPTIMIZER_DEFAULTS.get(self.solver)  # None: an unknown solver, reported by _config
        for name, field in _OPTIMIZER_FIELDS.items():
            if uses is not None and getattr(self, name) is not None and field not in uses:
                users = [solver for solver, defaults in OPTIMIZER_DEFAULTS.items() if field in defaults]
                raise self._parameter_error(name, f"solver {self.solver!r} does not use it; leave it None "
                                       f"(valid: None, or set it with solver in {', '.join(users)})")
        if self.solver in MOMENTUM_OPTIMIZERS and self.momentum == 0:
            raise self._parameter_error("momentum", f"solver {self.solver!r} needs momentum > 0 "
                                   "(valid: None for its default 0.9, or a value in (0, 1); momentum 0 is solver 'sgd')")
        if self.early_stopping and self.validation_fraction == 0:
            raise self._parameter_error("validation_fraction", "early_stopping=True needs validation rows "
                                   "(valid: a fraction in (0, 1))")

    def _seed(self) -> int:
        seed = self.random_state
        if seed is None or isinstance(seed, np.random.RandomState):  # (None: numpy's global RandomState)
            seed = check_random_state(seed).randint(np.iinfo(np.int32).max)
        return int(seed)

    def _batch_size(self, n_rows: int) -> int:
        return min(200, n_rows) if self.batch_size == "auto" else int(self.batch_size)

    def _dtype(self, X, warm: bool = False) -> str:
        """The dtype to train in: the ``dtype`` parameter, or with None (the default) X's own
        floating dtype (float32 stays float32, with no float64 copy of X; anything else,
        float64), as scikit-learn's MLPs do.  A warm fit continues in the fitted dtype."""
        if self.dtype is not None:
            return self.dtype
        if warm:
            return self._trainer.config.dtype
        return "float32" if getattr(X, "dtype", None) == np.float32 else "float64"

    def _config(self, epochs: int, seed: int, batch_size: int, early_stopping: bool, dtype: str) -> TrainConfig:
        """The TrainConfig these parameters mean; what it refuses is reported by parameter name."""
        from pydantic import ValidationError

        class_weight = getattr(self, "class_weight", None)  # (a regressor has none)
        if isinstance(class_weight, dict):
            try:
                class_weight = {str(k): float(v) for k, v in class_weight.items()}
            except (TypeError, ValueError):
                raise self._parameter_error("class_weight", f"got {self.class_weight!r} "
                                       "(valid: None, 'balanced' or {label: number})") from None
        optimizer = {"name": self.solver, "weight_decay": self.alpha}
        optimizer.update({field: getattr(self, name) for name, field in _OPTIMIZER_FIELDS.items()
                          if getattr(self, name) is not None})
        activation = ACTIVATION_ALIASES.get(self.activation, self.activation)
        try:
            return TrainConfig.model_validate({
                "task": self._TASK, "seed": seed, "backend": self.backend, "dtype": dtype, "epochs": epochs,
                "batch_size": batch_size,
                "model": {"hidden": self._hidden(), "activation": activation},
                "optimizer": optimizer,
                "schedule": {"name": self.learning_rate},
                "early_stopping": {"patience": self.n_iter_no_change if early_stopping else None},
                "class_weight": class_weight,
                "data": {"val_fraction": self.validation_fraction if early_stopping else 0.0},
            })
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            loc = tuple(part for part in first["loc"] if isinstance(part, str))
            prefixes = [loc[:n] for n in range(len(loc), 0, -1) if loc[:n] in _CONFIG_NAMES]
            name = _CONFIG_NAMES[prefixes[0]] if prefixes else ".".join(loc)
            message = first["msg"].removeprefix("Value error, ")
            raise self._parameter_error(name, f"{message} (got {first['input']!r})") from None

    def _check_same_network(self, config: TrainConfig) -> None:
        """warm_start continues the fitted network and optimizer: they cannot change shape."""
        fitted = self._trainer.config
        for name, old, new in [
            ("hidden_layer_sizes", fitted.model.hidden, config.model.hidden),
            ("activation", fitted.model.activation, config.model.activation),
            ("solver", fitted.optimizer.name, config.optimizer.name),
            ("backend", fitted.backend, config.backend),
            ("dtype", fitted.dtype, config.dtype),
        ]:
            if old != new:
                raise self._parameter_error(name, f"warm_start=True continues the fitted network, which has "
                                       f"{old!r}; got {new!r} (valid: {old!r}, or warm_start=False to start over)")

    def _train(self, X, y, sample_weight, X_val=None, y_val=None) -> None:
        from numbamlp.trainer import TrainingDiverged

        trainer = self._trainer
        before = trainer.epoch
        callbacks = [_PrintEpochs(self._VALIDATION_SCORE)] if self.verbose else []
        try:
            trainer.fit(X, y, X_val, y_val, sample_weight=sample_weight, callbacks=callbacks,
                        warm_start=before > 0)
        except TrainingDiverged as err:  # (the trainer's advice in the estimator's words)
            raise ValueError(str(err).replace("try a lower learning rate", "try a lower learning_rate_init")) from None
        self.t_ += (trainer.epoch - before) * X.shape[0]

    def _validated(self, X, y, reset: bool, **options):
        """validate_data(self, X, y, reset=reset, ...) (which keeps a DataFrame's column names
        in feature_names_in_), and, when ``reset``, the columns' dtypes for the model file."""
        from numbamlp.arrays import column_dtypes

        if reset:
            self._column_dtypes = column_dtypes(X)
        return validate_data(self, X, y, dtype=[np.float64, np.float32], reset=reset, **options)

    # ------------------------------------------------------------ tables
    def _inputs(self, X, y, first: bool):
        """fit's and partial_fit's data: (X, y, None), X (N, D) checked as scikit-learn checks
        it (today's path: an array without NaN, a DataFrame of numbers alone), or (None, y,
        (columns, like)) for a table: its raw columns {name: column} and X as checked, which
        says the dtype to train in (_table_inputs, _dtype).  ``first``: a fit from scratch or
        a first partial_fit, which decides which of the two X is; later calls take what the
        first took."""
        from numbamlp.arrays import all_finite

        categorical = None
        if not first:
            if self.__dict__.get("_table") is None:  # (fitted on numbers; or pickled before tables)
                with self._no_missing_values_learned():
                    X, y = self._validated(X, y, reset=False, **self._Y_CHECKS)
                return X, y, None
        elif _is_dataframe(X):
            self._table = self._input_scaler = None
            categorical = self._categorical_columns(X, [str(c) for c in X.columns])
            if not categorical and not (X.shape[0] and X.isna().to_numpy().any()):
                X, y = self._validated(X, y, reset=True, **self._Y_CHECKS)
                return X, y, None
        else:
            self._table = self._input_scaler = None
            if not self._picks_columns():
                X, y = self._validated(X, y, reset=True, ensure_all_finite="allow-nan", **self._Y_CHECKS)
                if all_finite(X):  # (no NaN: the array validate_data gives without allow-nan, today's path)
                    return X, y, None
        columns, y, like = self._table_inputs(X, y, reset=first, categorical=categorical)
        return None, y, (columns, like)

    def _picks_columns(self) -> bool:
        """Whether categorical_features names columns itself (names, positions or a mask)."""
        picked = self.categorical_features
        return picked is not None and not isinstance(picked, str) and bool(np.asarray(picked).size)

    def _categorical_columns(self, X, names: list[str]) -> list[str]:
        """The columns of X (named ``names``) that ``categorical_features`` makes categorical,
        read as HistGradientBoosting reads it: "from_dtype" (a DataFrame's columns of dtype
        category, object or string; none of an array's), None (none), column names, positions
        or a boolean mask (one per column)."""
        from numbamlp.arrays import dtype_kind

        selection = self.categorical_features
        if selection is None:
            return []
        if isinstance(selection, str):  # ("from_dtype": _parameter_constraints refused any other)
            if not _is_dataframe(X):
                return []
            return [name for name, dtype in zip(names, X.dtypes) if dtype_kind(str(dtype)) == "text"]
        picked = np.asarray(selection)
        valid = "(valid: 'from_dtype', None, column names, column positions, or a boolean mask of every column)"
        if picked.size == 0:
            return []
        if picked.ndim != 1:
            raise self._parameter_error("categorical_features", f"got {selection!r} {valid}")
        if picked.dtype.kind == "b":
            if len(picked) != len(names):
                raise self._parameter_error("categorical_features", f"a boolean mask needs one entry per column "
                                            f"of X ({len(names)}), got {len(picked)}")
            return [name for name, chosen in zip(names, picked) if chosen]
        if picked.dtype.kind in "iu":
            if picked.min() < 0 or picked.max() >= len(names):
                raise self._parameter_error("categorical_features", f"positions must be in [0, {len(names) - 1}] "
                                            f"for X's {len(names)} columns, got {picked.tolist()}")
            chosen = {int(j) for j in picked}
            return [name for j, name in enumerate(names) if j in chosen]
        if picked.dtype.kind in "UO" and all(isinstance(name, str) for name in picked):
            if not _is_dataframe(X):
                raise self._parameter_error("categorical_features", "column names need an X whose columns have "
                                            "names (a DataFrame); for an array, give positions or a boolean mask")
            unknown = [str(name) for name in picked if name not in names]
            if unknown:
                raise self._parameter_error("categorical_features", f"X has no column {unknown[0]!r} (its columns: "
                                            f"{', '.join(map(repr, names[:8]))}{', ...' if len(names) > 8 else ''})")
            chosen = set(picked.tolist())
            return [name for name in names if name in chosen]
        raise self._parameter_error("categorical_features", f"got {selection!r} {valid}")

    def _table_inputs(self, X, y, reset: bool, categorical: list[str] | None = None):
        """(columns, y, like) for a table X: its raw columns {name: float64 (N,) with NaN |
        TextColumn} (numbamlp.encoding.table_columns), y checked as validate_data checks it
        ("no_validation" at prediction, validate_data's word), and X checked (what says the
        dtype to train in).  X is a
        DataFrame (columns by name; feature_names_in_ as validate_data keeps them) or an
        array (columns by position, named x0, x1, ...; so is a DataFrame given to an
        estimator fitted without feature names, as scikit-learn takes it).  ``reset``: learn
        the columns (a first fit); else they are the fitted encoder's.  ValueError for infinite numbers,
        dates, or a text where the encoder was fitted on numbers (table_columns)."""
        from numbamlp.arrays import column_dtypes, dtype_kind
        from numbamlp.encoding import TextColumn, table_columns

        fitting = not (isinstance(y, str) and y == "no_validation")
        if not reset:
            categorical = self._table.categorical
        if _is_dataframe(X) and (reset or "feature_names_in_" in self.__dict__):
            X, y = validate_data(self, X, y, reset=reset, skip_check_array=True) if fitting else (
                validate_data(self, X, reset=reset, skip_check_array=True), y)
            if X.shape[0] == 0:
                raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required "
                                 f"by {type(self).__name__}.")
            names = [str(c) for c in X.columns] if reset else self._table.columns
            if reset:
                if len(set(names)) != len(names):
                    twice = next(name for name in names if names.count(name) > 1)
                    raise ValueError(f"X has two columns named {twice!r}; a table's columns need distinct names")
                dates = [name for name, dtype in zip(names, X.dtypes) if dtype_kind(str(dtype)) == "datetime"]
                if dates:
                    raise ValueError(f"column {dates[0]!r} holds dates or times, which the model cannot take: "
                                     "convert it to numbers (or text, for a category) first")
                self._column_dtypes = column_dtypes(X)
        else:
            picks = self._picks_columns() if reset else bool(categorical)
            checks = dict(dtype=None, ensure_all_finite=False) if picks else dict(
                dtype=[np.float64, np.float32], ensure_all_finite="allow-nan")
            if fitting:
                X, y = validate_data(self, X, y, reset=reset, **checks, **self._Y_CHECKS)
            else:
                X = validate_data(self, X, reset=reset, **checks)
            names = [f"x{j}" for j in range(X.shape[1])] if reset else self._table.columns
            if reset:
                self._column_dtypes = None
                categorical = self._categorical_columns(X, names)
        if fitting:
            y = _check_y(y, estimator=self, **self._Y_CHECKS)
            check_consistent_length(X, y)
        if not categorical and isinstance(X, np.ndarray):  # (an array of numbers: its columns as they are)
            columns = {name: np.asarray(X[:, j], dtype=np.float64) for j, name in enumerate(names)}
        else:
            columns = table_columns(X, names, categorical)
        for name, column in columns.items():
            if not isinstance(column, TextColumn) and np.isinf(column).any():
                raise ValueError(f"Input X contains infinity in column {name!r}.")
        return columns, y, X

    def _encoded(self, columns: dict, y, rows, seed: int, dtype: str) -> np.ndarray:
        """X (N, D_in) of ``dtype``: the raw ``columns`` encoded and standardised.  Without a
        table encoding yet (a first fit), it is learned here from the training ``rows`` (None:
        all): numbamlp.encoding.fit_table (their target means cross-fitted with ``seed``),
        then the standardisation of those rows' numbers and target means (not the one-hot
        and was-missing features: Standardizer.leaving)."""
        from numbamlp.encoding import fit_table
        from numbamlp.transforms import Standardizer

        if self._table is None:
            encoder, X = fit_table(columns, y, self._TASK, self.min_category_rows, seed, dtype, rows)
            self._input_scaler = Standardizer.fit(X if rows is None else X[rows]).leaving(~encoder.scaled())
            self._table = encoder
        else:
            X = self._table.transform(columns, dtype)
        self._input_scaler.inplace_transform(X)
        return X

    def _set_results(self) -> None:
        trainer = self._trainer
        self.model_ = trainer.model
        # (what a saved model_ needs to take a table's columns by name, as `numbamlp predict` does)
        names = getattr(self, "feature_names_in_", None)
        self.model_.feature_names = None if names is None else [str(name) for name in names]
        self.model_.feature_dtypes = getattr(self, "_column_dtypes", None) if names is not None else None
        table = self.__dict__.get("_table")
        if table is not None:  # (a table's encoding and standardisation: the model takes its raw columns)
            self.model_.table, self.model_.input_transform = table, self._input_scaler
            self.model_.feature_names = table.columns
            self.model_.feature_dtypes = getattr(self, "_column_dtypes", None)
        self.n_iter_ = trainer.epoch
        self.n_layers_ = len(trainer.model.layers)
        self.n_outputs_ = trainer.model.layers[-1]
        self.out_activation_ = self._OUT_ACTIVATION
        self.loss_curve_, lowest = self._losses()
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        if self._early_stopping_ran:
            key = self._VALIDATION_SCORE
            self.validation_scores_ = [m[key] for m in trainer.history if key in m]
            self.best_validation_score_ = max(self.validation_scores_)
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = lowest

    def _losses(self) -> tuple[list[float], float | None]:
        """(the training loss of each epoch in the trainer's history, their minimum; None
        for none), read from the epochs added since the last call only: reading the whole
        history made each partial_fit O(epochs so far), 0.2 ms a call at 10,000 epochs.
        Kept with the history list they were read from (a trainer's history only grows; a
        fit from scratch, or a restore, makes a new list, which is read from the start)."""
        history = self._trainer.history
        read = self.__dict__.get("_read_losses")  # (the history list, its losses so far (a tuple), their minimum)
        if read is None or read[0] is not history or len(read[1]) > len(history):
            read = (history, (), None)
        _, losses, lowest = read
        new = [m["loss"] for m in history[len(losses):]]
        losses += tuple(new)
        lowest = min(new if lowest is None else [lowest, *new], default=None)
        self._read_losses = (history, losses, lowest)
        return list(losses), lowest

    @property
    def coefs_(self) -> list[np.ndarray]:
        """[W_i.T (in, out), ...]: views of the trained weights in scikit-learn's layout."""
        if "model_" not in self.__dict__:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute 'coefs_' (not fitted yet)")
        self._trainer.synchronize()
        return [W.T for W, _ in self.model_.params]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """[b_i (out,), ...]: views of the trained biases."""
        if "model_" not in self.__dict__:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute 'intercepts_' (not fitted yet)")
        self._trainer.synchronize()
        return [b for _, b in self.model_.params]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        tags.input_tags.allow_nan = True  # (missing cells: the median and a was-missing feature)
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained with numbamlp's kernels.

    Parameters shared with scikit-learn's ``MLPClassifier`` (same names, same meaning):

    hidden_layer_sizes: an int or a sequence of ints ≥ 1, the hidden widths (``()``: none).
        The default (128,) is wider than scikit-learn's (100,): with (100,), 5-fold accuracy
        fell behind scikit-learn's on wine (0.9754 against 0.9776) and iris (0.9427 against
        0.9453), where (128,) reaches 0.9787 and 0.9453 (random_state 0-4,
        bench/estimator_defaults.py --seeds 5; bench/README.md, 2026-12-07).
    activation: one of numbamlp.ACTIVATION_NAMES, or scikit-learn's "logistic" (= "sigmoid");
        numbamlp has no "identity".
    solver: sgd, momentum, nesterov, adam or adamw (not scikit-learn's lbfgs).  The default is
        "adam", scikit-learn's: on features as given it is far less sensitive to their scale
        than SGD with momentum (digits' raw pixels, 30 epochs: 0.9667 test accuracy against
        0.1933 for "momentum", which was the default until 2026-11-30; README.md).  "sgd" is
        plain SGD unless ``momentum`` is set, as in PyTorch.
    learning_rate_init: None (default) means the solver's default learning rate (0.05 for
        sgd, momentum and nesterov; 1e-3 for adam and adamw).
    momentum: None (default) means the solver's default (sgd 0, momentum and nesterov 0.9);
        refused with adam and adamw.  In [0, 1).
    beta_1, beta_2, epsilon: Adam's moment decays and denominator guard; None (default) means
        0.9, 0.999, 1e-8; refused with the sgd family.
    alpha: L2 weight decay as numbamlp (and PyTorch) apply it: alpha·w added to the batch's
        mean gradient of every weight and bias (decoupled for adamw).  Not scikit-learn's
        alpha, which adds alpha·W / (rows in the batch) and leaves the biases alone: its alpha
        is about batch_size × this one's, so its default 1e-4 is 1e-4 / rows per batch here
        (5e-7 at 200 rows: almost no decay).
        The default 1e-3 is the smallest tried that keeps breast_cancer's 5-fold accuracy at
        scikit-learn's 0.9757: 0.9771, where 3e-4 gives 0.9743, 1e-4 0.9733 and 0 0.9740
        (random_state 0-4, bench/estimator_defaults.py --seeds 5).
    batch_size: rows per minibatch, or "auto" = min(200, training rows) as in scikit-learn.
        The default stays 32: more, smaller steps per epoch (with "auto", max_iter 200 and
        alpha 1e-3, MLPRegressor's friedman1 5-fold R² was 0.910 against 0.973 with 32,
        random_state 0-2, bench/estimator_defaults.py).
    max_iter: epochs per ``fit``; 200, scikit-learn's.  It was 30 until 2026-12-07, which left
        iris at 0.893 5-fold accuracy against scikit-learn's 0.947 (random_state=0); with 200
        both reach 0.947, and wine, breast_cancer and digits are no worse than
        scikit-learn's (bench/estimator_defaults.py; bench/README.md, 2026-12-07); so are
        their held-out scores over 20 splits × random_state 0-4 (``--splits 20``; wine 0.9831
        against 0.9829, where the one split of seed 1, 45 rows, is one row in 225 behind,
        0.9822 against 0.9867: noise, a paired difference of +0.0002 ± 0.0014 s.e.).  Every
        epoch is trained: there is no ``tol`` (scikit-learn stops once the training loss has
        not improved by tol=1e-4 for n_iter_no_change epochs); use early_stopping to stop
        sooner.
    learning_rate: the schedule, constant, step or cosine (not scikit-learn's invscaling or
        adaptive).
    early_stopping: hold out a stratified ``validation_fraction`` and stop after
        ``n_iter_no_change`` epochs without a lower validation loss, restoring the weights
        of the best epoch.  Not with ``partial_fit`` (refused, as in scikit-learn).
    n_iter_no_change: the early-stopping patience in epochs; 10, scikit-learn's (it acts
        only with early_stopping=True: there is no ``tol``).  It was 5 until 2026-12-07,
        which stopped sooner and scored lower: with early_stopping=True, 5-fold, random_state
        0-4, 10 against 5 gave iris 0.9413 / 0.9360, wine 0.9786 / 0.9775, digits 0.9784 /
        0.9779, friedman1 R² 0.9621 / 0.9473 (scikit-learn early-stopped: 0.9590), diabetes
        0.4436 / 0.4348 (both behind scikit-learn's 0.4656), breast_cancer 0.9761 / 0.9768
        (bench/estimator_defaults.py --seeds 5 --params early_stopping=True
        n_iter_no_change=N --sklearn-params early_stopping=True).
    verbose: print "Iteration N, loss = X" after every epoch (and "Validation score: S" with
        early stopping), as scikit-learn does.
    warm_start: a second ``fit`` continues for ``max_iter`` more epochs from the current
        weights, optimizer state and shuffling stream instead of starting over (so two fits
        of 5 epochs equal one of 10 with the constant and step schedules; cosine spans each
        fit's epochs so far, so a warm fit raises the rate again).  scikit-learn keeps the weights but restarts its
        optimizer; numbamlp keeps the optimizer too.  The network and the solver cannot change
        between warm fits (hidden_layer_sizes, activation, solver, backend, dtype).
    random_state: None, an int or a RandomState (None: a fresh draw per cold fit).

    numbamlp's own: class_weight (None, "balanced" or {label: weight}); backend: cpu, numpy,
    reference or cuda; dtype: None (the default) trains in X's own floating dtype, as
    scikit-learn's MLPs do: float32 X stays float32 (no float64 copy of X, about half the
    memory and faster), anything else (float64, ints) is float64; a warm fit or a later
    partial_fit continues in the dtype of the first.  "float64" or "float32" forces one
    (X is then converted).  float32 is faster but, because BLAS's float32 GEMM rounds
    differently for different row counts, gives probabilities that vary by ~1e-7 with how
    rows are batched (so dtype="float32" fails check_methods_subset_invariance's 1e-7
    tolerance; check_estimator's data is float64, so the default passes it).

    Tables, as HistGradientBoosting takes them:
    categorical_features: which columns are categories: "from_dtype" (the default,
        HistGradientBoosting's: a DataFrame's columns of dtype category, object or string;
        none of an array's), None (none), or column names, positions or a boolean mask, as
        HistGradientBoosting reads them.  A DataFrame with a categorical column or a missing
        cell, or an array with NaN, is encoded by a numbamlp.encoding.TableEncoder learned
        from the training rows (validation rows left out): a category with at least
        min_category_rows rows is one-hot (target means past
        numbamlp.encoding.ONEHOT_MAX_CATEGORIES buckets), rarer and unseen ones share a
        bucket, a missing category is one of its own; a missing number is the median and
        gets a was-missing feature.  The numbers and target means are then
        standardised (the 0/1 features are not).  The encoding and standardisation are part
        of model_ (model_.table, model_.input_transform), so predict, the saved model and
        ``numbamlp predict`` take the raw rows; n_features_in_ and feature_names_in_ are the
        raw columns.  An array without NaN, or a DataFrame of numbers alone, trains as given,
        as before.  The first fit (or first partial_fit) decides: a warm fit and later
        partial_fit calls encode with what it learned.
    min_category_rows: the training rows a category needs for a bucket of its own
        (numbamlp.config.MIN_CATEGORY_ROWS by default, the command line's).

    Fitted attributes, as scikit-learn names and shapes them: classes_, coefs_ (coefs_[i] is
    (in, out): numbamlp's W (out, in) transposed, a view of the live weights), intercepts_
    (intercepts_[i] (out,)), n_layers_ (hidden layers + 2), n_outputs_ (one softmax output per
    class, also for two classes, where scikit-learn uses one logistic unit), out_activation_
    ("softmax"), loss_curve_ (mean training cross-entropy per epoch, without the L2 term that
    scikit-learn's includes), loss_ (its last value), n_iter_ (epochs the network has trained,
    counting every warm-started fit and partial_fit; scikit-learn counts only the last call's),
    t_ (training rows seen), best_loss_ (min of loss_curve_; None when early stopping ran),
    validation_scores_ (validation accuracy per epoch, only when early stopping ran, else
    None) and best_validation_score_ (their maximum, else None), model_ (the numbamlp MLP).
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(128,),
        activation="relu",
        solver="adam",
        learning_rate_init=None,
        momentum=None,
        alpha=1e-3,
        batch_size=32,
        max_iter=200,
        learning_rate="constant",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        class_weight=None,
        random_state=None,
        backend="cpu",
        dtype=None,
        verbose=False,
        warm_start=False,
        beta_1=None,
        beta_2=None,
        epsilon=None,
        categorical_features="from_dtype",
        min_category_rows=MIN_CATEGORY_ROWS,
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
        self.verbose = verbose
        self.warm_start = warm_start
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.categorical_features = categorical_features
        self.min_category_rows = min_category_rows

    # ------------------------------------------------------------ training
    @_fit_context(prefer_skip_nested_validation=True)
    @_as_it_was_when_refused
    def fit(self, X, y, sample_weight=None):
        """Train for ``max_iter`` epochs: from scratch, or, with ``warm_start=True`` and a
        fitted estimator, on from where the last fit or partial_fit stopped.
        X (N, D), y (N,), sample_weight (N,)."""
        from numbamlp.data import stratified_split
        from numbamlp.arrays import as_sample_weights
        from numbamlp.trainer import Trainer

        self._check_combinations()
        warm = self.warm_start and hasattr(self, "_trainer")
        X, y, table = self._inputs(X, y, first=not warm)
        check_classification_targets(y)
        classes = unique_labels(y)
        if warm and not np.array_equal(classes, self.classes_):
            raise ValueError("warm_start can only be used where y has the same classes as in the previous "
                             f"call to fit: previously {self.classes_}, y has {classes}")
        if len(classes) < 2:
            only = classes[0].item() if isinstance(classes[0], np.generic) else classes[0]  # (0, not np.int64(0))
            raise ValueError(f"y has 1 class ({only!r}); classification needs at least 2")
        seed = self._trainer.config.seed if warm else self._seed()
        dtype = self._dtype(X if table is None else table[1], warm=warm)
        X_val = y_val = fit_rows = None
        if self.early_stopping:  # held out here, as the trainer would, to know the training rows
            fit_rows, val_rows, _, _ = stratified_split(np.arange(len(y)), y, self.validation_fraction, seed)
        if table is not None:  # (the encoding learned from the training rows alone)
            X = self._encoded(table[0], y, fit_rows, seed, dtype)
        if self.early_stopping:
            if sample_weight is not None:
                sample_weight = as_sample_weights(sample_weight, X.shape[0], np.float64)[fit_rows]
            X_val, y_val, X, y = X[val_rows], y[val_rows], X[fit_rows], y[fit_rows]
        if warm:
            trainer = self._trainer
            config = self._config(trainer.epoch + self.max_iter, seed, self._batch_size(X.shape[0]),
                                  self.early_stopping, dtype)
            self._check_same_network(config)
            trainer.continue_with(config)
        else:
            self.classes_ = classes
            self.t_ = 0
            self._trainer = Trainer(self._config(self.max_iter, seed, self._batch_size(X.shape[0]),
                                                 self.early_stopping, dtype))
        self._train(X, y, sample_weight, X_val, y_val)
        self._early_stopping_ran = self.early_stopping
        self._set_results()
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    @_as_it_was_when_refused
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One more epoch over (X, y).  The first call must list every class in ``classes``
        (arguments in scikit-learn's MLPClassifier order: sample_weight before classes)."""
        from numbamlp.config import EarlyStoppingConfig
        from numbamlp.trainer import Trainer

        self._check_partial_fit()
        first = not hasattr(self, "_trainer")
        if first:
            self._check_combinations()
        plain = None if first else self._plain_features(X)
        table = None
        if plain is not None and type(y) is np.ndarray and y.dtype.kind in "iu" and y.shape == (len(plain),):
            X = plain  # (integer labels, one per row: validate_data and check_classification_targets pass them as they are)
        else:
            X, y, table = self._inputs(X, y, first)
            check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("the first call to partial_fit must pass classes=[every class label]")
            self.classes_ = unique_labels(classes)
            if len(self.classes_) < 2:
                raise ValueError("classes must list at least 2 labels")
            self.t_ = 0
            seed, dtype = self._seed(), self._dtype(X if table is None else table[1])
            self._trainer = Trainer(self._config(0, seed, self._batch_size(len(y)), False, dtype))
            self._trainer.classes_ = self.classes_
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"classes={unique_labels(classes).tolist()} is not the same as on the first call to "
                             f"partial_fit (or fit), which had {self.classes_.tolist()}")
        elif not np.isin(y, self.classes_).all():
            raise ValueError("y holds labels that were not in classes on the first partial_fit call")
        if table is not None:  # (the encoding learned from the first call's rows, kept by the later ones)
            X = self._encoded(table[0], y, None, self._trainer.config.seed, self._trainer.config.dtype)
        trainer = self._trainer
        # after an early-stopped fit too: train this epoch and keep its weights
        trainer.continue_with(trainer.config.model_copy(update={
            "epochs": trainer.epoch + 1, "batch_size": self._batch_size(X.shape[0]),
            "early_stopping": EarlyStoppingConfig(),
        }))
        self._train(X, y, sample_weight)
        self._early_stopping_ran = False
        self._set_results()
        return self

    # ------------------------------------------------------------ prediction
    def predict_proba(self, X):
        """Class probabilities (N, C), columns in the order of ``classes_``."""
        check_is_fitted(self)
        from numbamlp.model import softmax

        return softmax(self._scores(self._checked_features(X)))

    def predict_log_proba(self, X):
        """The log of predict_proba (N, C), computed from the scores (log-softmax), so that a
        probability that rounds to 0 still has a finite log."""
        check_is_fitted(self)
        from scipy.special import log_softmax

        return log_softmax(self._scores(self._checked_features(X)).astype(np.float64), axis=1)

    def predict(self, X):
        """The most probable class label of each row."""
        most_probable = np.argmax(self.predict_proba(X), axis=1)  # (predict_proba checks that it is fitted)
        return self.classes_[most_probable]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained with numbamlp's kernels: K linear outputs under
    the squared error ½·mean over rows of Σ_k (s − y)², scikit-learn's MLPRegressor loss.

    The parameters are MLPClassifier's (see there) less ``class_weight``, with its defaults
    (max_iter 200, scikit-learn's) but one: alpha 7e-3, where the classifier's is 1e-3.
    Five-fold R² behind a StandardScaler and a target StandardScaler, means over
    random_state 0-4 (bench/estimator_defaults.py --seeds 5, bench/README.md 2026-12-07),
    against scikit-learn's defaults' 0.463 on load_diabetes and 0.960 on make_friedman1
    (1,000 rows): with max_iter 200, alpha 1e-3 gives 0.432 and 0.976 (diabetes' 442 noisy
    rows are overfitted in 200 epochs of 32-row steps), 7e-3 gives 0.470 and 0.967, and
    1e-2 0.479 but falls behind on friedman1 (0.958).  (Until 2026-12-07: max_iter 100 and
    alpha 1e-3, 0.450 and 0.937.)  Unlike scikit-learn's, it standardises the targets with
    the training rows' mean and standard deviation (fitted on the first fit, kept by warm
    fits and partial_fit) and trains on them; predictions are in the targets' units.  Features are not
    standardised: put a ``StandardScaler`` before it, as for scikit-learn's.

    y: (N,) or (N, K) numbers.  ``predict`` returns (N,) for one output (also when fitted
    with y (N, 1), as scikit-learn does), else (N, K); ``score`` is R² (uniform average).
    Fitted attributes as MLPClassifier's, with out_activation_ "identity", n_outputs_ = K,
    loss_curve_ the mean training loss per epoch in the standardised units, and
    validation_scores_ the validation R² per epoch (early stopping only).
    """

    _TASK = "regression"
    _OUT_ACTIVATION = "identity"
    _VALIDATION_SCORE = "val_r2"

    def __init__(
        self,
        hidden_layer_sizes=(128,),
        activation="relu",
        solver="adam",
        learning_rate_init=None,
        momentum=None,
        alpha=7e-3,
        batch_size=32,
        max_iter=200,
        learning_rate="constant",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=None,
        backend="cpu",
        dtype=None,
        verbose=False,
        warm_start=False,
        beta_1=None,
        beta_2=None,
        epsilon=None,
        categorical_features="from_dtype",
        min_category_rows=MIN_CATEGORY_ROWS,
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
        self.random_state = random_state
        self.backend = backend
        self.dtype = dtype
        self.verbose = verbose
        self.warm_start = warm_start
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.categorical_features = categorical_features
        self.min_category_rows = min_category_rows

    _Y_CHECKS = {"multi_output": True, "y_numeric": True}

    def _targets(self, X, y, first: bool):
        """_inputs's (X, y, table), y (N, 1) as (N,)."""
        X, y, table = self._inputs(X, y, first)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        return X, y, table

    @_fit_context(prefer_skip_nested_validation=True)
    @_as_it_was_when_refused
    def fit(self, X, y, sample_weight=None):
        """Train for ``max_iter`` epochs (from scratch, or on with ``warm_start=True``).
        X (N, D), y (N,) or (N, K), sample_weight (N,)."""
        from numbamlp.data import shuffle_split
        from numbamlp.arrays import as_sample_weights
        from numbamlp.trainer import Trainer

        self._check_combinations()
        warm = self.warm_start and hasattr(self, "_trainer")
        X, y, table = self._targets(X, y, first=not warm)
        if warm and (1 if y.ndim == 1 else y.shape[1]) != self.n_outputs_:
            raise ValueError(f"warm_start continues a network with {self.n_outputs_} outputs; y has "
                             f"{1 if y.ndim == 1 else y.shape[1]}")
        seed = self._trainer.config.seed if warm else self._seed()
        dtype = self._dtype(X if table is None else table[1], warm=warm)
        X_val = y_val = fit_rows = None
        if self.early_stopping:  # held out here, as the trainer would, to know the training rows
            fit_rows, val_rows, _, _ = shuffle_split(np.arange(len(y)), y, self.validation_fraction, seed)
        if table is not None:  # (the encoding learned from the training rows alone)
            X = self._encoded(table[0], y, fit_rows, seed, dtype)
        if self.early_stopping:
            if sample_weight is not None:
                sample_weight = as_sample_weights(sample_weight, X.shape[0], np.float64)[fit_rows]
            X_val, y_val, X, y = X[val_rows], y[val_rows], X[fit_rows], y[fit_rows]
        if warm:
            trainer = self._trainer
            config = self._config(trainer.epoch + self.max_iter, seed, self._batch_size(X.shape[0]),
                                  self.early_stopping, dtype)
            self._check_same_network(config)
            trainer.continue_with(config)
        else:
            self.t_ = 0
            self._trainer = Trainer(self._config(self.max_iter, seed, self._batch_size(X.shape[0]),
                                                 self.early_stopping, dtype))
        self._train(X, y, sample_weight, X_val, y_val)
        self._early_stopping_ran = self.early_stopping
        self._set_results()
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    @_as_it_was_when_refused
    def partial_fit(self, X, y, sample_weight=None):
        """One more epoch over (X, y); the first call fixes the outputs and the target
        standardisation."""
        from numbamlp.config import EarlyStoppingConfig
        from numbamlp.trainer import Trainer

        self._check_partial_fit()
        first = not hasattr(self, "_trainer")
        if first:
            self._check_combinations()
        X, y, table = self._targets(X, y, first)
        if first:
            self.t_ = 0
            self._trainer = Trainer(self._config(0, self._seed(), self._batch_size(len(y)), False,
                                                 self._dtype(X if table is None else table[1])))
        if table is not None:  # (the encoding learned from the first call's rows, kept by the later ones)
            X = self._encoded(table[0], y, None, self._trainer.config.seed, self._trainer.config.dtype)
        trainer = self._trainer
        trainer.continue_with(trainer.config.model_copy(update={
            "epochs": trainer.epoch + 1, "batch_size": self._batch_size(X.shape[0]),
            "early_stopping": EarlyStoppingConfig(),
        }))
        self._train(X, y, sample_weight)
        self._early_stopping_ran = False
        self._set_results()
        return self

    def predict(self, X):
        """Predicted values, (N,) for one output, else (N, K), in the targets' units."""
        check_is_fitted(self)
        return self.model_.values(self._scores(self._checked_features(X)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
