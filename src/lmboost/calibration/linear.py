"""Linear probe calibration (LinC; Abbas et al., AISTATS 2024, "Enhancing In-context Learning
via Linear Probe Calibration", arXiv 2401.12406)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import log_softmax

from lmboost.calibration.base import Calibrator, normalise
from lmboost.errors import CalibrationError


class LinearProbeCalibration(Calibrator):
    """LinC: an affine map of the label probabilities learned on a few labelled examples,

        q(y | x) = softmax(W p + b),   p = softmax(X[x]) (the LM's label probabilities),

    with W (K x K) and b (length K) minimising the mean cross-entropy on the n labelled rows
    plus an L2 pull towards the identity map,

        L(W, b) = -(1/n) sum_i log q(y_i | x_i) + (reg / 2) (||W - I||_F^2 + ||b||^2).

    The penalty makes the optimum unique (p sums to 1, so W p + b = (W + b 1^T) p and W, b are
    not identifiable on their own) and keeps a fit on five examples from running off to
    infinity on separable data. ``fit`` finds the optimum with L-BFGS (exact gradients) from
    W = I, b = 0, where q = p. The paper's code instead takes ``epochs`` passes of per-example
    SGD from CC's W = diag(p_cf)^-1; the regularised optimum needs no content-free scores, no
    learning rate and no epoch count, and does not depend on the order of the examples.
    ``transform`` returns log q (``space = "logprob"``).
    """

    name = "linc"
    space = "logprob"
    needs = "labelled"
    extra_forward_passes = "one per labelled example"

    def __init__(self, reg: float = 0.01, max_iter: int = 500) -> None:
        self.reg = reg
        self.max_iter = max_iter

    def fit(
        self, X: ArrayLike, y: ArrayLike | None = None, **fit_params: Any
    ) -> LinearProbeCalibration:
        """Learn ``W_`` (K x K) and ``b_`` (K) from the labelled scores ``X`` (n x K) and their
        label indices ``y``; ``n_labelled_`` records the labelled-data budget spent (n).

        Other keyword arguments (e.g. ``X_unlabelled``, which BCL uses) are accepted and ignored.
        """
        X = self._validate(X, reset=True)
        n, k = X.shape
        if y is None:
            raise CalibrationError(
                "LinearProbeCalibration needs gold labels: call fit(X_labelled, y) with y the "
                "label indices of X_labelled's rows."
            )
        y = np.asarray(y)
        if y.shape != (n,):
            raise CalibrationError(
                f"y must hold one label per row of X ({n}), got shape {y.shape}."
            )
        if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= k:
            raise CalibrationError(f"y must hold label indices 0..{k - 1} (one per column of X).")
        if not (isinstance(self.reg, (int, float)) and self.reg > 0):
            raise CalibrationError(f"reg must be a positive number, not {self.reg!r}.")

        P = normalise(X, "prob")
        onehot = np.eye(k)[y]
        eye = np.eye(k)

        def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            W, b = theta[: k * k].reshape(k, k), theta[k * k :]
            logq = log_softmax(P @ W.T + b, axis=1)
            loss = -np.sum(onehot * logq) / n
            loss += 0.5 * self.reg * (np.sum((W - eye) ** 2) + np.sum(b**2))
            residual = (np.exp(logq) - onehot) / n  # dL/dz for z = W p + b
            grad_W = residual.T @ P + self.reg * (W - eye)
            grad_b = residual.sum(axis=0) + self.reg * b
            return loss, np.concatenate([grad_W.ravel(), grad_b])

        start = np.concatenate([eye.ravel(), np.zeros(k)])
        result = minimize(
            loss_and_grad, start, jac=True, method="L-BFGS-B",
            options={"maxiter": self.max_iter, "gtol": 1e-10, "ftol": 1e-15},
        )
        self.W_ = result.x[: k * k].reshape(k, k)
        self.b_ = result.x[k * k :]
        self.loss_ = float(result.fun)
        self.n_labelled_ = n
        self.n_classes_ = k
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """log softmax(W_ p + b_) with p = softmax(X)."""
        P = normalise(self._validate(X, reset=False), "prob")
        return log_softmax(P @ self.W_.T + self.b_, axis=1)
