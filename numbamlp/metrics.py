"""Metrics of predictions against targets, shared by training, evaluation and the faces:
a regressor's (R², MSE, MAE), a classifier's (accuracy, balanced accuracy, F1, ROC AUC,
average precision, log loss, the confusion matrix), and the table of the validation
metrics that choose a best epoch (early stopping) or a best sweep member.

Symbols: N rows, C classes, K regression outputs, R rankings (a score per row each).

The classification metrics are written in numpy and agree with scikit-learn's functions
of the same names (tests/test_metrics.py holds them to it); where a metric is undefined on
the data (a ROC AUC with one class present) it is None, never a warning.
"""

from __future__ import annotations

import numpy as np

from numbamlp.kernels import get_backend

# The validation metrics that can choose the best epoch (early_stopping.metric) and a sweep's
# best member, per task (the first is a sweep's default), and which way each is better: the
# one statement of them (the config's Literal, the sweeps and the command line read it).
TASK_METRICS = {
    "classification": ("val_accuracy", "val_loss", "val_roc_auc", "val_average_precision", "val_f1",
                       "val_macro_f1", "val_balanced_accuracy"),
    "regression": ("val_r2", "val_mse", "val_loss"),
}
HIGHER_IS_BETTER = {"val_accuracy": True, "val_r2": True, "val_loss": False, "val_mse": False, "val_roc_auc": True,
                    "val_average_precision": True, "val_f1": True, "val_macro_f1": True,
                    "val_balanced_accuracy": True}
METRICS = tuple(HIGHER_IS_BETTER)


def regression_metrics(y, predictions) -> dict:
    """{"mse", "mae", "r2"} of predictions against targets y, (N,) or (N, K), in the targets'
    units, float64; with K outputs each is the mean over the outputs (R² as scikit-learn's
    r2_score, uniform average: 1 − Σ(y − ŷ)² / Σ(y − ȳ)² per output)."""
    y = np.asarray(y, dtype=np.float64).reshape(len(predictions), -1)
    error = np.asarray(predictions, dtype=np.float64).reshape(y.shape) - y
    spread = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    residual = np.sum(error**2, axis=0)
    r2 = np.where(spread > 0, 1.0 - residual / np.where(spread > 0, spread, 1.0), np.where(residual == 0, 1.0, 0.0))
    return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error))), "r2": float(np.mean(r2))}


# ---------------------------------------------------------------- classification
def f1_name(n_classes: int) -> str:
    """The F1 score classification_metrics reports: "f1" (of the positive class, the second)
    for two classes, "macro_f1" for more."""
    return "f1" if n_classes == 2 else "macro_f1"


def check_metric_applies(metric: str, task: str, n_classes: int | None = None) -> None:
    """ValueError unless the validation metric ``metric`` (one of METRICS) is one a model of
    ``task`` has (TASK_METRICS), and, for a classifier of ``n_classes`` classes (None:
    not known yet), the F1 it reports (val_f1 for two classes, val_macro_f1 for more)."""
    if metric not in TASK_METRICS[task]:
        raise ValueError(f"metric {metric} does not apply to {task}: use one of {', '.join(TASK_METRICS[task])}")
    if n_classes is not None and metric in ("val_f1", "val_macro_f1") and metric != f"val_{f1_name(n_classes)}":
        raise ValueError(f"metric {metric} does not apply to {n_classes} classes: use val_{f1_name(n_classes)}")


def classification_metrics(y_idx, probabilities, n_classes: int, threshold: float | None = None) -> dict:
    """Every metric of a classifier's probabilities (N, C) against class indices y_idx (N,),
    by name: accuracy, balanced_accuracy, f1 (two classes: of the positive class, index 1)
    or macro_f1 (more), roc_auc, average_precision and log_loss.  The predicted class of a
    row is its most probable (the first of equals).  A metric undefined on the rows (a ROC
    AUC or average precision with one class present; anything of no rows) is None."""
    return stacked_classification_metrics(y_idx, np.asarray(probabilities)[None], n_classes, threshold=threshold)[0]


# The metrics that rank the rows by probability (a sort of every model's every class): an
# epoch's validation metrics hold them only where early stopping watches one (their cost,
# ~0.2 ms a member and epoch, was a third of a small stack's epoch).
RANKING_METRICS = ("roc_auc", "average_precision")


# What a binary classifier's decision threshold may be chosen to maximise on its validation
# rows (TrainConfig.threshold).
THRESHOLD_METRICS = ("f1", "balanced_accuracy")


