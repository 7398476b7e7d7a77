"""Text generation: batched, stop strings, chat templates, n samples sharing one prompt encoding."""

from lmboost.generation.generate import (
    GenerationConfig,
    GenerationError,
    Prompt,
    check_request,
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
    "check_request",
    "cut_at_stop",
    "encode_prompt",
    "format_prompt",
    "generate",
    "resolve_chat",
]
