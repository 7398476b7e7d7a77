"""Hidden Calibration (Cho et al. 2024, "Token-based Decision Criteria Are Suboptimal in
In-context Learning", arXiv 2406.16535; NAACL 2025)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_softmax

from lmboost.calibration.base import FeatureCalibrator
from lmboost.errors import CalibrationError


class HiddenCalibration(FeatureCalibrator):
    """Nearest-centroid classification of the prompt's last hidden state, no label tokens.

    ``fit(H, y, n_classes=K)`` takes the last hidden states h_i (n x d) of labelled examples'
    prompts (the same demonstrations, the example as the query, at the answer position) and
    computes one centroid per label, c_k = mean of the h_i with y_i = k (``centroids_``, one row
    per label in ``classes_``). A test prompt gets the label of the nearest centroid in
    Euclidean distance, as in the paper.

    The paper only predicts. For probabilities, the centroids are read as the means of Gaussians
    with one shared isotropic variance, the pooled within-class variance
    sigma^2 = sum_i ||h_i - c_{y_i}||^2 / (n d) (``variance_``), and equal priors:
    log p(k | h) = log-softmax_k(-||h - c_k||^2 / (2 sigma^2)); the argmax is the nearest
    centroid. A label with no labelled example has no centroid and log-probability -inf.
    """

    name = "hidden"
    space = "logprob"
    needs = "hidden_states"
    extra_forward_passes = "one per eval and labelled example (their prompts' hidden states)"
    features = "hidden states"

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike | None = None,
        n_classes: int | None = None,
        **fit_params: Any,
    ) -> HiddenCalibration:
        """Learn ``classes_``, ``centroids_`` and ``variance_`` from the labelled hidden states
        ``X`` (n x d) and labels ``y``; other keyword arguments are ignored."""
        H, y, k = self._check_labelled(X, y, n_classes)
        classes = np.unique(y)
        centroids = np.stack([H[y == c].mean(axis=0) for c in classes])
        residual = H - centroids[np.searchsorted(classes, y)]
        variance = float(np.sum(residual**2) / H.size)
        if variance <= 0.0:
            raise CalibrationError(
                "HiddenCalibration: the labelled hidden states of each label coincide, so "
                "there is no spread to scale distances by; give more (distinct) labelled "
                "examples."
            )
        self.classes_, self.centroids_, self.variance_ = classes, centroids, variance
        self._record_fit(H, k)
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """log p(label | h): log-softmax of -||h - c_k||^2 / (2 variance_) over the labels."""
        H = self._validate_features(X, reset=False)
        squared = np.stack([np.sum((H - c) ** 2, axis=1) for c in self.centroids_], axis=1)
        out = np.full((H.shape[0], self.n_classes_), -np.inf)
        out[:, self.classes_] = log_softmax(-squared / (2.0 * self.variance_), axis=1)
        return out
