"""kNN prompting (Xu et al., ICLR 2023, "kNN Prompting: Beyond-Context Learning with
Calibration-Free Nearest Neighbor Inference", openreview fe2S7736sNS)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_softmax

from lmboost.calibration.base import FeatureCalibrator
from lmboost.errors import CalibrationError


class KNNPrompting(FeatureCalibrator):
    """k nearest labelled anchors by the KL divergence of next-token distributions.

    The features of a prompt are the LM's next-token distribution over the whole vocabulary at
    the answer position, p = softmax(logits). ``fit(L, y, n_classes=K)`` stores the labelled
    examples' distributions as anchors (their prompts: the same demonstrations, the example as
    the query). A test prompt with distribution q is compared with every anchor a by

        d(a, q) = KL(p_a || q) = sum_v p_a(v) (log p_a(v) - log q(v)),

    the direction of the paper's code (which averages over the vocabulary instead of summing:
    the same order). Its label is the majority among the ``k`` nearest anchors (all anchors when
    fewer than k); ``transform`` returns the vote fractions (``space = "prob"``), so ``predict``
    breaks a tied vote towards the lower label index, and equally distant anchors are taken in
    their order in the labelled set. The paper's experiments use k = 3.

    Inputs are log-probabilities (or logits): they are log-softmax-normalised over the
    vocabulary before use.
    """

    name = "knn"
    space = "prob"
    needs = "next_token"
    extra_forward_passes = (
        "one per eval and labelled example (their prompts' next-token distributions)"
    )
    features = "next-token log-probabilities"

    def __init__(self, k: int = 3) -> None:
        self.k = k

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike | None = None,
        n_classes: int | None = None,
        **fit_params: Any,
    ) -> KNNPrompting:
        """Store the anchors (``anchors_``: normalised log-probabilities, ``anchor_labels_``)
        from the labelled next-token log-probabilities ``X`` (n x V) and labels ``y``; other
        keyword arguments are ignored."""
        if not (isinstance(self.k, (int, np.integer)) and not isinstance(self.k, bool)
                and self.k >= 1):
            raise CalibrationError(f"k must be a positive integer, not {self.k!r}.")
        A, y, k = self._check_labelled(X, y, n_classes)
        self.anchors_ = log_softmax(A, axis=1)
        self.anchor_labels_ = y
        self._record_fit(A, k)
        return self

    def distances(self, X: ArrayLike) -> np.ndarray:
        """N x n matrix of KL(anchor_j || q_i) for the test log-probabilities ``X`` (N x V)."""
        Q = log_softmax(self._validate_features(X, reset=False), axis=1)
        P = np.exp(self.anchors_)
        return np.sum(P * self.anchors_, axis=1)[None, :] - Q @ P.T

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The fraction of the k nearest anchors of each test row that carry each label."""
        D = self.distances(X)
        k = min(self.k, D.shape[1])
        nearest = np.argsort(D, axis=1, kind="stable")[:, :k]
        votes = np.zeros((D.shape[0], self.n_classes_))
        np.add.at(votes, (np.arange(D.shape[0])[:, None], self.anchor_labels_[nearest]), 1.0)
        return votes / k
