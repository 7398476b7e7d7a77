"""No calibration: the LM's label scores, only normalised over the K labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lmboost.calibration.base import Calibrator, normalise


class NoCalibration(Calibrator):
    """The uncalibrated baseline: log p(y | x, C) = log-softmax of the label scores.

    ``fit`` is optional (it only records K); ``transform`` works without it.
    """

    name = "none"
    space = "logprob"
    needs = "nothing"
    extra_forward_passes = "0"

    def fit(
        self, X: ArrayLike | None = None, y: ArrayLike | None = None, **fit_params: Any
    ) -> NoCalibration:
        """Nothing to learn; if ``X`` is given, check it and record K as ``n_classes_``."""
        if X is not None:
            self.n_classes_ = self._validate(X, reset=True).shape[1]
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """log-softmax(X) over the labels."""
        return normalise(self._validate(X, reset=False), "logprob")
