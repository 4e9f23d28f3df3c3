"""Several trained models of one task answering as one: the members of a stack (a seed
sweep, say), averaged.

    stack = StackTrainer([{**config, "seed": s} for s in range(16)]); stack.fit(X, y)
    ensemble = stack.ensemble()
    ensemble.predict_proba(X)            # (N, C): the mean of the members' probabilities
    ensemble.member_predict_proba(X)     # (M, N, C): each member's, as it gives them alone
    ensemble.save("ensemble/"); Ensemble.load("ensemble/")

A classifier ensemble averages probabilities (scikit-learn's soft voting) and predicts
the class of the highest mean; a regressor ensemble averages the predicted values.  Each
member is an MLP and computes exactly what it computes alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_FORMAT = "numbamlp-ensemble"


class Ensemble:
    """``models``: MLPs of one task, the same features (names too) and, for classifiers, the
    same classes in the same order; ValueError otherwise."""

    def __init__(self, models):
        models = list(models)
        if not models:
            raise ValueError("an ensemble needs at least one model")
        first = models[0]
        for k, model in enumerate(models[1:], start=1):
            if model.task != first.task or model.n_features != first.n_features or model.n_classes != first.n_classes:
                raise ValueError(f"model {k} is a {model.task} of {model.n_features} features and {model.n_classes} "
                                 f"outputs; model 0 a {first.task} of {first.n_features} and {first.n_classes}")
            if model.feature_names != first.feature_names:
                raise ValueError(f"model {k} names its features otherwise than model 0")
            same_classes = (model.classes is None) == (first.classes is None) and (
                model.classes is None or np.array_equal(model.classes, first.classes))
            if not same_classes:
                raise ValueError(f"model {k} has other classes than model 0")
        self.models = models

    @property
    def task(self) -> str:
        return self.models[0].task

    @property
    def classes(self):
        return self.models[0].classes

    def __len__(self) -> int:
        return len(self.models)

    # ------------------------------------------------------------ prediction
    def member_predict_proba(self, X) -> np.ndarray:
        """Each member's class probabilities, (M, N, C)."""
        return np.stack([model.predict_proba(X) for model in self.models])

    def predict_proba(self, X) -> np.ndarray:
        """The mean of the members' class probabilities, (N, C) (rows sum to 1)."""
        return self.member_predict_proba(X).mean(axis=0)

    def member_predict(self, X) -> np.ndarray:
        """Each member's predictions: labels (M, N), or a regressor's values (M, N) or (M, N, K)."""
        return np.stack([model.predict(X) for model in self.models])

    def predict(self, X) -> np.ndarray:
        """A classifier's: the class of the highest mean probability (the models' labels when
        they have classes); a regressor's: the mean of the members' values."""
        if self.task == "regression":
            return self.member_predict(X).mean(axis=0)
        indices = np.argmax(self.predict_proba(X), axis=1)
        return indices if self.classes is None else self.classes[indices]

    # ------------------------------------------------------------ files
    def save(self, directory) -> Path:
        """Every member as ``member-000.safetensors``, ... (numbamlp model files: `numbamlp
        predict` takes each), then ``ensemble.json`` naming them; each written atomically.
        Returns the directory."""
        from numbamlp.io import atomic_write_json, save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        names = [f"member-{k:03d}.safetensors" for k in range(len(self.models))]
        for model, name in zip(self.models, names):
            save_model(model, directory / name)
        atomic_write_json(directory / ENSEMBLE_FILE, {"format": ENSEMBLE_FORMAT, "members": names})
        return directory

    @classmethod
    def load(cls, directory) -> "Ensemble":
        """An ensemble written by ``save``; ModelFileError if the directory holds none, or a
        member file is missing or unusable."""
        import json

        from numbamlp.io import ModelFileError, load_model

        directory = Path(directory)
        try:
            document = json.loads((directory / ENSEMBLE_FILE).read_text())
        except (OSError, ValueError) as err:
            raise ModelFileError(f"{directory} holds no ensemble ({ENSEMBLE_FILE}: {err})") from None
        names = document.get("members") if isinstance(document, dict) else None
        if not isinstance(names, list) or document.get("format") != ENSEMBLE_FORMAT or not names or not all(
                isinstance(n, str) and Path(n).name == n for n in names):  # (a name, never a path elsewhere)
            raise ModelFileError(f"{directory / ENSEMBLE_FILE} is not a numbamlp ensemble file")
        return cls([load_model(directory / name) for name in names])
