"""FGM, the fast gradient method on embeddings (Miyato, Dai & Goodfellow, ICLR 2017,
"Adversarial Training Methods for Semi-Supervised Text Classification").

One step per batch::

    g     = d L(E[x] + 0) / d delta            # from the clean forward/backward
    r_adv = epsilon * g / ||g||_2               # per example
    grad  = grad_theta L(E[x]) + grad_theta L(E[x] + r_adv)

Both losses are backpropagated, so the update follows the sum of the clean and adversarial
gradients; the clean loss is what gets logged.
"""

from __future__ import annotations

from lmboost.training.adversarial.base import (
    AdversarialMethod,
    AdversarialStep,
    Backward,
    PerturbedBatch,
    normalize,
)


class FGM(AdversarialMethod):
    """Fast gradient method: one normalised gradient step of length ``epsilon``."""

    name = "fgm"
    constraints = {"epsilon": "positive"}

    def __init__(self, epsilon: float = 1.0) -> None:
        self.epsilon = epsilon

    def step(self, batch: PerturbedBatch, backward: Backward) -> AdversarialStep:
        """Clean forward/backward, then one on the embeddings plus r_adv."""
        delta = batch.zeros().requires_grad_(True)
        loss, _ = batch.forward(delta)
        backward(loss)
        r_adv = self.epsilon * normalize(delta.grad) * batch.mask
        adv_loss, _ = batch.forward(r_adv)
        backward(adv_loss)
        return AdversarialStep(loss.detach(), r_adv.detach())
