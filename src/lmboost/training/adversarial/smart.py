"""SMART, smoothness-inducing adversarial regularisation with Bregman proximal point
optimisation (Jiang et al., ACL 2020, "SMART: Robust and Efficient Fine-Tuning for Pre-trained
Natural Language Models through Principled Regularized Optimization").

Per batch, with f(x) the logits and l_s(p, q) = KL(p || q) + KL(q || p) (symmetric KL)::

    nu_0 ~ N(0, noise_std^2)                                         (padding stays 0)
    nu_t = Proj_{||.|| <= epsilon}(nu_{t-1} + step_size * g_t / ||g_t||),  t = 1..steps
           with g_t = d l_s(f(E[x] + nu_{t-1}), f(E[x]).detach()) / d nu
    R_s  = l_s(f(E[x] + nu_steps), f(E[x]))                          (smoothness regulariser)
    D    = l_s(f(E[x]), f_ema(E[x]))                                 (Bregman proximal term)
    loss = L(f(E[x]), y) + weight * R_s + mu * D

f_ema is a copy of the model whose parameters follow theta_ema <- beta theta_ema +
(1 - beta) theta after every optimizer step (the paper's momentum Bregman proximal point
method); it runs without dropout and costs one more copy of the model in memory. ``mu = 0``
(the default) turns the Bregman term off. Differences from the paper: the perturbation ball is
L2 per example (as for FGM, PGD and FreeLB) rather than l-infinity, hence the larger default
epsilon; the EMA copy starts again from the current weights when a run is resumed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lmboost.training.adversarial.base import (
    AdversarialMethod,
    AdversarialStep,
    Backward,
    PerturbedBatch,
    normalize,
    project,
    symmetric_kl,
)


class SMART(AdversarialMethod):
    """Smoothness-inducing regulariser (weight ``weight``) plus an optional Bregman proximal
    term (weight ``mu``) towards an EMA copy of the model (momentum ``beta``)."""

    name = "smart"
    constraints = {
        "weight": "non_negative", "epsilon": "positive", "step_size": "positive",
        "noise_std": "positive", "steps": "count", "mu": "non_negative", "beta": "fraction",
    }

    def __init__(
        self,
        weight: float = 1.0,
        epsilon: float = 1e-2,
        step_size: float = 1e-3,
        noise_std: float = 1e-5,
        steps: int = 1,
        mu: float = 0.0,
        beta: float = 0.99,
    ) -> None:
        self.weight = weight
        self.epsilon = epsilon
        self.step_size = step_size
        self.noise_std = noise_std
        self.steps = steps
        self.mu = mu
        self.beta = beta

    def prepare(self, model: nn.Module) -> None:
        """Start the EMA copy f_ema from ``model`` when the Bregman term is on."""
        if self.mu > 0:
            self.ema_ = copy.deepcopy(model).eval().requires_grad_(False)

    def on_optimizer_step(self, model: nn.Module) -> None:
        """theta_ema <- beta theta_ema + (1 - beta) theta, for the trainable parameters."""
        if self.mu <= 0:
            return
        with torch.no_grad():
            for ema, param in zip(self.ema_.parameters(), model.parameters()):
                if param.requires_grad:
                    ema.mul_(self.beta).add_(param.detach(), alpha=1 - self.beta)

    def step(self, batch: PerturbedBatch, backward: Backward) -> AdversarialStep:
        """Clean forward, the ascent on the noise, then one backward of the total loss."""
        if self.mu > 0 and not hasattr(self, "ema_"):
            raise RuntimeError("SMART with mu > 0 needs prepare(model) before the first step.")
        mask = batch.mask
        loss, logits = batch.forward(batch.zeros())
        noise = torch.randn_like(batch.zeros())
        noise = project(noise * self.noise_std * mask, self.epsilon)
        for _ in range(self.steps):
            noise = noise.detach().requires_grad_(True)
            _, adv_logits = batch.forward(noise)
            (grad,) = torch.autograd.grad(symmetric_kl(adv_logits, logits.detach(), mask), noise)
            noise = project(noise.detach() + self.step_size * normalize(grad) * mask, self.epsilon)
        _, adv_logits = batch.forward(noise.detach())
        total = loss + self.weight * symmetric_kl(adv_logits, logits, mask)
        if self.mu > 0:
            with torch.no_grad():
                _, ema_logits = batch.forward(batch.zeros(), model=self.ema_)
            total = total + self.mu * symmetric_kl(logits, ema_logits, mask)
        backward(total)
        return AdversarialStep(loss.detach(), noise.detach())
