"""Texts to vectors: the last hidden layer of a sentence encoder or a causal LM, pooled.

Sentence encoders (``load_model`` marks them ``is_encoder``; e.g. ``minilm-l6-v2``):

- ``mean`` (default): the average over every token the attention mask keeps, [CLS] and [SEP]
  included; exactly the pooling sentence-transformers applies to all-MiniLM-L6-v2. Its final
  L2 normalisation is left out: the association tests use cosines only, which ignore length.
- ``first``: the [CLS] vector, the representation May et al. (2019) took from BERT.

Causal LMs:

- ``mean`` (default): the average over the text's own tokens (special tokens such as BOS are fed
  to the model but left out of the average: BOS has the same, often very large, state in every
  text and would pull all vectors together). Every token's state counts, so the vector
  describes the whole text.
- ``last``: the state of the final token of the text, the only one that has seen all of it.
  It depends heavily on what that token is: every SEAT sentence ends in a period, so the vectors
  largely describe "a period after something", and small differences dominate the cosines.

Alternatives not offered here: max pooling; position-weighted means (SGPT, Muennighoff 2022);
last-token pooling after an instruction such as 'This sentence : "..." means in one word:"'
(PromptEOL, Jiang et al. 2023); middle rather than last layers.

Texts are batched with right padding, which changes no vector: an encoder's attention mask hides
the padding, and in a causal LM a token never attends to the padding after it (positions start at
0 for every text either way). Texts are sorted by length so that each batch pads little.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmboost.backends import as_backend
from lmboost.errors import BiasTestError, ConfigError
from lmboost.models.loading import LoadedModel

POOLINGS = ("mean", "last", "first")
ENCODER_POOLINGS = ("mean", "first")
CAUSAL_POOLINGS = ("mean", "last")


def check_pooling(loaded: LoadedModel, pooling: str) -> None:
    """Raise LmboostError, with the fix, when ``pooling`` does not suit the kind of model."""
    if pooling not in POOLINGS:
        raise BiasTestError(f"Unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}.")
    if loaded.is_encoder and pooling not in ENCODER_POOLINGS:
        raise BiasTestError(
            f"pooling {pooling!r} is for causal LMs, but {loaded.spec} is a bidirectional "
            "sentence encoder (its last token is always [SEP]); use mean (the pooling it was "
            "trained with) or first ([CLS])."
        )
    if not loaded.is_encoder and pooling not in CAUSAL_POOLINGS:
        raise BiasTestError(
            f"pooling {pooling!r} is for sentence encoders: in the causal LM {loaded.spec} the "
            "first token sees nothing after it, so texts that start alike get the same vector; "
            "use mean or last."
        )


def encode(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    pooling: str = "mean",
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """One float32 vector per text (len(texts) x hidden size), in the order of ``texts``.

    ``pooling`` is mean or first for sentence encoders, mean or last for causal LMs (see the
    module docstring); ``batch_size`` texts go through the model at once; ``progress`` shows a
    progress bar over the batches.
    """
    check_pooling(loaded, pooling)
    if not texts:
        raise BiasTestError("encode needs at least one text.")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}.")
    vectors = as_backend(loaded).embed(texts, pooling, batch_size=batch_size, progress=progress)
    return vectors.numpy()
