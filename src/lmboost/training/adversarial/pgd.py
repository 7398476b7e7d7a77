"""PGD, projected gradient descent on embeddings (Madry et al., ICLR 2018, "Towards Deep
Learning Models Resistant to Adversarial Attacks"; the K-step variant used as a baseline by
FreeLB).

Per batch, after the clean forward/backward::

    delta_0 = 0
    delta_t = Proj_{||.|| <= epsilon}(delta_{t-1} + alpha * g_{t-1} / ||g_{t-1}||),  t = 1..K
    grad    = grad_theta L(E[x]) + grad_theta L(E[x] + delta_K)

where g_0 is the gradient of the clean loss and g_t that of L(E[x] + delta_t) with respect to
the perturbation only (the K - 1 intermediate passes leave the parameter gradients alone).
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


class PGD(AdversarialMethod):
    """K ascent steps of size ``alpha`` projected onto the L2 ball of radius ``epsilon``."""

    name = "pgd"
    constraints = {"epsilon": "positive", "alpha": "positive", "steps": "count"}

    def __init__(self, epsilon: float = 1.0, alpha: float = 0.3, steps: int = 3) -> None:
        self.epsilon = epsilon
        self.alpha = alpha
        self.steps = steps

    def step(self, batch: PerturbedBatch, backward: Backward) -> AdversarialStep:
        """Clean forward/backward, K projected ascent steps, then the adversarial backward."""
        probe = batch.zeros().requires_grad_(True)
        loss, _ = batch.forward(probe)
        backward(loss)
        grad = probe.grad
        delta = batch.zeros()
        for t in range(self.steps):
            delta = project(delta + self.alpha * normalize(grad) * batch.mask, self.epsilon)
            if t < self.steps - 1:
                probe = delta.detach().requires_grad_(True)
                adv_loss, _ = batch.forward(probe)
                (grad,) = torch.autograd.grad(adv_loss, probe)
        adv_loss, _ = batch.forward(delta.detach())
        backward(adv_loss)
        return AdversarialStep(loss.detach(), delta.detach())
