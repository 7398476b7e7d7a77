"""Prototypical Calibration (PC; Han et al. 2022, "Prototypical Calibration for Few-shot Learning
of Language Models", arXiv 2205.10183)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from sklearn.mixture import GaussianMixture

from lmboost.calibration.base import Calibrator, normalise
from lmboost.errors import CalibrationError


class PrototypicalCalibration(Calibrator):
    """PC: cluster the test scores with a K-component Gaussian mixture, one cluster per label.

    ``fit(X_test)`` fits a GMM, p(s) = sum_c pi_c N(s; mu_c, Sigma_c), to the log-softmax scores
    s_i = log p(. | x_i, C) of the N unlabelled test inputs (N >= K). Each cluster c is then
    assigned one label k by Hungarian matching (``scipy.optimize.linear_sum_assignment``),
    maximising sum_c mu_c[k(c)], the clusters' mean log-probability of their assigned labels.
    ``transform`` = ``predict_proba`` = the GMM posterior p(c | s) with columns re-ordered from
    clusters to labels.

    Degeneracy: every log-softmax row satisfies sum_k exp(s_k) = 1, so the points lie on a
    (K-1)-dimensional surface and each component's K x K covariance is nearly singular across
    it. We keep all K coordinates, so that no label is singled out (dropping one coordinate
    would make the clusters' shapes depend on which label was dropped), and rely on
    ``reg_covar`` (added to every covariance's diagonal) to keep the fit well-posed; raise it
    (e.g. 1e-4) if the fit warns about ill-defined covariances.
    """

    name = "pc"
    space = "prob"
    needs = "test"
    extra_forward_passes = "0"

    def __init__(
        self,
        n_init: int = 5,
        reg_covar: float = 1e-6,
        covariance_type: str = "full",
        random_state: int = 0,
    ) -> None:
        self.n_init = n_init
        self.reg_covar = reg_covar
        self.covariance_type = covariance_type
        self.random_state = random_state

    def fit(
        self, X: ArrayLike, y: ArrayLike | None = None, **fit_params: Any
    ) -> PrototypicalCalibration:
        """Fit ``gmm_`` on the test scores ``X`` (N x K, N >= K) and the matching
        ``cluster_to_label_`` (``cluster_to_label_[c]`` = label of cluster c)."""
        X = self._validate(X, reset=True)
        n, k = X.shape
        if n < k:
            raise CalibrationError(
                f"PrototypicalCalibration fits a {k}-component mixture, one per label, and "
                f"needs at least {k} test rows, got {n}: calibrate a larger batch of test inputs."
            )
        S = normalise(X, "logprob")
        self.gmm_ = GaussianMixture(
            n_components=k,
            covariance_type=self.covariance_type,
            n_init=self.n_init,
            reg_covar=self.reg_covar,
            random_state=self.random_state,
        ).fit(S)
        # means_[c, k] = cluster c's mean log p(y_k). For a square matrix the matched rows come
        # back as 0..K-1, so the matched columns are the labels of clusters 0..K-1.
        _, self.cluster_to_label_ = linear_sum_assignment(self.gmm_.means_, maximize=True)
        self.n_classes_ = k
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The GMM posterior p(cluster | x) re-ordered to labels (rows sum to 1)."""
        X = self._validate(X, reset=False)
        posterior = self.gmm_.predict_proba(normalise(X, "logprob"))
        out = np.empty_like(posterior)
        out[:, self.cluster_to_label_] = posterior
        return out
