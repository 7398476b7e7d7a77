"""What pruning and quantization cost, per model: size, speed, perplexity, ICL accuracy.

Every configuration in ``CONFIGS`` (``sweep`` adds magnitude vs Wanda at 10-70%) goes through
:func:`lmboost.compression.compress` into ``--results/<model>/<config>/`` (resumable; the dense
model's ICL scores are shared); ``--speed`` then times greedy generation of each saved model in
a fresh process with transformers and vLLM (``speed.json``). Writes ``--results/summary.md``
and ``summary.json``; see docs/compression-results.md.

    .venv/bin/python benchmarks/compression.py --models smollm2-135m-instruct,gemma3-270m --speed
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from lmboost.compression.quantize import torchao_available
from lmboost.compression.runner import CompressConfig, run_compression
from lmboost.evaluation.records import read_json, write_json, write_text
from lmboost.evaluation.report import markdown_table, mean_std
from lmboost.evaluation.speed import timed

CONFIGS = {
    "magnitude-0.5": {"prune": "magnitude:0.5"},
    "wanda-0.5": {"prune": "wanda:0.5"},
    "sparsegpt-0.5": {"prune": "sparsegpt:0.5"},
    "wanda-2:4": {"prune": "wanda:2:4"},
    "sparsegpt-2:4": {"prune": "sparsegpt:2:4"},
    "gptq-w4a16": {"quantize": "w4a16"},
    "smoothquant-w8a8": {"quantize": "w8a8"},
    "int8-weight": {"quantize": "int8-weight"},
    "int8-dynamic": {"quantize": "int8-dynamic"},
    "int8-dynamic-torchao": {"quantize": "int8-dynamic-torchao"},
    "neurons-act-0.25": {"prune": "neurons-act:0.25"},
    "neurons-act-0.25-lora": {"prune": "neurons-act:0.25", "recover_steps": 100},
}
SWEEP = "magnitude,wanda:0.1,0.3,0.5,0.7"
# Wanda (Sun et al., ICLR 2024), LLaMA-2-7B, WikiText-2 perplexity.
ANCHOR = (
    "LLaMA-2-7B (Wanda paper): dense 5.12; 50%: magnitude 14.89, SparseGPT 6.51, Wanda 6.42; "
    "2:4: magnitude 54.59, SparseGPT 10.17, Wanda 11.02"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma list of configurations (default: all; 'sweep' adds the "
                             "magnitude/Wanda sweep)")
    parser.add_argument("--ppl-tokens", type=int, default=2048)
    parser.add_argument("--icl-limit", type=int, default=200)
    parser.add_argument("--icl-seeds", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/compression"))
    parser.add_argument("--speed", action="store_true",
                        help="also time greedy generation of every saved model, each in its "
                             "own process, with transformers and (where it loads) vLLM")
    parser.add_argument("--time-one", nargs=2, metavar=("MODEL", "BACKEND"),
                        help=argparse.SUPPRESS)  # the --speed stage's child process
    args = parser.parse_args(argv)
    if args.time_one:
        print(json.dumps(time_generation(*args.time_one)), flush=True)
        return 0

    names = args.configs.split(",")
    if "int8-dynamic-torchao" in names and not torchao_available():
        print("torchao not installed: skipping int8-dynamic-torchao", flush=True)
        names.remove("int8-dynamic-torchao")
    table: dict[str, dict[str, dict]] = {}
    speeds: dict[str, dict[str, dict]] = {}
    for model in args.models.split(","):
        table[model] = {}
        for name in names:
            out = args.results / model / name
            if not (out / "results.json").exists():
                print(f"== {model} / {name}", flush=True)
                if name != "sweep":
                    _share_dense_scores(args.results / model, out)
                _, timing = timed(run_compression, CompressConfig(
                    out=out, model=model, ppl_tokens=args.ppl_tokens,
                    icl=name != "sweep", icl_limit=args.icl_limit, icl_seeds=args.icl_seeds,
                    **({"sweep": SWEEP} if name == "sweep" else CONFIGS[name])))
                print(f"   {timing['seconds']:.0f} s", flush=True)
            table[model][name] = read_json(out / "results.json")
        if args.speed:
            speeds[model] = _speed_stage(model, table[model], args.results / model)
    write_json(args.results / "summary.json", {
        model: {name: {k: r[k] for k in ("before", "after", "icl", "sweep", "wall_time_s")}
                for name, r in runs.items()}
        for model, runs in table.items()
    })
    write_text(args.results / "summary.md", text := render(table, args, speeds))
    print(text)
    return 0


def time_generation(model: str, backend: str) -> dict:
    """Greedy generation of 8 fixed story prompts (chat template) x at most 64 new tokens on
    ``backend``, after one warm-up prompt (:func:`lmboost.generation.generation_speed`)."""
    from lmboost.backends import load_backend
    from lmboost.backends.hf import HFBackend
    from lmboost.compression import load_compressed
    from lmboost.generation import GenerationConfig, generation_speed

    prompts = [f"Write a short story about a {w} who learns to sail." for w in (
        "cat", "farmer", "robot", "teacher", "child", "baker", "pilot", "painter")]
    engine = (HFBackend(load_compressed(model))  # lmboost's own int8 format
              if backend == "hf" and (Path(model) / "compression.json").is_file()
              else load_backend(model, backend, device="cpu"))
    speed = generation_speed(engine, prompts, GenerationConfig(max_new_tokens=64), chat=True,
                             batch_size=len(prompts), warmup=1)
    return {"backend": backend, "tokens": speed.tokens, "seconds": speed.seconds,
            "tokens_per_s": speed.tokens_per_s}


def _speed_stage(model: str, runs: dict[str, dict], root: Path) -> dict[str, dict]:
    """Time every saved model (and the dense one) once per backend, each in a fresh process;
    results go to ``root/speed.json`` as they finish (a rerun times only what is missing)."""
    path = root / "speed.json"
    speed = read_json(path) if path.exists() else {}
    targets = {"dense": model, **{n: r["saved_model"] for n, r in runs.items() if n != "sweep"}}
    for name, spec in targets.items():
        for backend in ("hf", "vllm"):
            key = f"{name}/{backend}"
            if key in speed:
                continue
            if backend == "vllm" and (Path(spec) / "compression.json").is_file():
                speed[key] = {"error": "lmboost's own int8 format: vLLM does not load it"}
                continue
            print(f"== speed {model} / {key}", flush=True)
            done = subprocess.run(
                [sys.executable, __file__, "--time-one", spec, backend],
                capture_output=True, text=True, timeout=1800,
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            speed[key] = json.loads(lines[-1]) if done.returncode == 0 and lines else {
                "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
            write_json(path, speed)
    return speed


def _share_dense_scores(model_root: Path, out: Path) -> None:
    """Copy the dense model's stored ICL scores from a finished configuration into ``out``."""
    done = next(iter(sorted(model_root.glob("*/icl/before/scores"))), None)
    target = out / "icl" / "before" / "scores"
    if done is not None and done != target and not target.exists():
        shutil.copytree(done, target)


def render(
    table: dict[str, dict[str, dict]], args: argparse.Namespace,
    speeds: dict[str, dict[str, dict]],
) -> str:
    """Markdown: one table per model (dense first), the sweep, and the anchor."""
    lines = [
        "# Compression: what it costs",
        "",
        f"WikiText-2 test perplexity on the first {args.ppl_tokens} tokens (window 512, stride "
        f"256); SST-2 4-shot accuracy on {args.icl_limit} dev examples x {args.icl_seeds} seeds, "
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
    stats, icl = result[stage], result["icl"][stage]
    key = "dense" if stage == "before" else name
    return [name, f"{stats['parameters']:,}", stats.get("disk_bytes", stats["weight_bytes"]) / 1e6,
            stats["tokens_per_s"] / result["before"]["tokens_per_s"],
            *(speed.get(f"{key}/{b}") for b in ("hf", "vllm")),
            stats["perplexity"]["perplexity"], mean_std(icl["none"]), mean_std(icl["bc"])]


def _speed(entry: dict) -> str:
    return f"{entry['tokens_per_s']:.1f}" if "tokens_per_s" in entry else "does not load"


if __name__ == "__main__":
    sys.exit(main())
