"""LoRA with PEFT: low-rank adapters on the attention and MLP projections, the rest frozen.

Each adapted ``Linear`` W gets W x + (alpha / r) B A x with A (r x in) random, B (out x r) zero
(Hu et al. 2021), so training starts from the base model. Target modules per architecture:

===============================  ===================================================
model_type                       modules
===============================  ===================================================
llama, mistral, qwen2, qwen3,    q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
gemma, gemma2, gemma3(_text)     down_proj
bert, roberta, electra, ...      query, key, value, dense (dense includes the pooler)
anything else                    PEFT's "all-linear"
===============================  ===================================================

For classification the new head (``score`` / ``classifier``) is trained in full alongside
(PEFT's ``modules_to_save``); the base weights stay bit-identical. Adapters are saved in PEFT's
format (``adapter_config.json`` + ``adapter_model.safetensors``, loadable with
``peft.AutoPeftModelFor...``); :func:`merge_and_save` writes a plain transformers model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from lmboost.training.recipes import LoraSettings

DECODER_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ENCODER_TARGETS = ["query", "key", "value", "dense"]
TARGET_MODULES: dict[str, list[str]] = {
    **{t: DECODER_TARGETS for t in (
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
    )},
    **{t: ENCODER_TARGETS for t in ("bert", "roberta", "xlm-roberta", "electra")},
}
TASK_TYPES = {"classify": "SEQ_CLS", "lm": "CAUSAL_LM", "sft": "CAUSAL_LM"}


def target_modules(model_type: str) -> list[str] | str:
    """The module names LoRA adapts in ``model_type`` (``"all-linear"`` when not in the table)."""
    return TARGET_MODULES.get(model_type, "all-linear")


def apply_lora(model: nn.Module, settings: LoraSettings, model_type: str, recipe: str) -> Any:
    """``model`` wrapped as a PEFT model with fresh LoRA adapters; only they (and a
    classification head) are trainable."""
    from peft import LoraConfig, get_peft_model

    targets: list[str] | str = settings.target_modules or target_modules(model_type)
    if targets == ["all-linear"]:
        targets = "all-linear"
    config = LoraConfig(
        task_type=TASK_TYPES[recipe],
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
    )
    return get_peft_model(model, config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total


def save_adapter(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Save the adapters (and a trained head) in PEFT format with the tokenizer; returns the
    folder."""
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def merge_and_save(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Fold the adapters into the base weights and save a plain transformers model.

    Merging changes ``model``'s base layers in place: call it after the adapters are saved.
    """
    out = Path(out_dir)
    merged = model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
