"""The calibrator contract shared by every method (scikit-learn style).

Input everywhere is a score matrix ``X`` of shape N x K: row i holds the causal LM's label
log-probabilities log p(y_k | x_i, C) for the K labels (summed over each label word's tokens,
NOT normalised over the K labels). A calibrator works in one of two score spaces:

* ``"logprob"``: log-softmax over the K labels, log p(y | x, C) with sum_k p = 1;
* ``"prob"``: softmax over the K labels, p(y | x, C).

``fit`` learns from whatever the method ``needs`` (see :class:`Calibrator`), ``transform`` maps
scores to calibrated scores in the method's space (larger = more likely), ``predict_proba`` turns
those into rows that sum to 1 and ``predict`` takes the argmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from lmboost.errors import CalibrationError

SPACES = ("logprob", "prob")


def normalise(X: np.ndarray, space: str) -> np.ndarray:
    """Normalise label scores over the K labels (axis 1): log-softmax for ``"logprob"``,
    softmax for ``"prob"``."""
    if space == "logprob":
        return log_softmax(X, axis=1)
    if space == "prob":
        return softmax(X, axis=1)
    raise CalibrationError(f"Unknown score space {space!r}: use one of {', '.join(SPACES)}.")


def check_space(space: str) -> str:
    """Return ``space`` if it is a known score space, else raise CalibrationError."""
    if space not in SPACES:
        raise CalibrationError(f"space must be one of {', '.join(SPACES)}, not {space!r}.")
    return space


class Calibrator(BaseEstimator):
    """Base class: maps an N x K matrix of label log-probabilities to calibrated scores.

    Class attributes every method declares:
        name: registry name (``"bc"``, ``"cc"``, ...).
        space: ``"logprob"`` or ``"prob"``, the space ``transform`` returns scores in.
        needs: what ``fit`` must be given — ``"nothing"``, ``"test"`` (the unlabelled test
            scores), ``"content_free"`` (scores of content-free inputs in the same prompt),
            ``"domain_context"`` (scores of random in-domain word strings), ``"labelled"``
            (scores and gold labels of a small labelled set), ``"domain_premise"`` (each
            example's choice scores after the domain premise alone), ``"generated"`` (label
            scores after pseudo-inputs the model sampled), or, for the
            :class:`FeatureCalibrator` methods, ``"hidden_states"`` / ``"next_token"`` (the
            last hidden states / next-token distributions of the labelled and test prompts, and
            the labelled examples' gold labels).
        extra_forward_passes: the LM cost of obtaining what ``fit`` needs, in words.

    A scikit-learn estimator (:class:`sklearn.base.BaseEstimator`): ``__init__`` only stores its
    hyper-parameters, unchanged, under their own names (they are checked in ``fit``), and what
    ``fit`` learns ends with ``_``; ``n_classes_`` (K) is learned by every ``fit`` and marks the
    calibrator as fitted. So ``get_params``, ``set_params``, ``sklearn.base.clone`` (an unfitted
    copy with the same hyper-parameters) and the ``repr`` work as for any scikit-learn
    estimator. A method with ``needs = "nothing"`` can ``transform`` without ``fit``.
    """

    name: str = ""
    space: str = "logprob"
    needs: str = "nothing"
    extra_forward_passes: str = "0"

    # ------------------------------------------------------------------ fitted state

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted once a ``fit`` (or ``partial_fit``) has succeeded, which records
        ``n_classes_``; a method that needs nothing is always ready (as scikit-learn's stateless
        ``FunctionTransformer``)."""
        return self.needs == "nothing" or hasattr(self, "n_classes_")

    def _fit_hint(self) -> str:
        """What ``fit`` must be given, for the "not fitted" message."""
        return f"with {self.needs.replace('_', '-')} scores"

    def _check_fitted(self) -> None:
        """Raise CalibrationError ("call fit(...) first") unless
        :func:`sklearn.utils.validation.check_is_fitted` finds the calibrator fitted."""
        try:
            check_is_fitted(self)
        except NotFittedError as exc:
            raise CalibrationError(
                f"{type(self).__name__} is not fitted; call fit(...) first {self._fit_hint()}."
            ) from exc

    # ------------------------------------------------------------------ validation

    def _validate(self, X: ArrayLike, reset: bool) -> np.ndarray:
        """Check that ``X`` is a finite N x K float matrix with N >= 1, K >= 2 and return it.

        ``reset=True`` (in ``fit``) checks the matrix only; ``fit`` then records K as
        ``n_classes_`` once it has succeeded. ``reset=False`` (in ``transform``) also checks that
        the calibrator is fitted and that K matches ``n_classes_``.
        """
        who = type(self).__name__
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            msg = f"{who}: scores must be a numeric N x K matrix ({exc})."
            raise CalibrationError(msg) from exc
        if X.ndim != 2:
            raise CalibrationError(
                f"{who}: scores must be an N x K matrix (one row per example, one column per "
                f"label), got shape {X.shape}. For a single example pass X[None, :]."
            )
        n, k = X.shape
        if n < 1:
            raise CalibrationError(f"{who}: the score matrix has no rows; pass at least one.")
        if k < 2:
            raise CalibrationError(
                f"{who}: the score matrix has {k} column(s); calibration needs K >= 2 labels "
                "(one column per label)."
            )
        bad = ~np.isfinite(X)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise CalibrationError(
                f"{who}: scores contain {bad.sum()} non-finite value(s), first {X[i, j]} at row "
                f"{i}, label {j}. Scores must be finite log-probabilities; drop those rows or "
                "re-score them (a -inf means the scorer gave a label zero probability)."
            )
        if reset:
            return X
        self._check_fitted()
        fitted_k = getattr(self, "n_classes_", None)
        if fitted_k is None:  # a method that needs nothing, not fitted
            return X
        if k != fitted_k:
            raise CalibrationError(
                f"{who} was fitted on {fitted_k} labels but got scores with {k} columns: "
                "use the same label set (same order) for fit and transform."
            )
        return X

    # ------------------------------------------------------------------ estimator API

    def fit(self, X: ArrayLike, y: ArrayLike | None = None, **fit_params: Any) -> Calibrator:
        """Learn the calibration from what the method ``needs``; returns ``self``."""
        raise NotImplementedError

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Calibrated N x K scores in the method's ``space`` (larger = more likely)."""
        raise NotImplementedError

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Calibrated N x K probabilities, each row summing to 1.

        Log-space scores go through a softmax. Prob-space scores can be negative (e.g. BC's
        p - E[p]): negatives are clipped to 0 and each row renormalised; a row that is all
        zero after clipping becomes uniform (1/K each).
        """
        S = self.transform(X)
        if self.space == "logprob":
            return softmax(S, axis=1)
        S = np.clip(S, 0.0, None)
        total = S.sum(axis=1, keepdims=True)
        uniform = np.full_like(S, 1.0 / S.shape[1])
        return np.where(total > 0, S / np.where(total > 0, total, 1.0), uniform)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted label index per row: argmax of ``transform(X)`` (first label on ties)."""
        return np.argmax(self.transform(X), axis=1)

    def fit_predict(
        self, X: ArrayLike, y: ArrayLike | None = None, **fit_params: Any
    ) -> np.ndarray:
        """``fit(X, y, **fit_params).predict(X)``: the transductive use of methods that need the
        test scores (BC, PC)."""
        return self.fit(X, y, **fit_params).predict(X)


class FeatureCalibrator(Calibrator):
    """A calibrator that classifies per-example model features (hidden states, next-token
    distributions) instead of label scores, learned from labelled examples.

    ``fit(F, y, n_classes=K)`` takes the n x d features of the labelled examples' prompts and
    their label indices (K defaults to max(y) + 1); ``transform(F)`` maps the N x d features of
    test prompts to N x K calibrated scores in the method's ``space``. ``n_features_in_`` (d),
    ``n_classes_`` (K) and ``n_labelled_`` (n, the labelled-data budget spent) are learned.
    """

    #: What the features are, for messages ("hidden states", ...).
    features: str = "features"

    def _fit_hint(self) -> str:
        return f"with the {self.features} of labelled examples and their labels"

    def _validate_features(self, X: ArrayLike, reset: bool) -> np.ndarray:
        """Check that ``X`` is a finite n x d float matrix (n, d >= 1) and return it; with
        ``reset=False`` also that the calibrator is fitted and d equals ``n_features_in_``."""
        who = type(self).__name__
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"{who}: {self.features} must be numeric ({exc}).") from exc
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise CalibrationError(
                f"{who}: {self.features} must be an n x d matrix with at least one row and "
                f"column (one row per example), got shape {X.shape}."
            )
        if not np.isfinite(X).all():
            raise CalibrationError(f"{who}: {self.features} contain non-finite values.")
        if reset:
            return X
        self._check_fitted()
        fitted = self.n_features_in_
        if X.shape[1] != fitted:
            raise CalibrationError(
                f"{who} was fitted on {fitted}-dimensional {self.features} but got "
                f"{X.shape[1]} columns: use the same model for fit and transform."
            )
        return X

    def _check_labelled(
        self, X: ArrayLike, y: ArrayLike | None, n_classes: int | None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Validate the labelled features and labels; return (features, labels, K)."""
        who = type(self).__name__
        X = self._validate_features(X, reset=True)
        if y is None:
            raise CalibrationError(
                f"{who} needs gold labels: call fit(F_labelled, y) with y the label indices of "
                "F_labelled's rows."
            )
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise CalibrationError(
                f"y must hold one label per row of the {self.features} ({X.shape[0]}), got "
                f"shape {y.shape}."
            )
        if y.dtype.kind not in "iu" or y.min() < 0:
            raise CalibrationError("y must hold non-negative integer label indices.")
        k = int(y.max()) + 1 if n_classes is None else n_classes
        if k < 2 or y.max() >= k:
            raise CalibrationError(
                f"n_classes must be at least 2 and exceed every label in y, not {k}."
            )
        return X, y, k

    def _record_fit(self, X: np.ndarray, k: int) -> None:
        """Record ``n_features_in_``, ``n_classes_`` and ``n_labelled_`` once a fit succeeded."""
        self.n_features_in_ = X.shape[1]
        self.n_classes_ = k
        self.n_labelled_ = X.shape[0]
