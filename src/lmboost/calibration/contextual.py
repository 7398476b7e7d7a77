"""Contextual Calibration (CC; Zhao et al. 2021, "Calibrate Before Use", arXiv 2102.09690)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lmboost.calibration.base import Calibrator, normalise


class ContextualCalibration(Calibrator):
    """CC: divide out the label prior the prompt shows on content-free inputs.

    ``fit(X_cf)`` takes the M x K scores of content-free inputs ("N/A", "" and "[MASK]") put in
    the same prompt as the test inputs and estimates

        p_cf = (1/M) sum_m softmax(X_cf[m])                                  (``prior_``)

    ``transform`` applies the paper's affine map q = W p + b with W = diag(p_cf)^-1, b = 0 to
    p = softmax(X) and renormalises each row: q_k = (p_k / p_cf,k) / sum_j (p_j / p_cf,j).
    """

    name = "cc"
    space = "prob"
    needs = "content_free"
    extra_forward_passes = "3 per prompt"

    def fit(
        self, X: ArrayLike, y: ArrayLike | None = None, **fit_params: Any
    ) -> ContextualCalibration:
        """Estimate ``prior_`` (p_cf, length K) from the content-free scores ``X`` (M x K)."""
        X = self._validate(X, reset=True)
        self.prior_ = normalise(X, "prob").mean(axis=0)
        self.n_classes_ = X.shape[1]
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """softmax(X) / p_cf, renormalised so that each row sums to 1."""
        q = normalise(self._validate(X, reset=False), "prob") / self.prior_
        return q / q.sum(axis=1, keepdims=True)
