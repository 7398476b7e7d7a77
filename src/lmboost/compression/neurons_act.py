"""Activation-aware removal of MLP neurons: Wanda's |W| * ||X|| turned structured.

Neuron n of a gated MLP ``down(act(gate(x)) * up(x))`` feeds ``down_proj`` the activation
a_n = act(gate(x))_n * up(x)_n. Over all calibration tokens (N sequences x L tokens) its score is

    score_n = ||a_n||_2 * ||W_down[:, n]||_2

which is the Frobenius norm of everything neuron n adds to the MLP output over those tokens,
||W_down[:, n] a_n^T||_F. This is the structured form of Wanda's criterion (Sun et al. 2023,
arXiv 2306.11695) that Wanda-sp / FLAP-style structured pruning builds on (An et al. 2024,
arXiv 2312.11983); here the column of W_down enters through its L2 norm. The weight-norm ranking
of :func:`lmboost.compression.structured.prune_neurons` ignores the activations, and on
SmolLM2-135M it removes neurons that matter far more than random ones.

Each layer keeps its ``round((1 - ratio) * intermediate_size)`` highest-scored neurons (ties: the
lower index is kept) and is shrunk exactly as ``prune_neurons`` shrinks it, so
``config.intermediate_size`` is updated and the model reloads with ``from_pretrained``. No
weight is updated.

Layers are pruned in order, as in Wanda
(:func:`lmboost.compression.layerwise.prune_layer_by_layer`): the activations of layer l are
measured with layers < l already pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lmboost.compression.layerwise import activation_norms, prune_layer_by_layer
from lmboost.compression.structured import mlp_of, neuron_plan, shrink_mlp, top_neurons


def neuron_scores(down: nn.Linear, input_norms: torch.Tensor) -> torch.Tensor:
    """score_n = ||a_n||_2 * ||W_down[:, n]||_2: ``input_norms`` are ||a_n||_2, the norms of
    ``down``'s input features over the calibration tokens."""
    return input_norms.float() * down.weight.detach().float().norm(dim=0)


def prune_neurons_act(
    model: nn.Module, ratio: float, *, calibration: torch.Tensor, batch_size: int = 8
) -> nn.Module:
    """Remove the fraction ``ratio`` of MLP neurons of lowest activation-aware score from every
    decoder layer, in place; returns ``model``.

    ``calibration`` holds token ids, N x L (see :func:`lmboost.compression.calibration_ids`).
    """
    _, keep = neuron_plan(model, ratio)  # checks the ratio and the MLPs before any forward pass

    def prune_layer(layer: nn.Module, run: Callable[[], Any]) -> None:
        mlp = mlp_of(layer)
        norms = activation_norms({"down_proj": mlp.down_proj}, run)["down_proj"]
        shrink_mlp(mlp, top_neurons(neuron_scores(mlp.down_proj, norms), keep))

    prune_layer_by_layer(
        model, calibration, prune_layer, batch_size=batch_size, method="neurons-act"
    )
    model.config.intermediate_size = keep
    return model
