"""What every adversarial method shares: the batch as a function of an embedding perturbation,
per-example L2 norms and projections, and the symmetric KL divergence.

A perturbation ``delta`` has the shape of the input embeddings (B x T x H) and is added to the
output of the input-embedding module by a forward hook, while the model still receives
``input_ids``: models that locate positions from the ids (a causal-LM classifier reads the last
non-padding token) behave exactly as without the perturbation, and a trainable embedding matrix
gets its gradient. Norms are taken per example over all of
its tokens and dimensions (||delta_i||_F), and perturbations are zero on padding.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lmboost.errors import RecipeError

TINY = 1e-12
Backward = Callable[[torch.Tensor], None]


@dataclass
class PerturbedBatch:
    """One training batch as a function of a perturbation of its input embeddings.

    Attributes:
        model: the model to call (possibly wrapped for distributed training).
        inputs: the batch: ``input_ids``, ``labels``, ``attention_mask`` and any other inputs.
        loss_fn: ``(logits, labels) -> loss``, the task loss.
        embeddings: the input embedding module of ``model`` (unwrapped).
        autocast: context manager entered around each forward (mixed precision).
    """

    model: nn.Module
    inputs: Mapping[str, torch.Tensor]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    embeddings: nn.Module
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    @property
    def mask(self) -> torch.Tensor:
        """B x T x 1: 1 on real tokens, 0 on padding."""
        ids = self.inputs["input_ids"]
        mask = self.inputs.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask
        return mask.unsqueeze(-1).to(self.embeddings.weight.dtype)

    def zeros(self) -> torch.Tensor:
        """A zero perturbation (B x T x H)."""
        ids = self.inputs["input_ids"]
        weight = self.embeddings.weight
        return torch.zeros(*ids.shape, weight.shape[-1], dtype=weight.dtype, device=ids.device)

    def forward(
        self, delta: torch.Tensor, model: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits)`` with ``delta`` added to the input embeddings; ``model`` replaces
        the batch's model (e.g. an EMA copy with the same architecture)."""
        embeddings = self.embeddings if model is None else model.get_input_embeddings()
        model = self.model if model is None else model
        inputs = {k: v for k, v in self.inputs.items() if k != "labels"}
        with self.autocast(), added_to_embeddings(embeddings, delta):
            logits = model(**inputs).logits
            return self.loss_fn(logits, self.inputs["labels"]), logits


@contextlib.contextmanager
def added_to_embeddings(embeddings: nn.Module, delta: torch.Tensor) -> Iterator[None]:
    """Within the block, every output of ``embeddings`` gets ``delta`` added (a forward hook)."""
    handle = embeddings.register_forward_hook(lambda module, args, output: output + delta)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class AdversarialStep:
    """What one adversarial step did: the loss to log (detached) and the final perturbation."""

    loss: torch.Tensor
    delta: torch.Tensor


class AdversarialMethod:
    """Base class of the adversarial training methods.

    Subclasses declare ``name`` and their parameters as ``__init__`` keyword arguments with
    defaults (stored unchanged, scikit-learn style), ``constraints`` (parameter -> "positive",
    "non_negative", "count" or "fraction") and implement :meth:`step`, which runs the forward
    and backward passes of one batch through ``backward`` (which scales for gradient
    accumulation and accumulates into ``.grad``) and never steps the optimizer.
    """

    name: ClassVar[str]
    constraints: ClassVar[dict[str, str]] = {}

    def step(self, batch: PerturbedBatch, backward: Backward) -> AdversarialStep:
        """Forward and backward passes for ``batch``; gradients accumulate in the parameters."""
        raise NotImplementedError

    def prepare(self, model: nn.Module) -> None:
        """Called once before training with the (unwrapped) model; no-op unless overridden."""

    def on_optimizer_step(self, model: nn.Module) -> None:
        """Called after every optimizer step with the (unwrapped) model; no-op unless overridden."""

    def get_params(self) -> dict[str, Any]:
        """The method's parameters by name."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def check_params(self) -> None:
        """Raise LmboostError naming the parameter whose value breaks its constraint."""
        rules = {
            "positive": (lambda v: v > 0, "> 0"),
            "non_negative": (lambda v: v >= 0, ">= 0"),
            "count": (lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
            "fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
        }
        for key, rule in self.constraints.items():
            value = getattr(self, key)
            ok, wanted = rules[rule]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise RecipeError(
                    f"adversarial.{key} of {self.name} must be {wanted}, not {value!r}."
                )


def per_example_norm(x: torch.Tensor) -> torch.Tensor:
    """||x_i||_F over every dimension but the first, shaped to broadcast against ``x``."""
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))


def normalize(g: torch.Tensor) -> torch.Tensor:
    """g_i / ||g_i|| per example (zero where g_i is zero)."""
    return g / per_example_norm(g).clamp_min(TINY)


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``delta`` projected onto the per-example L2 ball of radius ``epsilon``."""
    norm = per_example_norm(delta)
    return delta * torch.clamp(epsilon / norm.clamp_min(TINY), max=1.0)


def symmetric_kl(
    p_logits: torch.Tensor, q_logits: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(p || q) + KL(q || p) of the softmax distributions over the last dimension, averaged
    over examples (N x K logits) or over the positions ``mask`` keeps (B x T x V logits)."""
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    kl = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1)
    if mask is None or kl.dim() == 1:
        return kl.mean()
    mask = mask.reshape(kl.shape).to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1.0)
