"""Domain-conditional PMI (Holtzman et al., EMNLP 2021, "Surface Form Competition: Why the
Highest Probability Answer Isn't Always Right", arXiv 2104.08315)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_softmax

from lmboost.calibration.base import Calibrator
from lmboost.errors import CalibrationError


class DomainPremisePMI(Calibrator):
    """PMI_DC: score each choice by how much the example raises its probability over what the
    task's answer format alone gives it,

        score(y | x) = log P(y | prompt(x)) - log P(y | domain premise),

    the domain premise being the answer-introducing text without the example (e.g.
    "Sentiment:" or COPA's "because"). This removes surface-form competition: a choice that is
    likely whatever the question (a short or frequent string) no longer wins for that reason.

    ``fit(X_premise)`` takes the domain-premise scores, one row per test example (choices that
    differ per example, as in COPA, have their own premise scores) or a single row shared by
    every example (one label word set); ``transform(X)`` returns log-softmax(X - X_premise) over
    the choices, row by row. Both matrices hold total log-probabilities of the choices' tokens.
    """

    name = "pmi"
    space = "logprob"
    needs = "domain_premise"
    extra_forward_passes = "one per distinct domain premise (1 per prompt with shared choices)"

    def fit(self, X: ArrayLike, y: ArrayLike | None = None, **fit_params: Any) -> DomainPremisePMI:
        """Keep the domain-premise scores ``X`` (1 x K, or one row per test example) as
        ``premise_``."""
        X = self._validate(X, reset=True)
        self.premise_ = X
        self.n_classes_ = X.shape[1]
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """log-softmax(X - premise_) over the choices (``premise_`` row i for row i, or its one
        row for every row)."""
        X = self._validate(X, reset=False)
        rows = self.premise_.shape[0]
        if rows not in (1, X.shape[0]):
            raise CalibrationError(
                f"DomainPremisePMI was fitted on {rows} domain-premise rows, one per test "
                f"example, but got {X.shape[0]} test rows: fit on the premise scores of these "
                "examples (or on a single shared row)."
            )
        return log_softmax(X - self.premise_, axis=1)
