"""Text generation: batched, stop strings, chat templates, n samples sharing one prompt encoding;
and resumable runs over many prompts (``run_generate``, ``GenerateRunConfig``, ``read_prompts``,
``summarise_run``, ``same_rain_trace``, from :mod:`lmboost.generation.run`, imported on first
use)."""

import importlib

from lmboost.generation.generate import (
    CHAT_MODES,
    GenerationConfig,
    GenerationError,
    GenerationSpeed,
    Prompt,
    check_request,
    cut_at_stop,
    encode_prompt,
    format_prompt,
    generate,
    generation_speed,
    resolve_chat,
)

__all__ = [
    "CHAT_MODES",
    "GenerationConfig",
    "GenerationError",
    "GenerationSpeed",
    "Prompt",
    "check_request",
    "cut_at_stop",
    "encode_prompt",
    "format_prompt",
    "generate",
    "generation_speed",
    "resolve_chat",
    "GenerateRunConfig",
    "read_prompts",
    "run_generate",
    "same_rain_trace",
    "summarise_run",
]

#: Names of :mod:`lmboost.generation.run`, which imports the decoding package (that imports this
#: one), so it is loaded on first use.
_RUN = ("GenerateRunConfig", "read_prompts", "run_generate", "same_rain_trace", "summarise_run")


def __getattr__(name: str):
    if name in _RUN:
        return getattr(importlib.import_module("lmboost.generation.run"), name)
    raise AttributeError(f"module 'lmboost.generation' has no attribute {name!r}")
