"""Compression of small causal LMs: pruning and quantization, with what they cost.

=====================  ===========================================  =======================
name                   what                                         amount means
=====================  ===========================================  =======================
magnitude              zero the smallest |W| (per layer or global)  fraction of weights zeroed
wanda *                zero the smallest |W| * ||X|| per output row  fraction, or N:M (2:4)
sparsegpt *            OBS pruning with weight updates (SparseGPT)   fraction, or N:M (2:4)
neurons                remove the MLP neurons of least weight norm  fraction of neurons removed
neurons-act            remove the MLP neurons of least ||a|| ||W||  fraction of neurons removed
w8a8 *                 SmoothQuant + GPTQ int8 weights and activations
w4a16 *                GPTQ int4 weights (group 128)
int8-dynamic           torch.ao dynamic int8 (weights + activations)
int8-weight            int8 weights dequantized on the fly
int8-dynamic-torchao   torchao dynamic int8 (optional dependency)
=====================  ===========================================  =======================

Methods marked * run through llm-compressor (:mod:`lmboost.compression.oneshot`; the
``compress`` extra) and save the compressed-tensors format vLLM serves. lmboost's own code is
kept where llm-compressor has no equivalent: magnitude pruning with a global scope (the
baseline), MLP neuron removal that really shrinks the matrices, and the int8 schemes measured
before llm-compressor arrived (torch.ao's fbgemm kernels are real int8 matmuls on a CPU).

:data:`PRUNERS` and :data:`QUANTIZERS` map names to methods; a spec such as ``wanda:0.5`` is
parsed by :func:`parse_prune_spec`. :func:`save_compressed` / :func:`load_compressed` store any
result in safetensors. ``lmboost.compression.runner.run_compression(CompressConfig(...))`` runs a
whole experiment (before/after parameters, size, speed, perplexity, optional ICL accuracy) and
writes its report; it is imported from its module because it uses this registry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from lmboost.compression.layerwise import calibration_ids
from lmboost.compression.magnitude import magnitude_prune
from lmboost.compression.neurons_act import prune_neurons_act
from lmboost.compression.oneshot import ONESHOT_SCHEMES, oneshot_prune, parse_structure
from lmboost.compression.perplexity import (
    forward_throughput,
    perplexity,
    token_ids,
    wikitext2,
)
from lmboost.compression.quantize import (
    QUANTIZERS,
    Int8WeightLinear,
    Quantizer,
    benchmark_quantizers,
    get_quantizer,
    quantize,
    quantized_modules,
)
from lmboost.compression.save import load_compressed, save_compressed, weight_bytes
from lmboost.compression.sparsity import check_fraction, sparsity_report, target_linears
from lmboost.compression.structured import prune_neurons
from lmboost.errors import CompressionError


@dataclass(frozen=True)
class Pruner:
    """A pruning method: ``prune(model, amount, **options)`` changes ``model`` in place.

    ``needs_calibration``: it takes ``calibration`` token ids (N x L); ``scoped``: it takes
    ``scope`` ("layer" or "global"); ``oneshot``: it runs through llm-compressor, and its
    amount may also be an N:M pattern such as ``"2:4"``; ``zeroes``: it zeroes weights (rather
    than removing whole neurons).
    """

    name: str
    prune: Callable[..., nn.Module]
    description: str
    needs_calibration: bool = False
    scoped: bool = False
    oneshot: bool = False
    zeroes: bool = True


PRUNERS: dict[str, Pruner] = {
    p.name: p
    for p in (
        Pruner("magnitude", magnitude_prune, "smallest |W| zeroed", scoped=True),
        Pruner(
            "wanda", functools.partial(oneshot_prune, "wanda"),
            "smallest |W|*||X|| per row zeroed (llm-compressor)", needs_calibration=True,
            oneshot=True,
        ),
        Pruner(
            "sparsegpt", functools.partial(oneshot_prune, "sparsegpt"),
            "OBS pruning with weight updates (llm-compressor)", needs_calibration=True,
            oneshot=True,
        ),
        Pruner("neurons", prune_neurons, "MLP neurons of least L2 norm removed", zeroes=False),
        Pruner(
            "neurons-act", prune_neurons_act,
            "MLP neurons of least ||activation|| * ||down column|| removed",
            needs_calibration=True, zeroes=False,
        ),
    )
}


def get_pruner(name: str) -> Pruner:
    """The pruner registered as ``name``; a LmboostError listing the choices otherwise."""
    pruner = PRUNERS.get(name.strip().lower())
    if pruner is None:
        raise CompressionError(
            f"Unknown pruning method {name!r}; choose one of: {', '.join(PRUNERS)}."
        )
    return pruner


def parse_prune_spec(spec: str) -> tuple[Pruner, float | str]:
    """``"wanda:0.5"`` -> (the wanda Pruner, 0.5); ``"sparsegpt:2:4"`` -> (the sparsegpt Pruner,
    "2:4") for the pruners that take N:M patterns; a LmboostError that shows the form otherwise.
    """
    name, sep, amount = spec.partition(":")
    if not sep:
        raise CompressionError(
            f"Pruning spec {spec!r} lacks an amount: write METHOD:AMOUNT, e.g. magnitude:0.5, "
            f"with METHOD one of {', '.join(PRUNERS)}."
        )
    pruner, what = get_pruner(name), f"{name.strip()} amount in {spec!r}"
    if ":" in amount:
        if not pruner.oneshot:
            takers = ", ".join(p.name for p in PRUNERS.values() if p.oneshot)
            raise CompressionError(
                f"{what}: N:M patterns are for {takers}; {pruner.name} takes a fraction such "
                "as 0.5."
            )
        return pruner, parse_structure(amount, what)[1]
    return pruner, parse_amount(amount, what)


def parse_amount(text: str, what: str) -> float:
    """A fraction in [0, 1) written as text; a LmboostError naming ``what`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise CompressionError(f"{what} must be a number in [0, 1), not {text!r}.") from None
    return check_fraction(value, what)


__all__ = [
    "ONESHOT_SCHEMES",
    "PRUNERS",
    "QUANTIZERS",
    "Int8WeightLinear",
    "Pruner",
    "Quantizer",
    "benchmark_quantizers",
    "calibration_ids",
    "forward_throughput",
    "get_pruner",
    "get_quantizer",
    "load_compressed",
    "magnitude_prune",
    "parse_amount",
    "parse_prune_spec",
    "perplexity",
    "prune_neurons",
    "prune_neurons_act",
    "quantize",
    "quantized_modules",
    "save_compressed",
    "sparsity_report",
    "target_linears",
    "token_ids",
    "weight_bytes",
    "wikitext2",
]
