"""Several compression runs side by side: the generation speed of a saved model, and the report
of ``benchmarks/compression.py`` (docs/compression-results.md)."""

from __future__ import annotations

from pathlib import Path

from lmboost.backends import load_backend
from lmboost.evaluation.report import markdown_table, mean_std
from lmboost.generation import GenerationConfig, generation_speed

# Wanda (Sun et al., ICLR 2024), LLaMA-2-7B, WikiText-2 perplexity.
ANCHOR = (
    "LLaMA-2-7B (Wanda paper): dense 5.12; 50%: magnitude 14.89, SparseGPT 6.51, Wanda 6.42; "
    "2:4: magnitude 54.59, SparseGPT 10.17, Wanda 11.02"
)
STORY_PROMPTS = [f"Write a short story about a {w} who learns to sail." for w in (
    "cat", "farmer", "robot", "teacher", "child", "baker", "pilot", "painter")]


def saved_generation_speed(model: str | Path, backend: str) -> dict:
    """Greedy generation of the 8 ``STORY_PROMPTS`` (in the chat template where the tokenizer
    has one: Gemma-3-270M's has none) x at most 64 new tokens by a
    saved model (or any model spec) on ``backend`` ("hf" or "vllm"), after one warm-up prompt
    (:func:`lmboost.generation.generation_speed`); lmboost's own int8 format loads on hf only."""
    engine = load_backend(str(model), backend, device="cpu")
    speed = generation_speed(engine, STORY_PROMPTS, GenerationConfig(max_new_tokens=64),
                             chat=None, batch_size=len(STORY_PROMPTS), warmup=1)
    return {"backend": backend, "tokens": speed.tokens, "seconds": speed.seconds,
            "tokens_per_s": speed.tokens_per_s}


def comparison_summary(table: dict[str, dict[str, dict]]) -> dict:
    """``table`` (model -> configuration -> ``results.json``) cut to its measurements."""
    return {model: {name: {k: r[k] for k in ("before", "after", "icl", "sweep", "wall_time_s")}
                    for name, r in runs.items()} for model, runs in table.items()}


def comparison_report(
    table: dict[str, dict[str, dict]], speeds: dict[str, dict[str, dict]], *,
    ppl_tokens: int, icl_limit: int, icl_seeds: int,
) -> str:
    """Markdown: per model, one row per configuration (dense first) with generation speeds from
    ``speeds`` (model -> ``"<configuration or dense>/<backend>"`` -> :func:`saved_generation_speed`
    or ``{"error": ...}``), the magnitude/Wanda sweep if run, and the anchor."""
    lines = [
        "# Compression: what it costs",
        "",
        f"WikiText-2 test perplexity on the first {ppl_tokens} tokens (window 512, stride "
        f"256); SST-2 4-shot accuracy on {icl_limit} dev examples x {icl_seeds} seeds, "
        "uncalibrated / batch-calibrated. Forward: transformers forward tokens/s over 1 x 256 "
        "tokens (best of 3) of the model in memory after compression, as a ratio to the dense "
        "model timed in the same process (llm-compressor's quantized Linears are fake-quantized "
        "there). Generation: greedy tokens/s, 8 prompts x 64 new tokens, each saved model in a "
        "fresh process, with transformers (hf) and vLLM's CPU build. Disk: the saved "
        "safetensors.",
        "",
        f"Anchor: {ANCHOR}.",
        "",
    ]
    for model, runs in table.items():
        speed = speeds.get(model, {})
        point = {n: r for n, r in runs.items() if n != "sweep"}
        lines += [f"## {model}", "", markdown_table(
            [_row("dense", next(iter(point.values())), "before", speed)]
            + [_row(name, result, "after", speed) for name, result in point.items()],
            ["configuration", "parameters", "disk (MB)", "forward vs dense",
             "generation hf (tok/s)", "generation vLLM (tok/s)", "perplexity",
             "SST-2 none (%)", "SST-2 BC (%)"],
            {"disk (MB)": ".0f", "forward vs dense": "{:.2f}x", "generation hf (tok/s)": _speed,
             "generation vLLM (tok/s)": _speed, "perplexity": ".2f"},
            align=dict.fromkeys(range(9), "left"),
        ), ""] if point else []
        if "sweep" in runs:
            sweep = runs["sweep"]
            dense = sweep["before"]["perplexity"]["perplexity"]
            methods = list(dict.fromkeys(row["method"] for row in sweep["sweep"]))
            ppl = {(row["method"], row["amount"]): row["perplexity"] for row in sweep["sweep"]}
            rows = [[f"{amount:.0%}", *(ppl.get((m, amount)) for m in methods)]
                    for amount in sorted({amount for _, amount in ppl})]
            lines += [f"Sweep (perplexity; dense {dense:.2f}):", "", markdown_table(
                rows, ["amount", *methods], dict.fromkeys(methods, ".2f"),
                align=dict.fromkeys(range(len(methods) + 1), "left")), "",
                      f"![sweep]({model}/sweep/sweep.png)", ""]
    return "\n".join(lines) + "\n"


def _row(name: str, result: dict, stage: str, speed: dict[str, dict]) -> list:
    """One configuration's cells (``stage`` "before" is the dense model)."""
    stats, icl = result[stage], (result["icl"] or {}).get(stage, {})
    key = "dense" if stage == "before" else name
    return [name, f"{stats['parameters']:,}", stats.get("disk_bytes", stats["weight_bytes"]) / 1e6,
            stats["tokens_per_s"] / result["before"]["tokens_per_s"],
            *(speed.get(f"{key}/{b}") for b in ("hf", "vllm")),
            stats["perplexity"]["perplexity"], mean_std(icl.get("none")), mean_std(icl.get("bc"))]


def _speed(entry: dict) -> str:
    return f"{entry['tokens_per_s']:.1f}" if "tokens_per_s" in entry else "does not load"
