"""Models to train: where their weights are, the head each recipe puts on them, and the losses.

- ``classify`` on a causal LM: ``AutoModelForSequenceClassification`` over the same weights (for
  Llama, Qwen, Gemma: a linear ``score`` head, new and randomly initialised, reading the state of
  the last non-pad token). On an encoder such as ``minilm-l6-v2``: the BERT-style
  ``...ForSequenceClassification`` head (pooler + classifier) over its weights.
- ``lm`` and ``sft``: ``AutoModelForCausalLM`` (encoders are refused).

A tokenizer without a pad token gets its EOS token as pad, and the model config is told, so
batches can be padded and the classification head finds the last real token. Specs resolve through
:func:`lmboost.models.locate_model`, and a model's own code runs only with ``trust_remote_code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmboost.errors import ModelLoadError, RecipeError, RemoteCodeError
from lmboost.models import check_remote_code, locate_model

ENCODER_TYPES = frozenset(
    {"bert", "roberta", "distilbert", "xlm-roberta", "electra", "mpnet", "deberta", "deberta-v2"}
)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's transformers weights are and what architecture they hold."""

    spec: str
    path: str
    model_type: str
    is_encoder: bool
    trust_remote_code: bool = False


def resolve_model(spec: str, trust_remote_code: bool = False) -> ModelSource:
    """The weights behind ``spec`` (catalog alias, directory, ``.gguf`` file or hub id); a GGUF
    is converted once to the float cache of :mod:`lmboost.models`. A model that needs its own
    code is refused unless ``trust_remote_code``."""
    from transformers import AutoConfig

    where = locate_model(spec)
    if not isinstance(where, str):
        check_remote_code(where, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(str(where), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err):
            raise RemoteCodeError(
                f"{spec!r} needs its own Python code to load; if you trust its source, pass "
                "--trust-remote-code (Python: trust_remote_code=True)."
            ) from None
        raise ModelLoadError(f"Cannot read the model config of {spec!r}: {err}") from None
    return ModelSource(
        spec, str(where), config.model_type, config.model_type in ENCODER_TYPES,
        trust_remote_code,
    )


def load_tokenizer(source: ModelSource) -> Any:
    """The model's tokenizer, padding on the right, with a pad token (EOS when it had none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        source.path, trust_remote_code=source.trust_remote_code
    )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"The tokenizer of {source.spec} has neither pad nor EOS token.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_for_training(
    source: ModelSource, recipe: str, tokenizer: Any, labels: Sequence[str] | None = None
) -> nn.Module:
    """The float32 model for ``recipe``: with a new classification head over ``labels`` for
    classify, the causal LM itself for lm and sft."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        if recipe == "classify":
            if not labels:
                raise RecipeError("A classification model needs the class names.")
            model = AutoModelForSequenceClassification.from_pretrained(
                source.path,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={name: i for i, name in enumerate(labels)},
                dtype=torch.float32,
                trust_remote_code=source.trust_remote_code,
            )
        else:
            if source.is_encoder:
                raise RecipeError(
                    f"Recipe {recipe} trains a causal LM, but {source.spec} is an encoder "
                    f"({source.model_type}); use it with recipe classify."
                )
            model = AutoModelForCausalLM.from_pretrained(
                source.path, dtype=torch.float32, trust_remote_code=source.trust_remote_code
            )
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Cannot load {source.spec} for recipe {recipe}: {err}") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


# --------------------------------------------------------------------------- losses


def class_weights(
    labels: Sequence[int], n_classes: int, weights: str | Sequence[float]
) -> torch.Tensor:
    """Per-class loss weights: ``"balanced"`` gives n / (K n_k) from the training ``labels``
    (scikit-learn's rule), a list is used as given (one weight per class)."""
    if isinstance(weights, str):
        counts = torch.bincount(torch.as_tensor(list(labels)), minlength=n_classes).double()
        if (counts == 0).any():
            missing = [i for i in range(n_classes) if counts[i] == 0]
            raise RecipeError(
                f"class_weights balanced: classes {missing} have no training example."
            )
        return (counts.sum() / (n_classes * counts)).float()
    if len(weights) != n_classes:
        raise RecipeError(
            f"class_weights gives {len(weights)} weights for {n_classes} classes; give one per "
            "class."
        )
    return torch.tensor(list(weights), dtype=torch.float32)


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of N x K ``logits``; with ``weights``, sum_i w[y_i] CE_i / sum_i w[y_i]."""
    if weights is not None:
        weights = weights.to(device=logits.device, dtype=torch.float32)
    return F.cross_entropy(logits.float(), labels.to(logits.device), weight=weights)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of B x T x V ``logits`` against ``labels`` shifted by one,
    skipping positions labelled -100."""
    shifted = labels[:, 1:].to(logits.device)
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), shifted.reshape(-1),
        ignore_index=-100,
    )


def loss_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The task loss: :func:`classification_loss` for N x K logits, :func:`causal_lm_loss` for
    B x T x V logits."""
    if logits.dim() == 2:
        return classification_loss(logits, labels, weights)
    return causal_lm_loss(logits, labels)
