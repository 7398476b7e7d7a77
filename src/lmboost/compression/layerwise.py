"""Layer-by-layer calibration for lmboost's own activation-aware pruners.

:func:`prune_layer_by_layer` visits the decoder layers in order: the calibration hidden states
of layer l are the outputs of layers < l *after* they were pruned (the order of Wanda's and
SparseGPT's reference code). One forward pass of the whole model records each decoder layer's
other inputs (attention mask, position embeddings), which do not depend on the hidden states;
then each layer runs twice per batch (to collect statistics, then, pruned, to produce the next
layer's inputs). :func:`activation_norms` gives ||X_j||_2 of each Linear's input features and
:func:`calibration_ids` draws the calibration windows, which llm-compressor's methods
(:mod:`lmboost.compression.oneshot`) use too.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmboost.backends.hf import HFBackend
from lmboost.compression.sparsity import decoder_layers
from lmboost.errors import CompressionError
from lmboost.tasks.datafiles import read_text


def activation_norms(
    linears: dict[str, nn.Linear], forward: Callable[[], Any]
) -> dict[str, torch.Tensor]:
    """||X_j||_2 of each Linear's input features over every token seen while ``forward()`` runs
    (forward hooks sum the squares in float32; all leading dimensions count as tokens)."""
    sums = {name: torch.zeros(m.in_features, device=m.weight.device) for name, m in linears.items()}

    def hook(name: str) -> Callable:
        def record(module: nn.Module, args: tuple, output: Any) -> None:
            x = args[0].detach().reshape(-1, module.in_features).float()
            sums[name] += x.pow(2).sum(dim=0)

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in linears.items()]
    try:
        forward()
    finally:
        for handle in handles:
            handle.remove()
    return {name: s.sqrt() for name, s in sums.items()}


def prune_layer_by_layer(
    model: nn.Module,
    calibration: torch.Tensor,
    prune_layer: Callable[[nn.Module, Callable[[], list[torch.Tensor]]], None],
    *,
    batch_size: int = 8,
    method: str = "This pruner",
) -> None:
    """Call ``prune_layer(layer, run)`` for each decoder layer in order, where ``run()`` passes
    the calibration hidden states through ``layer`` (hooks placed on its modules see them).

    The hidden states of layer l are the outputs of layers < l after ``prune_layer`` changed
    them; ``calibration`` holds token ids, N x L, run in batches of ``batch_size``.
    """
    if calibration.ndim != 2 or calibration.numel() == 0:
        raise CompressionError(f"{method} needs calibration token ids as a non-empty N x L tensor.")
    layers = decoder_layers(model)
    device = next(model.parameters()).device
    batches = calibration.to(device).split(batch_size)
    hidden, layer_args = _layer_inputs(model, layers, batches)
    with torch.no_grad():
        for layer, args in zip(layers, layer_args):
            run = functools.partial(_run_layer, layer, hidden, args)
            prune_layer(layer, run)
            hidden = run()  # the pruned layer's outputs feed the next layer


def calibration_ids(
    tokenizer: Any, text: str | Path, n_samples: int = 16, seq_len: int = 256, seed: int = 0
) -> torch.Tensor:
    """``n_samples`` random windows of ``seq_len`` tokens of ``text`` (a string, or a file when
    given as a Path), drawn with ``random.Random(seed)``: an N x L tensor of token ids."""
    if isinstance(text, Path):
        text = read_text(text)
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if n_samples < 1 or seq_len < 1:
        raise CompressionError("calibration needs n_samples >= 1 and seq_len >= 1.")
    if len(ids) < seq_len:
        raise CompressionError(
            f"The calibration text has {len(ids)} tokens, fewer than seq_len={seq_len}: "
            "give a longer text or a shorter length."
        )
    rng = random.Random(seed)
    starts = [rng.randrange(len(ids) - seq_len + 1) for _ in range(n_samples)]
    return torch.tensor([ids[s : s + seq_len] for s in starts], dtype=torch.long)


class _Recorded(Exception):
    """Raised by the last layer's pre-hook: every layer's inputs are known, stop the pass."""


def _layer_inputs(
    model: nn.Module, layers: nn.ModuleList, batches: tuple[torch.Tensor, ...]
) -> tuple[list[torch.Tensor], list[list[tuple[tuple, dict]]]]:
    """The first layer's hidden states per batch, and each layer's other (args, kwargs) per
    batch, recorded by forward pre-hooks during one pass of the model."""
    hidden: list[torch.Tensor] = []
    per_layer: list[list[tuple[tuple, dict]]] = [[] for _ in layers]

    def hook(index: int) -> Callable:
        def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if index == 0:
                hidden.append(args[0] if args else kwargs["hidden_states"])
            rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            per_layer[index].append((args[1:], rest))
            if index == len(layers) - 1:
                raise _Recorded

        return record

    handles = [
        layer.register_forward_pre_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)
    ]
    backend = HFBackend.of_module(model)
    try:
        for batch in batches:
            with contextlib.suppress(_Recorded):
                backend.run(batch)
    finally:
        for handle in handles:
            handle.remove()
    return hidden, per_layer


def _run_layer(
    layer: nn.Module, hidden: list[torch.Tensor], inputs: list[tuple[tuple, dict]]
) -> list[torch.Tensor]:
    """A decoder layer's hidden output for each batch, given its hidden input and the other
    (args, kwargs) recorded for it."""
    outputs = []
    for h, (args, kwargs) in zip(hidden, inputs):
        out = layer(h, *args, **kwargs)
        outputs.append(out[0] if isinstance(out, tuple) else out)
    return outputs
