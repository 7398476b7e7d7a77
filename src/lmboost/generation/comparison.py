"""Backends compared on the same generation: the table of ``benchmarks/generation.py``
(BENCHMARKS.md, Backends)."""

from __future__ import annotations

from collections.abc import Sequence

from lmboost.backends.base import Backend
from lmboost.evaluation.report import markdown_table
from lmboost.evaluation.speed import timed
from lmboost.generation.generate import (
    GenerationConfig,
    Prompt,
    encode_prompt,
    generation_speed,
    resolve_chat,
)
from lmboost.models.loading import LoadedModel


def speed_record(backend: Backend | LoadedModel, prompts: Sequence[Prompt],
                 config: GenerationConfig, n: int = 1) -> dict:
    """:func:`lmboost.generation.generation_speed` of ``n`` samples per prompt as one JSON record:
    seconds, tokens, tokens_per_second, the load average before and after, the texts and the
    prompt tokens (with the model's chat template where it has one)."""
    speed, timing = timed(generation_speed, backend, prompts, config, n=n)
    chat = resolve_chat(backend.tokenizer, None)
    return {"seconds": speed.seconds, "tokens": speed.tokens,
            "tokens_per_second": speed.tokens_per_s, "load_average": timing["load_average"],
            "texts": speed.texts, "prompt_tokens": sum(
                len(encode_prompt(backend.tokenizer, p, chat)) for p in prompts)}


def backend_table(records: dict[tuple[str, str], dict]) -> str:
    """Markdown: one row per (backend, setting) record (seconds, tokens, tokens_per_second,
    texts, prompts, samples), by setting then backend; greedy texts are compared with hf's."""
    rows = []
    for (engine, name), r in sorted(records.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        hf = records.get(("hf", name)) if name == "greedy" and engine != "hf" else None
        same = hf and f"{sum(a == b for a, b in zip(hf['texts'], r['texts']))}/{len(r['texts'])}"
        rows.append([name, engine, f"{r['prompts']} x {r['samples']}", r["seconds"], r["tokens"],
                     r["tokens_per_second"], same])
    return markdown_table(
        rows, ["setting", "backend", "prompts x samples", "seconds", "generated tokens",
               "tokens/s", "identical to hf"],
        {"seconds": ".1f", "tokens/s": ".1f"}, align={"identical to hf": "right"})
