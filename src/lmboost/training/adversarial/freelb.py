"""FreeLB, "free" large-batch adversarial training (Zhu et al., ICLR 2020, "FreeLB: Enhanced
Adversarial Training for Natural Language Understanding").

Per batch, K ascent steps whose parameter gradients are all kept::

    delta_0 = U(-1, 1) * init_mag / sqrt(T_i * H)   (0 when init_mag = 0; padding stays 0)
    for t = 1..K:
        backward( L(E[x] + delta_{t-1}) / K )        # accumulates (1/K) grad_theta L
        if t < K:
            delta_t = Proj_{||.|| <= epsilon}(delta_{t-1} + alpha * g_t / ||g_t||)
    grad = (1/K) sum_{t=1..K} grad_theta L(E[x] + delta_{t-1})

with g_t the gradient of the t-th loss with respect to the perturbation, so the update follows
the average of the K gradients. With ``init_mag = 0`` the first of the K passes is the clean
one. The logged loss is the mean of the K losses; the returned perturbation is delta_{K-1}, the
last one used.
"""

from __future__ import annotations

import torch

from lmboost.training.adversarial.base import (
    AdversarialMethod,
    AdversarialStep,
    Backward,
    PerturbedBatch,
    normalize,
    project,
)


class FreeLB(AdversarialMethod):
    """K ascent steps of size ``alpha`` in the ``epsilon`` ball, gradients averaged over them."""

    name = "freelb"
    constraints = {
        "epsilon": "positive", "alpha": "positive", "steps": "count", "init_mag": "non_negative",
    }

    def __init__(
        self, epsilon: float = 1.0, alpha: float = 0.1, steps: int = 3, init_mag: float = 0.0
    ) -> None:
        self.epsilon = epsilon
        self.alpha = alpha
        self.steps = steps
        self.init_mag = init_mag

    def step(self, batch: PerturbedBatch, backward: Backward) -> AdversarialStep:
        """K forward/backward passes at delta_0 .. delta_{K-1}, each loss divided by K."""
        mask = batch.mask
        delta = batch.zeros()
        if self.init_mag > 0:
            size = mask.sum(dim=(1, 2), keepdim=True) * delta.shape[-1]
            delta = torch.empty_like(delta).uniform_(-1, 1) * mask * self.init_mag / size.sqrt()
            delta = project(delta, self.epsilon)
        total = torch.zeros((), device=delta.device)
        for t in range(self.steps):
            delta = delta.detach().requires_grad_(True)
            loss, _ = batch.forward(delta)
            backward(loss / self.steps)
            total = total + loss.detach()
            if t < self.steps - 1:
                ascent = self.alpha * normalize(delta.grad) * mask
                delta = project(delta.detach() + ascent, self.epsilon)
        return AdversarialStep(total / self.steps, delta.detach())
