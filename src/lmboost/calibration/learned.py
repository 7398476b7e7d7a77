"""Batch Calibration with a learned strength (BCL; Zhou et al., ICLR 2024, arXiv 2309.17249)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lmboost.calibration.base import Calibrator, check_space, normalise
from lmboost.errors import CalibrationError
from lmboost.evaluation import accuracy, macro_f1

DEFAULT_GAMMAS = np.linspace(-5.0, 5.0, 41)  # the paper's search range, step 0.25
CRITERIA = {"accuracy": accuracy, "macro_f1": macro_f1}


class BatchCalibrationLearned(Calibrator):
    """BCL: BC with the strength of the prior subtraction tuned on a few labelled examples,

        p_BCL(y | x, C) = p(y | x, C) - gamma * p^(y | C),   p^(y | C) = E_x[p(y | x, C)],

    gamma = 1 is plain BC and gamma = 0 no calibration. ``fit`` grid-searches gamma over
    ``gammas`` (default: -5 to 5 in steps of 0.25), scoring the argmax predictions of the
    labelled set with ``criterion`` (``"accuracy"`` or ``"macro_f1"``). Ties go to the gamma
    closest to 1 (plain BC), then to the smaller |gamma|. ``space`` is as in
    :class:`~lmboost.calibration.batch.BatchCalibration`.
    """

    name = "bcl"
    space = "logprob"  # default; the ``space`` hyper-parameter overrides it per instance
    needs = "labelled"
    extra_forward_passes = "one per labelled example"

    def __init__(
        self,
        gammas: Sequence[float] | None = None,
        criterion: str = "accuracy",
        space: str = "logprob",
    ) -> None:
        self.gammas = gammas
        self.criterion = criterion
        self.space = space

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike | None = None,
        X_unlabelled: ArrayLike | None = None,
        **fit_params: Any,
    ) -> BatchCalibrationLearned:
        """Learn ``prior_`` and ``gamma_`` from the labelled scores ``X`` (n x K) and labels ``y``.

        ``prior_`` (p^(y | C)) is the column mean of the normalised ``X_unlabelled`` (the
        unlabelled test scores) if given, else of ``X``. ``gammas_`` and ``search_scores_`` hold
        the searched grid and the criterion at each gamma; ``gamma_`` is the chosen strength;
        ``n_labelled_`` records the labelled-data budget spent (n).
        """
        X = self._validate(X, reset=True)
        if y is None:
            raise CalibrationError(
                "BatchCalibrationLearned needs gold labels: call fit(X_labelled, y, "
                "X_unlabelled=X_test) with y the label indices of X_labelled's rows."
            )
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise CalibrationError(
                f"y must hold one label per row of X ({X.shape[0]}), got shape {y.shape}."
            )
        if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= X.shape[1]:
            raise CalibrationError(
                f"y must hold label indices 0..{X.shape[1] - 1} (one per column of X)."
            )
        if self.criterion not in CRITERIA:
            raise CalibrationError(
                f"criterion must be one of {', '.join(CRITERIA)}, not {self.criterion!r}."
            )
        space = check_space(self.space)
        gammas = np.asarray(DEFAULT_GAMMAS if self.gammas is None else self.gammas, dtype=float)
        if gammas.ndim != 1 or gammas.size == 0 or not np.all(np.isfinite(gammas)):
            raise CalibrationError("gammas must be a non-empty 1-D sequence of finite numbers.")

        S = normalise(X, space)
        if X_unlabelled is None:
            self.prior_ = S.mean(axis=0)
        else:
            U = self._validate(X_unlabelled, reset=True)
            if U.shape[1] != X.shape[1]:
                raise CalibrationError(
                    f"X_unlabelled has {U.shape[1]} labels but X has {X.shape[1]}: use the "
                    "same label set for both."
                )
            self.prior_ = normalise(U, space).mean(axis=0)

        score = CRITERIA[self.criterion]
        self.search_scores_ = np.array(
            [score(y, np.argmax(S - g * self.prior_, axis=1)) for g in gammas]
        )
        best = np.flatnonzero(self.search_scores_ >= self.search_scores_.max() - 1e-12)
        self.gamma_ = float(min(gammas[best], key=lambda g: (abs(g - 1.0), abs(g))))
        self.gammas_ = gammas
        self.n_labelled_ = X.shape[0]
        self.n_classes_ = X.shape[1]
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """normalise(X) - gamma_ * prior_."""
        return normalise(self._validate(X, reset=False), self.space) - self.gamma_ * self.prior_
