"""Which weights compression acts on, and how sparse they are.

The targets are the ``nn.Linear`` modules inside the decoder layers (attention and MLP
projections); embeddings and the LM head are left alone unless a method is asked to include the
head. :func:`sparsity_report` counts zeros per target and in total, plus the model's parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lmboost.errors import CompressionError


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder layers: its ``nn.ModuleList`` holding the most parameters."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise CompressionError(
            f"{type(model).__name__} has no list of decoder layers (nn.ModuleList): "
            "compression supports transformer decoders such as Llama, Qwen, Gemma, SmolLM."
        )
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


def target_linears(model: nn.Module, include_head: bool = False) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` modules of the decoder layers by qualified name, in model order; with
    ``include_head`` also the LM head (tied to the input embeddings in many small models, in
    which case changing it changes them too)."""
    layers = decoder_layers(model)
    inside = {id(m) for m in layers.modules()}
    found = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and id(m) in inside
    }
    if include_head:
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if not isinstance(head, nn.Linear):
            raise CompressionError(f"{type(model).__name__} has no nn.Linear LM head to include.")
        found.update((n, m) for n, m in model.named_modules() if m is head)
    return found


def parameter_count(model: nn.Module) -> int:
    """Number of distinct parameters of a float model (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def sparsity_report(model: nn.Module, include_head: bool = False) -> dict[str, Any]:
    """Zeros per target Linear weight and over all of them, and the model's parameter counts.

    Returns ``{"layers": [{name, shape, params, zeros, sparsity}], "total": {params, zeros,
    sparsity}, "parameters": n, "nonzero_parameters": n}``; ``total`` covers the targets only,
    ``parameters`` the whole model (embeddings, norms and head included, tied weights once).
    """
    rows = []
    for name, linear in target_linears(model, include_head).items():
        weight = linear.weight.detach()
        zeros = int((weight == 0).sum())
        rows.append({
            "name": name,
            "shape": list(weight.shape),
            "params": weight.numel(),
            "zeros": zeros,
            "sparsity": zeros / weight.numel(),
        })
    params = sum(r["params"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    nonzero = sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())
    return {
        "layers": rows,
        "total": {"params": params, "zeros": zeros, "sparsity": zeros / params if params else 0.0},
        "parameters": parameter_count(model),
        "nonzero_parameters": nonzero,
    }


def check_fraction(value: float, what: str) -> float:
    """``value`` as a float if it lies in [0, 1); otherwise a LmboostError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise CompressionError(
            f"{what} must be a number in [0, 1), such as 0.5, not {value!r}."
        )
    return float(value)
