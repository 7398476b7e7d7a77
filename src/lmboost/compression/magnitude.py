"""Unstructured magnitude pruning: zero the weights of smallest absolute value.

With ``scope="layer"`` every target Linear loses exactly ``round(sparsity * n)`` of its ``n``
weights; with ``scope="global"`` the same count is taken over all targets pooled, so layers end up
unevenly sparse. Ties at the threshold are broken by position (earlier layer, then row-major
index, first), so the result is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmboost.compression.sparsity import check_fraction, target_linears
from lmboost.errors import CompressionError

SCOPES = ("layer", "global")


def magnitude_prune(
    model: nn.Module, sparsity: float, *, scope: str = "layer", include_head: bool = False
) -> nn.Module:
    """Zero the smallest-magnitude weights of the decoder Linears in place; returns ``model``.

    ``sparsity`` is the fraction of weights set to zero, per layer or over all of them
    (``scope``); ``include_head`` prunes the LM head as well.
    """
    sparsity = check_fraction(sparsity, "magnitude sparsity")
    if scope not in SCOPES:
        raise CompressionError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}.")
    weights = [m.weight for m in target_linears(model, include_head).values()]
    groups = [[w] for w in weights] if scope == "layer" else [weights]
    with torch.no_grad():
        for group in groups:
            for weight, mask in zip(group, smallest_mask([w.abs() for w in group], sparsity)):
                weight.masked_fill_(mask, 0)
    return model


def smallest_mask(scores: Sequence[torch.Tensor], fraction: float) -> list[torch.Tensor]:
    """Boolean masks, one per tensor of ``scores``, marking exactly ``round(fraction * n)`` of the
    ``n`` entries pooled over all tensors: those of smallest score, ties broken by position."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    k = round(fraction * flat.numel())
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        threshold = flat.kthvalue(k).values
        mask = flat < threshold
        ties = torch.nonzero(flat == threshold).squeeze(1)[: k - int(mask.sum())]
        mask[ties] = True
    parts = mask.split([s.numel() for s in scores])
    return [part.view(s.shape) for part, s in zip(parts, scores)]
