"""Generation benchmark: the HF backend vs the vLLM backend on GSM8K zero-shot chain of thought.

The first N GSM8K test questions as zero-shot CoT prompts (lmboost's reasoning prompt: the
question, then "Let's think step by step."; the model's chat template when it has one), in one
run, for each backend (float32):

  greedy   -- ``--greedy-prompts`` prompts x ``--max-new-tokens`` tokens, greedy;
  sampled  -- ``--sampled-prompts`` prompts x ``--samples`` samples (temperature 0.7, top-k 40,
              seed 0), the samples of a prompt sharing one prompt encoding.

Generation is not stopped early (no stop strings, EOS only), so both engines produce about the
same number of tokens; the table reports seconds, generated tokens per second and, for greedy
decoding, how many texts are identical between the engines. Engine start-up is not timed (a
warm-up generation runs first). Results are stored per (backend, setting) in ``--results``;
an interrupted run resumes (``--force`` recomputes).

    .venv/bin/python benchmarks/generation.py [--backends hf,vllm] [--greedy-prompts 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from lmboost.backends import load_backend
from lmboost.evaluation.records import read_json, write_json
from lmboost.evaluation.report import markdown_table
from lmboost.generation import GenerationConfig, encode_prompt, resolve_chat
from lmboost.reasoning.prompts import build_prompt
from lmboost.reasoning.tasks import load_items


def settings(args: argparse.Namespace) -> dict[str, tuple[int, GenerationConfig, int]]:
    """(prompts, decoding settings, samples per prompt) of each measured setting."""
    greedy = GenerationConfig(max_new_tokens=args.max_new_tokens)
    sampled = GenerationConfig(
        max_new_tokens=args.max_new_tokens, do_sample=True, temperature=0.7, top_k=40, seed=0
    )
    return {
        "greedy": (args.greedy_prompts, greedy, 1),
        "sampled": (args.sampled_prompts, sampled, args.samples),
    }


def measure(backend, prompts, config: GenerationConfig, n: int) -> dict:
    """Time one generate call; the texts and the tokens they hold."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    texts = backend.generate(prompts, config, n=n)
    seconds = time.perf_counter() - start
    flat = [text for row in texts for text in row]
    tokens = sum(len(ids) for ids in backend.tokenizer(flat, add_special_tokens=False)["input_ids"])
    return {"seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
            "load_average": [load, os.getloadavg()[0]], "texts": texts}


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

    cases = settings(args)
    items = load_items("gsm8k", max(n for n, _, _ in cases.values()))
    prompts = [build_prompt(item, "zs-cot") for item in items]
    machine = (f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
               f"torch {torch.__version__}")
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
            record = measure(backend, prompts[:count], config, n)
            chat = resolve_chat(backend.tokenizer, None)
            record.update(
                backend=engine, setting=name, prompts=count, samples=n, machine=machine,
                prompt_tokens=sum(len(encode_prompt(backend.tokenizer, p, chat))
                                  for p in prompts[:count]),
            )
            write_json(path, record)
            records[engine, name] = record
        del backend
    print_table(records)
    return 0


def print_table(records: dict[tuple[str, str], dict]) -> None:
    rows = []
    for (engine, name), r in sorted(records.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        same = "—"
        hf = records.get(("hf", name))
        if name == "greedy" and engine != "hf" and hf is not None:
            pairs = list(zip(hf["texts"], r["texts"]))
            same = f"{sum(a == b for a, b in pairs)}/{len(pairs)}"
        rows.append([name, engine, f"{r['prompts']} x {r['samples']}", r["seconds"], r["tokens"],
                     r["tokens_per_second"], same])
    print()
    print(markdown_table(
        rows, ["setting", "backend", "prompts x samples", "seconds", "generated tokens",
               "tokens/s", "identical to hf"],
        {"seconds": ".1f", "tokens/s": ".1f"}, align={"identical to hf": "right"},
    ))


if __name__ == "__main__":
    sys.exit(main())