def check_threshold_applies(threshold, n_classes: int) -> None:
    """ValueError when a decision threshold is set (TrainConfig.threshold) for a classifier
    of other than two classes (the config checked the task; the classes are the data's)."""
    if threshold is not None and n_classes != 2:
        raise ValueError(f"threshold is for binary classifiers; this one has {n_classes} classes")


def predicted_classes(probabilities, threshold: float | None = None) -> np.ndarray:
    """The class index (..., N) of each row of probabilities (..., N, C): the most probable
    (the first of equals); with a binary classifier's ``threshold``, 1 where the second
    class's probability is at least it, else 0."""
    probabilities = np.asarray(probabilities)
    if threshold is None:
        return np.argmax(probabilities, axis=-1)
    return (probabilities[..., 1] >= threshold).astype(np.int64)


def best_threshold(y_idx, positive, metric: str) -> float:
    """The decision threshold that maximises ``metric`` (THRESHOLD_METRICS) of the rule
    "positive where p ≥ threshold" on rows of class indices y_idx (N,) in {0, 1} and
    probabilities of class 1 ``positive`` (N,): every cut between distinct probabilities is
    tried (a sweep of the sorted rows), of equal scores the highest; the threshold is midway
    between the lowest probability called positive and the highest called negative (half
    the lowest when every row is called positive), so that no row sits on it, where a
    float32 graph's rounding could move it across.  0.5 when the rows hold one class only."""
    y = np.asarray(y_idx) == 1
    positive = np.asarray(positive, dtype=np.float64)
    n_positive, n_negative = int(y.sum()), int((~y).sum())
    if n_positive == 0 or n_negative == 0:
        return 0.5
    order = np.argsort(-positive, kind="stable")
    p, hits = positive[order], y[order]
    last_of_value = np.r_[p[1:] != p[:-1], True]  # (a cut only after the last row of equal probabilities)
    tp = np.cumsum(hits)[last_of_value].astype(np.float64)
    fp = np.cumsum(~hits)[last_of_value].astype(np.float64)
    if metric == "f1":
        score = 2 * tp / (2 * tp + fp + (n_positive - tp))
    elif metric == "balanced_accuracy":
        score = (tp / n_positive + (n_negative - fp) / n_negative) / 2
    else:
        raise ValueError(f"a threshold is chosen to maximise one of {', '.join(THRESHOLD_METRICS)}, not {metric!r}")
    cuts = p[last_of_value]  # (the distinct probabilities, highest first)
    best = int(np.argmax(score))
    below = cuts[best + 1] if best + 1 < len(cuts) else 0.0
    return float((cuts[best] + below) / 2)


def stacked_classification_metrics(y_idx, probabilities, n_classes: int, ranking: bool = True,
                                   threshold: float | None = None) -> list[dict]:
    """classification_metrics of each of M models, from their probabilities (M, N, C), against
    the same class indices y_idx (N,) (a stack's validation rows): computed together, the
    same numpy calls for all M (one sort of every model's every class), and each model's
    the bits it gets alone.  ``ranking`` False: without RANKING_METRICS.  ``threshold``: a
    binary classifier's decision threshold, which the predicted classes follow
    (predicted_classes)."""
    y_idx = np.asarray(y_idx)
    probabilities = _checked_probabilities(probabilities, len(y_idx), n_classes)
    names = ("accuracy", "balanced_accuracy", f1_name(n_classes), *(RANKING_METRICS if ranking else ()), "log_loss")
    if len(y_idx) == 0:
        return [dict.fromkeys(names) for _ in probabilities]
    confusions = _confusion_matrices(y_idx, predicted_classes(probabilities, threshold), n_classes)
    aucs, aps = _ranking_metrics(y_idx, probabilities) if ranking else (None, None)
    log_losses = _log_losses(y_idx, probabilities)
    ranked = [(None if aucs is None else float(aucs[m]), None if aps is None else float(aps[m]))
              for m in range(len(confusions))]
    return [dict(zip(names, (accuracy(confusion), balanced_accuracy(confusion),
                             f1_score(confusion, positive=1) if n_classes == 2 else macro_f1(confusion),
                             *(ranked[m] if ranking else ()), float(log_losses[m]))))
            for m, confusion in enumerate(confusions)]


