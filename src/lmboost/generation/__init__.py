"""Text generation: batched, stop strings, chat templates, n samples sharing one prompt encoding."""

from lmboost.generation.generate import (
    GenerationConfig,
    GenerationError,
    Prompt,
    context_window,
    cut_at_stop,
    encode_prompt,
    format_prompt,
    generate,
    resolve_chat,
)

__all__ = [
    "GenerationConfig",
    "GenerationError",
    "Prompt",
    "context_window",
    "cut_at_stop",
    "encode_prompt",
    "format_prompt",
    "generate",
    "resolve_chat",
]
