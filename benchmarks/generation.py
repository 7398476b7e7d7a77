"""Generation benchmark: the HF backend vs the vLLM backend on GSM8K zero-shot chain of thought.

Greedy and sampled (temperature 0.7, top-k 40, seed 0) ``generation_speed`` per backend after a
warm-up, records resumed from ``--results`` (``--force`` recomputes); BENCHMARKS.md, Backends.

    .venv/bin/python benchmarks/generation.py [--backends hf,vllm] [--greedy-prompts 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmboost.backends import load_backend
from lmboost.evaluation.records import machine_info, read_json, write_json
from lmboost.generation import GenerationConfig
from lmboost.generation.comparison import backend_table, speed_record
from lmboost.reasoning.prompts import build_prompt
from lmboost.reasoning.tasks import load_items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--backends", default="hf,vllm")
    parser.add_argument("--greedy-prompts", type=int, default=32)
    parser.add_argument("--sampled-prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="HF prompts per batch (32)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/generation"))
    parser.add_argument("--force", action="store_true", help="recompute stored results")
    args = parser.parse_args(argv)

    greedy = GenerationConfig(max_new_tokens=args.max_new_tokens)
    sampled = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=True,
                               temperature=0.7, top_k=40, seed=0)
    cases = {"greedy": (args.greedy_prompts, greedy, 1),  # (prompts, settings, samples)
             "sampled": (args.sampled_prompts, sampled, args.samples)}
    items = load_items("gsm8k", max(n for n, _, _ in cases.values()))
    prompts = [build_prompt(item, "zs-cot") for item in items]
    machine = machine_info()
    print(f"model {args.model}; GSM8K zs-cot; {machine}", flush=True)
    records: dict[tuple[str, str], dict] = {}
    for engine in args.backends.split(","):
        backend = None
        for name, (count, config, n) in cases.items():
            path = args.results / f"{engine}-{name}-p{count}-n{n}-t{args.max_new_tokens}.json"
            if path.exists() and not args.force:
                records[engine, name] = read_json(path)
                print(f"  {engine} {name}: stored result reused ({path})", flush=True)
                continue
            if backend is None:
                backend = load_backend(args.model, engine, dtype="float32", device="cpu",
                                       batch_size=args.batch_size)
                backend.generate(prompts[:2], GenerationConfig(max_new_tokens=4))  # warm-up
            print(f"  {engine} {name}: running ...", flush=True)
            records[engine, name] = record = {
                **speed_record(backend, prompts[:count], config, n), "backend": engine,
                "setting": name, "prompts": count, "samples": n, "machine": machine}
            write_json(path, record)
        del backend
    print("\n" + backend_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