def cross_entropies_and_probabilities(S, y_idx) -> tuple[np.ndarray, np.ndarray]:
    """Each of M models' mean softmax cross-entropy (M,) float64, from its scores S (M, N, C)
    for the same class indices y_idx (N,), and the probabilities (M, N, C) float64 it was
    computed with: one call of the numpy backend's loss kernel over all M·N rows, each row on
    its own, then each model's mean, so each model gets the bits it gets alone (logsumexp −
    s_y: finite for any finite scores, unlike −log of a probability)."""
    M, N, C = np.shape(S)
    rows = np.ascontiguousarray(S, dtype=np.float64).reshape(M * N, C)
    P, row_loss = np.empty_like(rows), np.empty(M * N)
    get_backend("numpy").softmax_crossentropy_forward(P, row_loss, rows, np.tile(np.asarray(y_idx), M))
    return row_loss.reshape(M, N).mean(axis=1), P.reshape(M, N, C)


def _checked_probabilities(probabilities, rows: int, n_classes: int) -> np.ndarray:
    """M models' probabilities as a float array (M, rows, n_classes); ValueError for another shape."""
    probabilities = np.asarray(probabilities)
    if not np.issubdtype(probabilities.dtype, np.floating):
        probabilities = probabilities.astype(np.float64)
    if probabilities.ndim != 3 or probabilities.shape[1:] != (rows, n_classes):
        raise ValueError(f"probabilities must be ({rows}, {n_classes}) for {rows} labels of {n_classes} classes, "
                         f"got shape {probabilities.shape[1:]}")
    return probabilities


def confusion_matrix(y_idx, predicted, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class index, column = predicted class index, of
    class indices y_idx (N,) and predicted (N,)."""
    return _confusion_matrices(y_idx, np.asarray(predicted)[None], n_classes)[0]


def _confusion_matrices(y_idx, predicted, n_classes: int) -> np.ndarray:
    """(M, C, C) confusion_matrix of each of M models' predicted class indices (M, N)."""
    M = len(predicted)
    cells = (np.arange(M)[:, None] * n_classes + np.asarray(y_idx)[None, :]) * n_classes + predicted
    return np.bincount(cells.ravel(), minlength=M * n_classes**2).reshape(M, n_classes, n_classes).astype(np.int64)


def accuracy(confusion: np.ndarray) -> float | None:
    """The fraction of rows predicted right, from a confusion matrix (C, C); None for no rows."""
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else None


def balanced_accuracy(confusion: np.ndarray) -> float | None:
    """The mean recall of the classes present (as scikit-learn's balanced_accuracy_score),
    from a confusion matrix (C, C); None for no rows."""
    support = confusion.sum(axis=1)
    present = support > 0
    if not present.any():
        return None
    return float(np.mean(np.diag(confusion)[present] / support[present]))


def f1_score(confusion: np.ndarray, positive: int) -> float:
    """F1 of class ``positive``, 2·TP / (2·TP + FP + FN), from a confusion matrix (C, C);
    0 where the class is neither present nor predicted (scikit-learn's zero_division=0)."""
    return float(_f1_per_class(confusion)[positive])


def macro_f1(confusion: np.ndarray) -> float | None:
    """The mean F1 of the classes present or predicted (scikit-learn's f1_score with
    average="macro", whose labels are those of y_true and y_pred), from a confusion matrix
    (C, C); None for no rows."""
    seen = (confusion.sum(axis=1) > 0) | (confusion.sum(axis=0) > 0)
    return float(np.mean(_f1_per_class(confusion)[seen])) if seen.any() else None


def _f1_per_class(confusion: np.ndarray) -> np.ndarray:
    """(C,) F1 of each class, 2·TP / (support + predicted), 0 where both are 0."""
    true_positives = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=1) + confusion.sum(axis=0)
    return np.divide(2 * true_positives, denominator, out=np.zeros(len(confusion)), where=denominator > 0)


def roc_auc(y_idx, probabilities) -> float | None:
    """ROC AUC of probabilities (N, C) against class indices y_idx (N,): for two classes,
    of the positive class's probabilities (index 1); for more, one-vs-rest, the mean over
    the classes present (each against all the others).  None with fewer than two classes
    present."""
    auc = _ranking_metrics(y_idx, np.asarray(probabilities)[None])[0]
    return None if auc is None else float(auc[0])


def average_precision(y_idx, probabilities) -> float | None:
    """Average precision of probabilities (N, C) against class indices y_idx (N,), as
    roc_auc: of the positive class for two classes, the one-vs-rest mean over the classes
    present for more.  None with fewer than two classes present."""
    ap = _ranking_metrics(y_idx, np.asarray(probabilities)[None])[1]
    return None if ap is None else float(ap[0])


