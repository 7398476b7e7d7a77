"""``generate(loaded, prompts, config, n)``: batched sampling on top of transformers' ``generate``.

What this adds to ``model.generate``:

* prompts are left-padded into batches of ``batch_size``; a chat template is applied when the
  tokenizer has one (``chat=None``), or when forced (``chat=True``);
* stop strings end a row's generation as soon as they appear and are cut from its text;
* ``n`` completions per prompt share one encoding of the prompt. transformers (checked in 5.23)
  implements ``num_return_sequences`` by ``repeat_interleave``-ing ``input_ids`` *before* the
  prefill forward, so it encodes every prompt n times. Here the prompt minus its last token is
  run once, its KV cache is expanded n times (``Cache.batch_repeat_interleave``) and
  ``model.generate`` resumes from that cache: per sample only the last prompt token is re-run;
* seeded sampling is reproducible; prompts longer than the context window raise an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmboost.errors import LmboostError
from lmboost.models.calls import cache_kwargs, takes_logits_to_keep
from lmboost.models.loading import LoadedModel

#: A prompt is the text to continue, or (user message, start of the model's reply). Under a chat
#: template the user message is wrapped in it and the reply start follows the assistant header;
#: without one the two are simply concatenated.
Prompt = str | tuple[str, str]


class GenerationError(LmboostError):
    """A generation request cannot be served (no prompts, prompt too long, bad settings)."""


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. Greedy unless ``do_sample``; ``top_k=0`` and ``top_p=1`` switch those
    filters off; ``stop`` strings end a completion (and are not part of it); ``seed``, when set,
    seeds torch's global generator at the start of :func:`generate`, so that the same call
    draws the same samples."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def validate(self) -> None:
        """Raise GenerationError naming the first bad setting."""
        if self.max_new_tokens < 1:
            raise GenerationError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}.")
        if self.do_sample and not self.temperature > 0:
            raise GenerationError(f"temperature must be > 0 when sampling, not {self.temperature}.")
        if self.top_k < 0:
            raise GenerationError(f"top_k must be >= 0 (0 = off), not {self.top_k}.")
        if not 0 < self.top_p <= 1:
            raise GenerationError(f"top_p must be in (0, 1], not {self.top_p}.")
        if isinstance(self.stop, str) or any(not s for s in self.stop):
            raise GenerationError("stop must be a tuple of non-empty strings.")


def generate(
    loaded: LoadedModel,
    prompts: Sequence[Prompt],
    config: GenerationConfig | None = None,
    *,
    n: int = 1,
    chat: bool | None = None,
    batch_size: int = 8,
) -> list[list[str]]:
    """``n`` completions of each prompt (a list of n strings per prompt, in input order).

    ``chat=None`` applies the tokenizer's chat template when it has one; True/False force it.
    Prompts are run ``batch_size`` at a time (``batch_size * n`` rows while decoding). When a
    prompt plus ``max_new_tokens`` exceeds the context window, fewer tokens are generated.
    """
    config = config or GenerationConfig()
    config.validate()
    if loaded.is_encoder:
        raise GenerationError(f"'{loaded.spec}' is an encoder; generation needs a causal LM.")
    if isinstance(prompts, str) or len(prompts) == 0:
        raise GenerationError("No prompts: pass a non-empty list of prompt strings.")
    if n < 1:
        raise GenerationError(f"n (completions per prompt) must be at least 1, not {n}.")
    if batch_size < 1:
        raise GenerationError(f"batch_size must be at least 1, not {batch_size}.")
    use_chat = resolve_chat(loaded.tokenizer, chat)
    encoded = [encode_prompt(loaded.tokenizer, p, use_chat) for p in prompts]
    window = context_window(loaded.model)
    for i, ids in enumerate(encoded):
        if len(ids) >= window:
            raise GenerationError(
                f"Prompt {i} has {len(ids)} tokens but the model's context window is {window}: "
                "shorten it (fewer demonstrations) or use a model with a longer context."
            )
    if config.seed is not None:
        torch.manual_seed(config.seed)
    results: list[list[str]] = []
    for start in range(0, len(encoded), batch_size):
        results.extend(_generate_batch(loaded, encoded[start : start + batch_size], config, n))
    return results


def resolve_chat(tokenizer, chat: bool | None) -> bool:
    """Whether to apply a chat template: ``chat`` if given, else whether the tokenizer has one."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat and not has_template:
        raise GenerationError("chat=True, but the tokenizer has no chat template.")
    return has_template if chat is None else chat


def format_prompt(tokenizer, prompt: Prompt, chat: bool) -> str:
    """The text the model sees for ``prompt`` (see :data:`Prompt`)."""
    user, reply = (prompt, "") if isinstance(prompt, str) else prompt
    if not isinstance(user, str) or not isinstance(reply, str):
        raise GenerationError(f"A prompt must be a string or a (user, reply) pair, not {prompt!r}.")
    if not chat:
        return user + reply
    messages = [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + (
        reply.lstrip() if reply else ""
    )


def encode_prompt(tokenizer, prompt: Prompt, chat: bool) -> list[int]:
    """Token ids of ``prompt``; a chat template brings its own special tokens."""
    text = format_prompt(tokenizer, prompt, chat)
    ids = list(tokenizer(text, add_special_tokens=not chat)["input_ids"])
    if not ids:
        raise GenerationError("A prompt encodes to no tokens: pass non-empty text.")
    return ids


def context_window(model) -> int:
    """The model's context length (``max_position_embeddings``; 2048 when it declares none)."""
    config = model.config.get_text_config()
    return getattr(config, "max_position_embeddings", None) or 2048


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


@torch.inference_mode()
def _generate_batch(
    loaded: LoadedModel, encoded: list[list[int]], config: GenerationConfig, n: int
) -> list[list[str]]:
    """One left-padded batch: prefill once, expand the cache n times, decode."""
    from transformers import DynamicCache, StoppingCriteriaList

    model, tokenizer = loaded.model, loaded.tokenizer
    device = loaded.device
    pad = _pad_id(tokenizer)
    width = max(len(ids) for ids in encoded)
    ids = torch.full((len(encoded), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(encoded):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long, device=device)
        mask[row, width - len(seq) :] = 1

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
        pad_token_id=_pad_id(tokenizer),
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


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else (tokenizer.eos_token_id or 0)

