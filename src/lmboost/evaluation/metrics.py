"""Metrics for classification and generation, in plain numpy.

Labels are class indices 0..K-1 unless a function says otherwise; ``probs`` is an N x K matrix
whose rows are probability distributions over the K classes (e.g. a calibrator's
``predict_proba``). Every function validates its input and raises ``EvaluationError`` (an
``LmboostError``) on empty input, length mismatch or labels out of range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lmboost.errors import EvaluationError

# --------------------------------------------------------------------------- validation


def _labels(y: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise EvaluationError(f"{what} must be a 1-D sequence of labels, got shape {arr.shape}.")
    if arr.size == 0:
        raise EvaluationError(f"{what} is empty: a metric needs at least one example.")
    return arr


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise EvaluationError(
            f"y_true and y_pred differ in length ({len(t)} vs {len(p)}): "
            "pass one prediction per example."
        )
    return t, p


def _check_n_classes(n_classes: Any) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise EvaluationError(f"n_classes must be an integer, not {n_classes!r}.")
    if n_classes < 1:
        raise EvaluationError(f"n_classes must be at least 1, not {n_classes}.")
    return int(n_classes)


def _class_indices(y: np.ndarray, n_classes: int, what: str) -> np.ndarray:
    """Check that ``y`` holds integer class indices in [0, n_classes) and return them as int."""
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise EvaluationError(f"{what} must hold integer class indices, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        raise EvaluationError(
            f"{what} holds {y[bad][0]}, outside the class range 0..{n_classes - 1}."
        )
    return y


def _probs_and_labels(
    probs: ArrayLike, y_true: ArrayLike, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"probs must be a numeric N x K matrix: {exc}") from exc
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise EvaluationError(f"probs must be a non-empty N x K matrix, got shape {p.shape}.")
    if not np.all(np.isfinite(p)):
        raise EvaluationError("probs contains NaN or infinite values.")
    if p.min() < 0.0 or p.max() > 1.0 + 1e-9:
        raise EvaluationError(
            "probs must hold probabilities in [0, 1] (did you pass log-probabilities? "
            "use a calibrator's predict_proba)."
        )
    y = _labels(y_true, "y_true")
    if len(y) != p.shape[0]:
        raise EvaluationError(
            f"probs has {p.shape[0]} rows but y_true has {len(y)} labels: they must match."
        )
    y = _class_indices(y, p.shape[1], "y_true")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise EvaluationError(f"n_bins must be a positive integer, not {n_bins!r}.")
    return p, y


# --------------------------------------------------------------------------- classification


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of examples whose prediction equals the label."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 = 2TP / (2TP + FP + FN).

    The average runs over the classes that occur in ``y_true`` or ``y_pred`` (as scikit-learn's
    ``f1_score(average="macro")``): a class absent from both is excluded; a class that occurs in
    ``y_true`` but is never predicted counts with F1 = 0. ``n_classes``, if given, only checks
    that the labels are class indices in [0, n_classes).
    """
    t, p = _pair(y_true, y_pred)
    if n_classes is not None:
        k = _check_n_classes(n_classes)
        t = _class_indices(t, k, "y_true")
        p = _class_indices(p, k, "y_pred")
    classes = np.union1d(np.unique(t), np.unique(p))
    f1s = []
    for c in classes:
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        f1s.append(2.0 * tp / (2.0 * tp + fp + fn))  # denominator > 0: c occurs somewhere
    return float(np.mean(f1s))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> np.ndarray:
    """K x K counts: entry [i, j] is the number of examples of class i predicted as j."""
    t, p = _pair(y_true, y_pred)
    k = _check_n_classes(n_classes)
    t = _class_indices(t, k, "y_true")
    p = _class_indices(p, k, "y_pred")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def label_distribution(y_pred: ArrayLike, n_classes: int) -> np.ndarray:
    """Fraction of predictions that fall on each class (length K, sums to 1).

    A calibrated classifier on a balanced task should predict each class about 1/K of the time;
    a prompt biased toward one label word shows up here first.
    """
    k = _check_n_classes(n_classes)
    p = _class_indices(_labels(y_pred, "y_pred"), k, "y_pred")
    return np.bincount(p, minlength=k) / len(p)


# --------------------------------------------------------------------------- calibration


def reliability_diagram(
    probs: ArrayLike, y_true: ArrayLike, n_bins: int = 10
) -> dict[str, np.ndarray]:
    """Per-bin confidence and accuracy of the top prediction, for a reliability plot.

    Confidence is the largest probability in each row; bins are ``n_bins`` equal-width intervals
    (0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1] (a confidence of exactly 0 goes in the first bin).

    Returns a dict of arrays: ``bin_edges`` (B+1), ``confidence`` (mean confidence per bin),
    ``accuracy`` (fraction correct per bin) — both NaN for empty bins — and ``count`` (B ints).
    """
    p, y = _probs_and_labels(probs, y_true, n_bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") over the inner edges puts a value equal to an edge in the bin
    # below it, i.e. bins are right-closed; values above 1 (rounding) land in the last bin.
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return {"bin_edges": edges, "confidence": mean_conf, "accuracy": mean_acc, "count": count}


def expected_calibration_error(probs: ArrayLike, y_true: ArrayLike, n_bins: int = 10) -> float:
    """ECE = sum over bins b of (n_b / N) * |acc(b) - conf(b)| (Guo et al., 2017).

    Uses the equal-width bins of :func:`reliability_diagram`; empty bins contribute nothing.
    """
    d = reliability_diagram(probs, y_true, n_bins)
    filled = d["count"] > 0
    weights = d["count"][filled] / d["count"].sum()
    return float(np.sum(weights * np.abs(d["accuracy"][filled] - d["confidence"][filled])))


# --------------------------------------------------------------------------- generation


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference after stripping surrounding whitespace."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise EvaluationError("predictions and references must be sequences of strings, not str.")
    preds, refs = list(predictions), list(references)
    if not preds or not refs:
        raise EvaluationError("predictions/references are empty: need at least one example.")
    if len(preds) != len(refs):
        raise EvaluationError(
            f"predictions and references differ in length ({len(preds)} vs {len(refs)})."
        )
    for what, seq in (("predictions", preds), ("references", refs)):
        bad = next((s for s in seq if not isinstance(s, str)), None)
        if bad is not None:
            raise EvaluationError(f"{what} must hold strings, found {type(bad).__name__}.")
    return float(np.mean([p.strip() == r.strip() for p, r in zip(preds, refs)]))