def _ranking_metrics(y_idx, probabilities) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(roc_auc (M,), average_precision (M,)) of M models' probabilities (M, N, C) against
    class indices y_idx (N,); (None, None) with fewer than two classes present."""
    y_idx = np.asarray(y_idx)
    M, N, n_classes = probabilities.shape
    present = np.flatnonzero(np.bincount(y_idx, minlength=n_classes))
    if len(present) < 2:
        return None, None
    scored = np.array([1]) if n_classes == 2 else present  # (two classes: the positive one's alone)
    # a ranking per model and scored class, (M·K, N), model by model
    scores = np.ascontiguousarray(probabilities[:, :, scored].transpose(0, 2, 1)).reshape(M * len(scored), N)
    auc, ap = _rankings(np.tile(y_idx[None, :] == scored[:, None], (M, 1)), scores)
    return auc.reshape(M, -1).mean(axis=1), ap.reshape(M, -1).mean(axis=1)


def binary_roc_auc(positive, scores) -> float | None:
    """The area under the ROC curve of scores (N,) for the rows ``positive`` (N,) bool marks:
    the chance that a positive row outscores a negative one, ties counting one half
    (the Mann-Whitney statistic from average ranks; scikit-learn's roc_auc_score); None
    without both positive and negative rows."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    return float(_rankings(positive[None], np.asarray(scores)[None])[0][0])


def binary_average_precision(positive, scores) -> float | None:
    """Average precision of scores (N,) for the rows ``positive`` (N,) bool marks, as
    scikit-learn's average_precision_score: Σₙ (Rₙ − Rₙ₋₁)·Pₙ over the distinct scores,
    highest first (each threshold takes every row scoring at least it), no interpolation;
    None without positive rows."""
    positive = np.asarray(positive, dtype=bool)
    if not positive.any():
        return None
    return float(_rankings(positive[None], np.asarray(scores)[None])[1][0])


def _rankings(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ROC AUC (R,), average precision (R,)) of R rankings at once: scores (R, N) of the
    same N rows, the rows ``positive`` (R, N) bool marks (each ranking needs a positive row,
    and for its AUC a negative one).  One sort of each ranking serves both metrics: its rows
    fall into runs of equal scores (a threshold takes a whole run), and every metric is a
    sum over the runs of all R rankings, taken as one flat sequence."""
    R, N = scores.shape
    order = np.argsort(scores, axis=1)  # lowest score first (the order within a run does not matter)
    ordered = np.take_along_axis(scores, order, axis=1)
    new_run = np.ones((R, N), dtype=bool)
    new_run[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    starts = np.flatnonzero(new_run)  # where each run starts in the flat (R·N) sequence
    sizes = np.diff(np.append(starts, R * N))
    hits = np.add.reduceat(np.take_along_axis(positive, order, axis=1).ravel().astype(np.int64), starts)
    ranking, place = np.divmod(starts, N)  # each run's ranking, and where in it the run starts
    positives = np.bincount(ranking, weights=hits, minlength=R)
    negatives = N - positives
    # ROC AUC: the positive rows' rank sum, equal scores sharing the mean of their ranks 1..N
    rank_sums = np.bincount(ranking, weights=hits * (place + (sizes + 1) / 2), minlength=R)
    with np.errstate(divide="ignore", invalid="ignore"):  # (a ranking without negative rows: no AUC, unused)
        auc = (rank_sums - positives * (positives + 1) / 2) / (positives * negatives)
    # average precision: at each run's threshold, from the highest score down, the rows taken
    # (those of this run and above) and the positive ones among them; the run's recall gain
    # is its own positive rows over all of them
    positives_below = np.cumsum(hits) - hits - (np.cumsum(positives) - positives)[ranking]
    precision = (positives[ranking] - positives_below) / (N - place)
    ap = np.bincount(ranking, weights=hits * precision, minlength=R) / positives
    return auc, ap


def log_loss(y_idx, probabilities) -> float:
    """The mean cross-entropy −log p(true class) of probabilities (N, C) against class
    indices y_idx (N,), each probability clipped to [eps, 1 − eps] (eps of its dtype), as
    scikit-learn's log_loss clips (so a probability of 0 costs −log eps, not infinity)."""
    return float(_log_losses(y_idx, np.asarray(probabilities)[None])[0])


def _log_losses(y_idx, probabilities) -> np.ndarray:
    """(M,) log_loss of each of M models' probabilities (M, N, C)."""
    if not np.issubdtype(probabilities.dtype, np.floating):
        probabilities = probabilities.astype(np.float64)
    eps = np.finfo(probabilities.dtype).eps
    # (C-contiguous, model by model: each model's mean sums its rows in the order it does alone)
    of_the_true_class = np.ascontiguousarray(probabilities[:, np.arange(probabilities.shape[1]), np.asarray(y_idx)])
    return -np.mean(np.log(np.clip(of_the_true_class, eps, 1 - eps)), axis=1)
