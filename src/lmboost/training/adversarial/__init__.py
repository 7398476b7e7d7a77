"""Adversarial training on input embeddings, one module per method.

======  ============================================  =======================================
name    method                                        parameters (defaults)
======  ============================================  =======================================
fgm     one normalised gradient step (Miyato 2017)   epsilon (1.0)
pgd     K projected ascent steps (Madry 2018)         epsilon (1.0), alpha (0.3), steps (3)
freelb  K ascent steps, gradients averaged (Zhu 2020) epsilon (1.0), alpha (0.1), steps (3),
                                                      init_mag (0)
smart   smoothness regulariser + Bregman proximal     weight (1), epsilon (1e-2), step_size
        point (Jiang 2020)                            (1e-3), noise_std (1e-5), steps (1),
                                                      mu (0), beta (0.99)
======  ============================================  =======================================

Each method is an :class:`AdversarialMethod` whose ``step(batch, backward)`` replaces the
forward/backward of one training batch (``lmboost.training.trainer.LmboostTrainer`` calls it
from ``training_step``); it works on ``inputs_embeds``, so it applies equally to full and LoRA
training and to every recipe. :data:`ADVERSARIES` maps names to classes; :func:`get_adversary`
builds one with checked parameters.
"""

from __future__ import annotations

from typing import Any

from lmboost.errors import RecipeError
from lmboost.training.adversarial.base import (
    AdversarialMethod,
    AdversarialStep,
    PerturbedBatch,
    normalize,
    per_example_norm,
    project,
    symmetric_kl,
)
from lmboost.training.adversarial.fgm import FGM
from lmboost.training.adversarial.freelb import FreeLB
from lmboost.training.adversarial.pgd import PGD
from lmboost.training.adversarial.smart import SMART

ADVERSARIES: dict[str, type[AdversarialMethod]] = {
    cls.name: cls for cls in (FGM, PGD, FreeLB, SMART)
}


def get_adversary(name: str, **params: Any) -> AdversarialMethod:
    """A new method registered as ``name`` (case-insensitive) with ``params``; LmboostError
    naming the unknown method, unknown parameter or out-of-range value."""
    cls = ADVERSARIES.get(name.strip().lower())
    if cls is None:
        raise RecipeError(
            f"Unknown adversarial method {name!r}; choose one of: {', '.join(ADVERSARIES)}."
        )
    accepted = cls().get_params()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise RecipeError(
            f"Unknown parameter(s) {', '.join(f'adversarial.{k}' for k in unknown)} for "
            f"{cls.name}; it accepts: {', '.join(accepted)}."
        )
    method = cls(**params)
    method.check_params()
    return method


__all__ = [
    "ADVERSARIES",
    "FGM",
    "PGD",
    "SMART",
    "AdversarialMethod",
    "AdversarialStep",
    "FreeLB",
    "PerturbedBatch",
    "get_adversary",
    "normalize",
    "per_example_norm",
    "project",
    "symmetric_kl",
]
