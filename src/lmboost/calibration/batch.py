"""Batch Calibration (BC; Zhou et al., ICLR 2024, "Batch Calibration: Rethinking Calibration for
In-Context Learning and Prompt Engineering", arXiv 2309.17249), offline and streaming."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lmboost.calibration.base import Calibrator, check_space, normalise
from lmboost.errors import CalibrationError


class BatchCalibration(Calibrator):
    """BC: subtract the contextual prior estimated as the mean score over the test batch.

    With p(y | x_i, C) the LM's label distribution for test input x_i under prompt C, BC
    estimates the contextual prior from the N unlabelled test inputs themselves,

        p^(y | C) = E_x[p(y | x, C)] ~ (1/N) sum_i p(y | x_i, C)           (``mean_``)

    and predicts with p_BC(y | x_i, C) = p(y | x_i, C) - p^(y | C). Zero extra forward passes.

    ``space="logprob"`` (default) does this with log p: transform = log-softmax(X) - mean_;
    ``space="prob"`` with p: transform = softmax(X) - mean_ (then ``predict_proba`` clips
    negatives, see :meth:`Calibrator.predict_proba`).
    """

    name = "bc"
    space = "logprob"  # default; the ``space`` hyper-parameter overrides it per instance
    needs = "test"
    extra_forward_passes = "0"

    def __init__(self, space: str = "logprob") -> None:
        self.space = space

    def fit(self, X: ArrayLike, y: ArrayLike | None = None, **fit_params: Any) -> BatchCalibration:
        """Estimate ``mean_`` (length K) = column mean of the normalised test scores ``X``."""
        X = self._validate(X, reset=True)
        self.mean_ = normalise(X, check_space(self.space)).mean(axis=0)
        self.n_classes_ = X.shape[1]
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """normalise(X) - mean_."""
        return normalise(self._validate(X, reset=False), self.space) - self.mean_


class StreamingBatchCalibration(BatchCalibration):
    """BC for a stream of test batches: a running estimate of p^(y | C), like scikit-learn's
    online estimators (``partial_fit``).

    After batches B_1..B_t, ``mean_`` is

    * ``momentum=None`` (default): the cumulative mean over all ``n_seen_`` rows seen so far,
      which equals the offline :class:`BatchCalibration` mean over their union;
    * ``momentum=m`` in [0, 1): an exponential moving average of the batch means,
      mean_ <- m * mean_ + (1 - m) * mean(B_t), started at mean(B_1); it tracks a drifting
      prior but never settles exactly on the offline mean.

    ``fit(X)`` resets the estimate and calls ``partial_fit(X)``; ``transform`` uses the current
    estimate and never changes it.

    The first batches: the usual protocol is ``partial_fit(batch)`` then ``transform(batch)``,
    so each row s_i = normalise(x_i) is calibrated with an estimate that contains s_i itself.
    With the cumulative mean over n = ``n_seen_`` rows,

        s_i - mean_ = ((n - 1) / n) * (s_i - mean of the other n - 1 rows),

    i.e. the prediction is BC with the prior estimated from the *other* n - 1 rows only (in
    log-prob space ``predict_proba`` is also flattened, a softmax at temperature n / (n - 1)).
    Hence: with a first batch of one
    row (n = 1) its calibrated scores are all exactly 0, every label ties, ``predict`` returns
    label 0 (argmax takes the first) and ``predict_proba`` is uniform, whatever the model said.
    With n = 2 the two rows get calibrated scores v and -v, so they always get different
    labels (argmax v != argmin v) unless all K scores tie. For small n the prior is an average
    of few rows, with an error of order (spread of the scores) / sqrt(n - 1), so early
    predictions are unreliable. Warm up before trusting predictions: ``partial_fit`` a few
    batches (tens of rows or more) of unlabelled in-domain inputs first, or start from an
    offline estimate with ``fit(X_warmup)`` and continue with ``partial_fit``.
    Calling ``transform`` before any ``partial_fit``/``fit`` raises CalibrationError.
    """

    def __init__(self, space: str = "logprob", momentum: float | None = None) -> None:
        self.space = space
        self.momentum = momentum

    def fit(
        self, X: ArrayLike, y: ArrayLike | None = None, **fit_params: Any
    ) -> StreamingBatchCalibration:
        """Forget the running estimate and start it from the batch ``X``."""
        for attr in ("mean_", "n_seen_", "n_classes_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(X)

    def partial_fit(
        self, X: ArrayLike, y: ArrayLike | None = None, **fit_params: Any
    ) -> StreamingBatchCalibration:
        """Update ``mean_`` and ``n_seen_`` with one more batch ``X`` (b x K)."""
        first = not hasattr(self, "mean_")
        X = self._validate(X, reset=first)
        if self.momentum is not None and not 0.0 <= self.momentum < 1.0:
            raise CalibrationError(
                f"momentum must be None (cumulative mean) or in [0, 1), not {self.momentum!r}."
            )
        batch_mean = normalise(X, check_space(self.space)).mean(axis=0)
        b = X.shape[0]
        if first:
            self.mean_, self.n_seen_, self.n_classes_ = batch_mean, b, X.shape[1]
        elif self.momentum is None:
            self.n_seen_ += b
            self.mean_ = self.mean_ + (b / self.n_seen_) * (batch_mean - self.mean_)
        else:
            self.n_seen_ += b
            self.mean_ = self.momentum * self.mean_ + (1.0 - self.momentum) * batch_mean
        return self
