"""Structured pruning of MLP neurons: the model really gets smaller.

Neuron n of a gated MLP ``down(act(gate(x)) * up(x))`` owns row n of ``gate_proj`` and
``up_proj`` and column n of ``down_proj``. Its importance is the L2 norm of all those weights
together; each layer keeps its ``round((1 - ratio) * intermediate_size)`` most important neurons
(ties: the lower index is kept), in their original order. Every layer keeps the same count, so
``config.intermediate_size`` is updated and the saved model reloads with ``from_pretrained``.

The weight norm is a poor importance without retraining: on SmolLM2-135M (WikiText-2, 1024
tokens; dense perplexity 23.7) removing 5 / 10 / 25% of neurons gives 2487 / 9168 / 2.6e6, worse
than a random 10% (42). :mod:`lmboost.compression.neurons_act` (``neurons-act``) shrinks the MLPs
the same way but ranks neurons by their activations on calibration text: 25.6 / 27.4 / 35.7.

Attention heads are not pruned: with grouped-query attention a head can only go together with
the other query heads of its key/value group, and the config has a single head count for all
layers, so removing heads would mean removing whole groups uniformly; left out for now.
"""

from __future__ import annotations

import torch
from torch import nn

from lmboost.compression.sparsity import check_fraction, decoder_layers
from lmboost.errors import CompressionError

INPUT_PROJECTIONS = ("gate_proj", "up_proj")


def neuron_norms(inputs: list[nn.Linear], down: nn.Linear) -> torch.Tensor:
    """L2 norm of each intermediate neuron's weights: its rows in ``inputs`` (gate, up) and its
    column in ``down``."""
    squares = down.weight.detach().float().pow(2).sum(dim=0)
    for linear in inputs:
        squares = squares + linear.weight.detach().float().pow(2).sum(dim=1)
    return squares.sqrt()


def prune_neurons(model: nn.Module, ratio: float) -> nn.Module:
    """Remove the fraction ``ratio`` of MLP neurons with the smallest weight norm from every
    decoder layer, in place (the Linears are replaced by smaller ones); returns ``model``."""
    mlps, keep = neuron_plan(model, ratio)
    for mlp in mlps:
        inputs = [getattr(mlp, name) for name in INPUT_PROJECTIONS if hasattr(mlp, name)]
        shrink_mlp(mlp, top_neurons(neuron_norms(inputs, mlp.down_proj), keep))
    model.config.intermediate_size = keep
    return model


def neuron_plan(model: nn.Module, ratio: float) -> tuple[list[nn.Module], int]:
    """The MLP of every decoder layer and how many neurons each keeps at pruning ``ratio``:
    ``round((1 - ratio) * intermediate_size)``; a LmboostError when that cannot be done."""
    ratio = check_fraction(ratio, "neuron pruning ratio")
    mlps = [mlp_of(layer) for layer in decoder_layers(model)]
    sizes = {mlp.down_proj.in_features for mlp in mlps}
    if len(sizes) != 1:
        raise CompressionError(f"MLP sizes differ between layers ({sorted(sizes)}); cannot prune.")
    keep = round((1 - ratio) * sizes.pop())
    if keep < 1:
        raise CompressionError(f"ratio {ratio} would remove every MLP neuron; use a smaller ratio.")
    return mlps, keep


def top_neurons(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` highest ``scores`` in increasing order (ties: lower index kept)."""
    return torch.sort(scores, descending=True, stable=True).indices[:keep].sort().values


def shrink_mlp(mlp: nn.Module, kept: torch.Tensor) -> None:
    """Keep only neurons ``kept`` of ``mlp``: rows of gate/up, columns of down (new Linears)."""
    for name in INPUT_PROJECTIONS:
        if hasattr(mlp, name):
            setattr(mlp, name, _select(getattr(mlp, name), kept, dim=0))
    mlp.down_proj = _select(mlp.down_proj, kept, dim=1)
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = len(kept)


def mlp_of(layer: nn.Module) -> nn.Module:
    """The MLP of a decoder layer: a module ``mlp`` with Linear ``up_proj`` and ``down_proj``."""
    mlp = getattr(layer, "mlp", None)
    if not all(isinstance(getattr(mlp, n, None), nn.Linear) for n in ("up_proj", "down_proj")):
        raise CompressionError(
            f"{type(layer).__name__} has no Llama-style MLP (mlp.gate_proj/up_proj/down_proj "
            "Linears): neuron pruning supports Llama, Qwen, Gemma, SmolLM and similar models."
        )
    return mlp


def _select(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear holding the output rows (``dim=0``) or input columns (``dim=1``) ``index``."""
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device))
    has_bias = linear.bias is not None
    new = nn.Linear(
        weight.shape[1], weight.shape[0], bias=has_bias, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        new.weight.copy_(weight)
        if has_bias:
            new.bias.copy_(linear.bias if dim == 1 else linear.bias[index])
    return new
