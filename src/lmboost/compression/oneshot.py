"""Pruning and quantization through llm-compressor's ``oneshot`` (the vLLM project's library).

=============  ==============================================================================
name           what llm-compressor does
=============  ==============================================================================
sparsegpt      SparseGPT (Frantar & Alistarh 2023): prune by the OBS saliency w^2 / [H^-1]_jj
               and update the remaining weights of the row to compensate (layer by layer)
wanda          Wanda (Sun et al. 2023): zero the smallest |W_ij| * ||X_j|| of each output row
w4a16          GPTQ int4 weights in groups of 128 input columns (or the largest of 64, 32, ...
               that divides every Linear's width: 64 for SmolLM2's 576), float activations
w8a8           SmoothQuant (alpha 0.8) then GPTQ int8 weights (per channel) with int8
               activations quantized per token at run time
=============  ==============================================================================

After pruning, the quantizers round to nearest instead of running GPTQ, whose weight updates
would undo the sparsity (see :func:`quantization_modifiers`).

Both pruners take an unstructured amount (``sparsegpt:0.5``: half the weights of every decoder
Linear) or an N:M pattern (``sparsegpt:2:4``: 2 of every 4 consecutive weights of a row, the
semi-structured sparsity GPUs accelerate). Every method works layer by layer on calibration
token windows (:func:`lmboost.compression.calibration_ids`) and leaves the LM head (tied to the
embeddings in most small models) alone, like lmboost's own pruners.

After :func:`run_oneshot` the model in memory computes what the compressed one will (quantized
Linears are fake-quantized: int values times scales, in float), so perplexity and accuracy
measured on it are those of the saved model. :func:`save_compressed_tensors` writes the
compressed-tensors format (int8/int4 packed weights, bitmask-compressed sparse weights) that
transformers loads back (with ``compressed-tensors`` installed) and vLLM serves.

llm-compressor is an optional dependency: ``pip install 'lmboost[compress]'``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmboost.compression.sparsity import check_fraction, target_linears
from lmboost.errors import CompressionError, DependencyError

IGNORE = ["re:.*lm_head"]
"""Modules llm-compressor leaves alone: the LM head (tied to the embeddings in SmolLM2/Gemma)."""

SMOOTHING_STRENGTH = 0.8
"""SmoothQuant's alpha for ``w8a8``: the paper's and llm-compressor's examples' value."""
SMOOTHING_TOLERANCE = 1e-3
"""Largest logit change SmoothQuant may make (relative to the largest logit): float rounding."""
PRE_FEEDFORWARD_SMOOTHING = {
    "input_layernorm": ("q_proj", "k_proj", "v_proj"),
    "pre_feedforward_layernorm": ("gate_proj", "up_proj"),
}
"""Each norm SmoothQuant folds its scales into, and the Linears that read it, in decoders with a
``pre_feedforward_layernorm`` (Gemma 2 and 3), for which llm-compressor 0.14 uses Llama's
mappings: those balance the MLP against ``post_attention_layernorm``, which there normalises the
attention output instead. (llm-compressor itself handles these norms' ``1 + weight`` form.)"""


@dataclass(frozen=True)
class OneshotScheme:
    """A quantization scheme applied by llm-compressor (see the module docstring)."""

    name: str
    description: str
    gptq_scheme: str
    smoothquant: bool = False


ONESHOT_SCHEMES: dict[str, OneshotScheme] = {
    s.name: s
    for s in (
        OneshotScheme("w4a16", "GPTQ int4 weights (groups of 128), float activations", "W4A16"),
        OneshotScheme(
            "w8a8", "SmoothQuant + GPTQ int8 weights, int8 per-token activations", "W8A8",
            smoothquant=True,
        ),
    )
}

def llmcompressor_available() -> bool:
    """Whether llm-compressor can be imported."""
    return importlib.util.find_spec("llmcompressor") is not None


def require_llmcompressor(what: str) -> None:
    """A LmboostError that says how to install llm-compressor when it is missing."""
    if not llmcompressor_available():
        raise DependencyError(
            f"{what} runs through llm-compressor, which is not installed: "
            "pip install 'lmboost[compress]' (or pip install llmcompressor)."
        )


def parse_structure(text: str, what: str) -> tuple[float, str]:
    """``"0.5"`` -> (0.5, "0:0") (unstructured); ``"2:4"`` -> (0.5, "2:4") (N of every M zeroed)."""
    n, sep, m = text.partition(":")
    if not sep:
        try:
            value = float(text)
        except ValueError:
            raise CompressionError(
                f"{what} must be a fraction in [0, 1) or an N:M pattern such as 2:4, "
                f"not {text!r}."
            ) from None
        return check_fraction(value, what), "0:0"
    if not (n.strip().isdigit() and m.strip().isdigit()) or not 0 < int(n) < int(m):
        raise CompressionError(f"{what} must read N:M with 0 < N < M (e.g. 2:4), not {text!r}.")
    return int(n) / int(m), f"{int(n)}:{int(m)}"


def prune_modifier(method: str, amount: float | str) -> Any:
    """The modifier of ``method`` at ``amount``: a fraction, or an N:M pattern such as "2:4"."""
    sparsity, structure = parse_structure(str(amount), f"{method} amount")
    require_llmcompressor(method)
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

    cls = {"sparsegpt": SparseGPTModifier, "wanda": WandaPruningModifier}[method]
    return cls(sparsity=sparsity, mask_structure=structure, targets=["Linear"], ignore=IGNORE)


def oneshot_prune(
    method: str, model: nn.Module, amount: float | str, *, calibration: torch.Tensor,
    tokenizer: Any = None,
) -> nn.Module:
    """Prune ``model`` in place with llm-compressor's ``method`` ("sparsegpt" or "wanda") at
    ``amount`` (a fraction, or "N:M"), calibrated on ``calibration`` (N x L ids)."""
    return run_oneshot(model, calibration, [prune_modifier(method, amount)], tokenizer)


def group_size(model: nn.Module, largest: int = 128) -> int:
    """The largest power of two <= ``largest`` that divides the input width of every decoder
    Linear of ``model`` (int4 groups must tile each row)."""
    widths = {m.in_features for m in target_linears(model).values()}
    size = largest
    while size > 1 and any(w % size for w in widths):
        size //= 2
    return size


def quantization_modifiers(name: str, model: nn.Module, *, keep_zeros: bool = False) -> list[Any]:
    """The llm-compressor modifiers of the scheme ``name`` (:data:`ONESHOT_SCHEMES`) for
    ``model`` (whose widths fix the int4 group size).

    GPTQ updates the weights it has not yet quantized to absorb each rounding error, which
    refills pruned zeros (llm-compressor 0.14's GPTQ keeps no sparsity mask); with
    ``keep_zeros`` (a pruned model) the weights are rounded to nearest instead, and zero stays
    zero under symmetric quantization.
    """
    spec = ONESHOT_SCHEMES[name]
    require_llmcompressor(name)
    from compressed_tensors.quantization import preset_name_to_scheme
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform import SmoothQuantModifier

    scheme = preset_name_to_scheme(spec.gptq_scheme, ["Linear"])
    if scheme.weights.group_size:
        scheme.weights.group_size = group_size(model, scheme.weights.group_size)
    modifiers: list[Any] = []
    if spec.smoothquant:
        modifiers.append(SmoothQuantModifier(
            smoothing_strength=SMOOTHING_STRENGTH, mappings=smoothing_mappings(model)))
    quantizer = QuantizationModifier if keep_zeros else GPTQModifier
    modifiers.append(quantizer(config_groups={"group_0": scheme}, ignore=IGNORE))
    return modifiers


def smoothing_mappings(model: nn.Module) -> list[list[Any]] | None:
    """SmoothQuant's mappings for ``model``: :data:`PRE_FEEDFORWARD_SMOOTHING` where its decoder
    layers have a ``pre_feedforward_layernorm``, else None (llm-compressor's own choice)."""
    if not any(n.endswith(".pre_feedforward_layernorm") for n, _ in model.named_modules()):
        return None
    return [[[f"re:.*{linear}$" for linear in linears], f"re:.*{norm}$"]
            for norm, linears in PRE_FEEDFORWARD_SMOOTHING.items()]


def run_oneshot(
    model: nn.Module, calibration: torch.Tensor, modifiers: list[Any], tokenizer: Any = None
) -> nn.Module:
    """Apply ``modifiers`` to ``model`` in place with llm-compressor's ``oneshot``, calibrated
    on the token windows ``calibration`` (N x L ids); returns ``model``. ``tokenizer`` is
    needed only for a model built in memory (llm-compressor otherwise loads the one saved
    beside the model's weights).

    SmoothQuant (an exact rescaling of each norm and the Linears it feeds) runs on its own and
    is checked by behaviour: a model whose outputs it changes is refused with a CompressionError
    before anything is quantized. llm-compressor's own log lines (several per Linear) are kept
    off the console.
    """
    from llmcompressor.modifiers.transform import SmoothQuantModifier

    at = next((i for i, m in enumerate(modifiers) if isinstance(m, SmoothQuantModifier)), None)
    if at is None:
        return _oneshot(model, calibration, modifiers, tokenizer)
    _oneshot(model, calibration, modifiers[:at], tokenizer)
    _smooth_checked(model, calibration, modifiers[at], tokenizer)
    return _oneshot(model, calibration, modifiers[at + 1:], tokenizer)


def _smooth_checked(model: nn.Module, calibration: torch.Tensor, smoothing: Any,
                    tokenizer: Any) -> None:
    """Apply ``smoothing`` (a SmoothQuantModifier) and check that the logits on two calibration
    windows moved by no more than :data:`SMOOTHING_TOLERANCE` of the largest one."""
    from lmboost.backends.hf import HFBackend

    backend, ids = HFBackend.of_module(model), calibration[:2]
    before = backend.logits(ids)
    _oneshot(model, calibration, [smoothing], tokenizer)
    change = float((backend.logits(ids) - before).abs().max() / before.abs().max())
    if not change < SMOOTHING_TOLERANCE:
        raise CompressionError(
            f"SmoothQuant changed this {type(model).__name__}'s outputs (largest logit change "
            f"{change:.2g} of the largest logit; smoothing must leave them unchanged): "
            "llm-compressor's smoothing mappings do not fit this architecture. "
            "Use --quantize w4a16 (GPTQ) or int8-weight instead."
        )


def _oneshot(
    model: nn.Module, calibration: torch.Tensor, modifiers: list[Any], tokenizer: Any
) -> nn.Module:
    if not modifiers:
        return model.eval()
    from datasets import Dataset
    from llmcompressor import oneshot

    ids = calibration.tolist()
    dataset = Dataset.from_dict({
        "input_ids": ids, "attention_mask": [[1] * len(row) for row in ids],
    })
    with _quiet():
        oneshot(
            model=model,
            dataset=dataset,
            recipe=modifiers,
            num_calibration_samples=len(ids),
            max_seq_length=calibration.shape[1],
            shuffle_calibration_samples=False,
            **({"processor": tokenizer} if tokenizer is not None else {}),
        )
    return model.eval()


def is_oneshot_compressed(model: nn.Module) -> bool:
    """Whether llm-compressor has quantized or sparsified ``model`` (so it saves as
    compressed-tensors)."""
    return any(hasattr(m, "quantization_scheme") for m in model.modules()) or bool(
        getattr(model.config, "quantization_config", None)
    )


def save_compressed_tensors(model: nn.Module, tokenizer: Any, out: str | Path) -> Path:
    """Save ``model`` (after :func:`run_oneshot`) in the compressed-tensors format; returns
    ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _quiet(), warnings.catch_warnings():
        # llm-compressor leaves its (CPU) offloading hooks on the model: nothing is offloaded
        warnings.filterwarnings("ignore", message="Attempting to save a model with offloaded")
        model.save_pretrained(out, save_compressed=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


@contextlib.contextmanager
def _quiet():
    """Silence llm-compressor's loguru logger and its progress bars' prints for a block."""
    from loguru import logger

    logger.disable("llmcompressor")
    logger.disable("compressed_tensors")
    logging.getLogger("llmcompressor").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.enable("llmcompressor")
        logger.enable("compressed_tensors")
