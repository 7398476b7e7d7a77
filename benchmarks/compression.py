"""What pruning and quantization cost, per model: size, speed, perplexity, ICL accuracy.

Each configuration in ``CONFIGS`` through ``run_compression`` (resumable), ``--speed`` timing
each saved model in a fresh process; method and tables: docs/compression-results.md.

    .venv/bin/python benchmarks/compression.py --models smollm2-135m-instruct,gemma3-270m --speed
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from lmboost.compression.comparison import comparison_report, comparison_summary
from lmboost.compression.quantize import torchao_available
from lmboost.compression.runner import CompressConfig, run_compression
from lmboost.evaluation.records import read_json, write_json, write_text
from lmboost.evaluation.speed import timed
from lmboost.models.loading import is_lmboost_compressed

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
    "neurons-act-0.25-lora": {
        "prune": "neurons-act:0.25", "recover_steps": 100, "recover_lr": 2e-4},
    "neurons-act-0.25-lora-lr1e-3": {
        "prune": "neurons-act:0.25", "recover_steps": 100, "recover_lr": 1e-3},
}
SWEEP = "magnitude,wanda:0.1,0.3,0.5,0.7"
TIME_ONE = ("import json, sys; from lmboost.compression.comparison import saved_generation_speed; "
            "print(json.dumps(saved_generation_speed(*sys.argv[1:])))")  # one --speed process


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
    args = parser.parse_args(argv)

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
    write_json(args.results / "summary.json", comparison_summary(table))
    write_text(args.results / "summary.md", text := comparison_report(
        table, speeds, ppl_tokens=args.ppl_tokens, icl_limit=args.icl_limit,
        icl_seeds=args.icl_seeds))
    print(text)
    return 0


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
            if backend == "vllm" and is_lmboost_compressed(spec):
                speed[key] = {"error": "lmboost's own int8 format: vLLM does not load it"}
                continue
            print(f"== speed {model} / {key}", flush=True)
            done = subprocess.run([sys.executable, "-c", TIME_ONE, spec, backend],
                                  capture_output=True, text=True, timeout=1800)
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


if __name__ == "__main__":
    sys.exit(main())
