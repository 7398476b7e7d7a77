"""Generation settings and prompts, and ``generate(model, prompts, config, n)`` on any backend.

What lmboost adds to a backend's decoding:

* prompts are (user message, start of the reply) or plain text; a chat template is applied when
  the tokenizer has one (``chat=None``), or when forced (``chat=True``): :func:`encode_prompt`
  gives the exact token ids, so every backend sees the same tokens;
* stop strings end a completion as soon as they appear and are cut from its text;
* ``n`` completions per prompt share one encoding of the prompt;
* seeded sampling is reproducible; prompts longer than the context window raise an error.

:func:`generation_speed` times a generate call: the tokens that came back per second.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmboost.errors import GenerationError

if TYPE_CHECKING:
    from lmboost.backends.base import Backend
    from lmboost.models.loading import LoadedModel

#: A prompt is the text to continue, or (user message, start of the model's reply). Under a chat
#: template the user message is wrapped in it and the reply start follows the assistant header;
#: without one the two are simply concatenated.
Prompt = str | tuple[str, str]


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
    model: Backend | LoadedModel,
    prompts: Sequence[Prompt],
    config: GenerationConfig | None = None,
    *,
    n: int = 1,
    chat: bool | None = None,
    batch_size: int | None = None,
) -> list[list[str]]:
    """``n`` completions of each prompt (a list of n strings per prompt, in input order), by
    ``model``: a backend, or a loaded transformers model (run on the HF backend).

    ``chat=None`` applies the tokenizer's chat template when it has one; True/False force it.
    ``batch_size`` prompts run at once where the backend batches by request (HF); when a prompt
    plus ``max_new_tokens`` exceeds the context window, fewer tokens are generated.
    """
    from lmboost.backends import as_backend

    return as_backend(model).generate(prompts, config, n=n, chat=chat, batch_size=batch_size)


@dataclass(frozen=True)
class GenerationSpeed:
    """One timed generate call: its ``texts`` (n per prompt), the ``tokens`` they hold (each
    text re-encoded without special tokens) and the ``seconds`` it took."""

    texts: list[list[str]]
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def generation_speed(model: Backend | LoadedModel, prompts: Sequence[Prompt],
                     config: GenerationConfig | None = None, *, warmup: int = 0,
                     **options: Any) -> GenerationSpeed:
    """Time :func:`generate` of ``prompts`` (``options``: its ``n``, ``chat``, ``batch_size``),
    after an untimed warm-up call on the first ``warmup`` prompts with the same settings."""
    from lmboost.backends import as_backend

    backend = as_backend(model)
    if warmup:
        backend.generate(prompts[:warmup], config, **options)
    start = time.perf_counter()
    texts = backend.generate(prompts, config, **options)
    seconds = time.perf_counter() - start
    flat = [text for row in texts for text in row]
    encoded = backend.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    return GenerationSpeed(texts, sum(len(ids) for ids in encoded), seconds)


def check_request(
    tokenizer, prompts: Sequence[Prompt], config: GenerationConfig, n: int, chat: bool | None,
    window: int,
) -> list[list[int]]:
    """Validate a generation request; the token ids of each prompt. Raises GenerationError."""
    config.validate()
    if isinstance(prompts, str) or len(prompts) == 0:
        raise GenerationError("No prompts: pass a non-empty list of prompt strings.")
    if n < 1:
        raise GenerationError(f"n (completions per prompt) must be at least 1, not {n}.")
    use_chat = resolve_chat(tokenizer, chat)
    encoded = [encode_prompt(tokenizer, p, use_chat) for p in prompts]
    for i, ids in enumerate(encoded):
        if len(ids) >= window:
            raise GenerationError(
                f"Prompt {i} has {len(ids)} tokens but the model's context window is {window}: "
                "shorten it (fewer demonstrations) or use a model with a longer context."
            )
    return encoded


#: ``--chat`` / ``chat:`` values: auto (when the tokenizer has a template), on, off.
CHAT_MODES: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


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


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]
