"""Text generation: batched, stop strings, chat templates, n samples sharing one prompt encoding."""

from lmboost.generation.generate import (
    CHAT_MODES,
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
    "CHAT_MODES",
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
