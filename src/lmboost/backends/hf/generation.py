"""Generation on transformers' ``model.generate``: left-padded batches, stop strings, and ``n``
samples sharing one prompt encoding.

transformers (checked in 5.23) implements ``num_return_sequences`` by ``repeat_interleave``-ing
``input_ids`` *before* the prefill forward, so it encodes every prompt n times. Here the prompt
minus its last token is run once, its KV cache is expanded n times
(``Cache.batch_repeat_interleave``) and ``model.generate`` resumes from that cache: per sample
only the last prompt token is re-run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from lmboost.backends.hf.calls import cache_kwargs, takes_logits_to_keep
from lmboost.backends.hf.state import pad_rows
from lmboost.generation import GenerationConfig, cut_at_stop
from lmboost.models.loading import LoadedModel


def context_window(model) -> int:
    """The model's context length (``max_position_embeddings``; 2048 when it declares none)."""
    config = model.config.get_text_config()
    return getattr(config, "max_position_embeddings", None) or 2048


@torch.inference_mode()
def generate_batch(
    loaded: LoadedModel, encoded: list[list[int]], config: GenerationConfig, n: int
) -> list[list[str]]:
    """One left-padded batch: prefill once, expand the cache n times, decode."""
    from transformers import DynamicCache, StoppingCriteriaList

    model, tokenizer = loaded.model, loaded.tokenizer
    device = loaded.device
    ids, mask = pad_rows(encoded, pad_id(tokenizer), device, left=True)
    width = ids.shape[1]

    max_new = min(config.max_new_tokens, context_window(model) - max(map(len, encoded)))
    if max_new < config.max_new_tokens:
        warnings.warn(
            f"Generating at most {max_new} new tokens (not {config.max_new_tokens}): the longest "
            "prompt of the batch leaves no more room in the context window.",
            stacklevel=3,
        )

    cache = None
    if n > 1 and width > 1:
        # Encode the prompt once (all but its last token); every sample reuses this cache.
        cache = DynamicCache(config=model.config)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {"logits_to_keep": 1} if takes_logits_to_keep(model) else {}
        model(
            input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
            use_cache=True, **cache_kwargs(model, cache), **kwargs,
        )
        cache.batch_repeat_interleave(n)
    if n > 1:
        ids, mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)

    stopping = StoppingCriteriaList()
    if config.stop:
        stopping.append(_StopOnStrings(tokenizer, config.stop, width))
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        generation_config=_hf_config(model, tokenizer, config, max_new),
        stopping_criteria=stopping,
        **cache_kwargs(model, cache),
    )
    texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    texts = [cut_at_stop(t, config.stop) for t in texts]
    return [texts[i : i + n] for i in range(0, len(texts), n)]


def _hf_config(model, tokenizer, config: GenerationConfig, max_new_tokens: int):
    """A transformers GenerationConfig with every sampling field set (none inherited)."""
    from transformers import GenerationConfig as HFGenerationConfig

    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    sampling = (
        {"temperature": config.temperature, "top_k": config.top_k, "top_p": config.top_p}
        if config.do_sample
        else {"temperature": None, "top_k": None, "top_p": None}
    )
    return HFGenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=config.do_sample,
        num_beams=1,
        pad_token_id=pad_id(tokenizer),
        eos_token_id=eos,
        **sampling,
    )


class _StopOnStrings:
    """Stopping criterion: a row is done once its new text contains one of the stop strings.

    Only the last few tokens are decoded at each step (enough to hold the longest stop string,
    even when every byte is its own token), so the check stays cheap for long completions.
    """

    def __init__(self, tokenizer, stop: Sequence[str], prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.prompt_width = prompt_width
        self.window = 4 * max(len(s.encode()) for s in self.stop) + 2

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        new = input_ids[:, self.prompt_width :][:, -self.window :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        done = [any(s in t for s in self.stop) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def pad_id(tokenizer) -> int:
    """The tokenizer's padding id: its pad token, else EOS, else 0."""
    pad = tokenizer.pad_token_id
    return pad if pad is not None else (tokenizer.eos_token_id or 0)
