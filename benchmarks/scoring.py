"""Scoring benchmark: lmboost's backends (HF float32 and bfloat16, vLLM) vs a plain transformers
loop vs lm-evaluation-harness on SST-2 dev, k-shot; methods and columns: BENCHMARKS.md.

    .venv/bin/python benchmarks/scoring.py --shots 4,16 [--limit N] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lmboost.backends import load_backend
from lmboost.backends.hf import HFBackend
from lmboost.evaluation.records import machine_info, read_json, write_json
from lmboost.evaluation.speed import (
    flops_utilization,
    matmul_peak,
    non_embedding_parameters,
    timed,
    versus_reference,
    versus_table,
)
from lmboost.icl.prompts import build_contexts, build_prefix, select_demonstrations
from lmboost.scoring.requests import encode_request, tokens_to_run
from lmboost.tasks import get_task

LABEL_WORDS = [" negative", " positive"]
ENGINES = {  # method -> (engine, dtype); the model is loaded once per pair
    "lmboost": ("hf", "float32"), "lmboost-bf16": ("hf", "bfloat16"), "vllm": ("vllm", "float32"),
    "plain": ("hf", "float32"), "lm_eval": ("hf", "float32"),
}


@torch.inference_mode()
def run_plain(backend, contexts: list[str]) -> np.ndarray:
    """One full forward per example; the label words are single tokens, read at the end."""
    label_ids = [encode_request(backend.tokenizer, contexts[0], w).continuation
                 for w in LABEL_WORDS]
    assert all(len(ids) == 1 for ids in label_ids), "the label words must be single tokens"
    rows = []
    for ctx in contexts:
        ids = encode_request(backend.tokenizer, ctx, LABEL_WORDS[0]).context
        logits = backend.logits(torch.tensor([ids]))[0, -1]  # every position's head
        rows.append(torch.log_softmax(logits, -1)[[i[0] for i in label_ids]].tolist())
    return np.array(rows)


def run_lm_eval(backend, contexts: list[str], batch_size: int, prefix: str) -> np.ndarray:
    """lm-evaluation-harness on the same model, prompt and examples."""
    import yaml
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "sst2_dev.jsonl"
        data.write_text("".join(json.dumps({"idx": i, "query": c[len(prefix):], "label": 0}) + "\n"
                                for i, c in enumerate(contexts)))
        (Path(tmp) / "task.yaml").write_text(yaml.safe_dump({
            "task": "lmboost_sst2_bench", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"validation": str(data)}},
            "validation_split": "validation", "output_type": "multiple_choice",
            "description": prefix, "doc_to_text": "{{query}}", "doc_to_target": "{{label}}",
            "doc_to_choice": [w.strip() for w in LABEL_WORDS], "target_delimiter": " ",
            "metric_list": [{"metric": "acc"}],
        }, allow_unicode=True))
        out = simple_evaluate(
            model=HFLM(pretrained=backend.model, tokenizer=backend.tokenizer,
                       batch_size=batch_size),
            tasks=["lmboost_sst2_bench"], task_manager=TaskManager(include_path=tmp),
            num_fewshot=0, log_samples=True, verbosity="ERROR",
        )
    samples = sorted(out["samples"]["lmboost_sst2_bench"], key=lambda s: s["doc"]["idx"])
    for s in samples:
        args = s["arguments"]
        context = args[0][0] if isinstance(args[0], list | tuple) else args["gen_args_0"]["arg_0"]
        if context != contexts[s["doc"]["idx"]]:
            raise RuntimeError("lm_eval built a different prompt; the comparison would be unfair.")
    return np.array([[r[0] for r in s["filtered_resps"]] for s in samples], dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--shots", default="4,16", help="comma-separated shot counts")
    parser.add_argument("--limit", type=int, default=None, help="first N dev examples (all 872)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--methods", default=",".join(ENGINES))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/scoring"))
    parser.add_argument("--force", action="store_true", help="recompute stored results")
    args = parser.parse_args(argv)

    task = get_task("sst2")
    examples, pool = task.load_eval()[: args.limit], task.load_pool()
    engines = functools.cache(lambda engine, dtype: load_backend(
        args.model, engine, dtype=dtype, device="cpu", batch_size=args.batch_size))

    def fresh(engine: str, dtype: str):
        """A backend over the loaded model with no memo or prefix cache from earlier runs."""
        loaded = engines(engine, dtype)
        return HFBackend(loaded.loaded, batch_size=args.batch_size) if engine == "hf" else loaded

    base = engines("hf", "float32")
    peaks = {d: matmul_peak(getattr(torch, d)) for d in ("float32", "bfloat16")}
    weights = non_embedding_parameters(base.model)
    machine = machine_info()
    print(f"model {args.model}; SST-2 dev {len(examples)} examples; {machine}; matmul peak "
          f"float32 {peaks['float32'] / 1e9:.0f}, bfloat16 {peaks['bfloat16'] / 1e9:.0f} "
          f"GFLOP/s; {weights / 1e6:.1f}M non-embedding parameters", flush=True)
    rows, labels = [], np.array([ex.label for ex in examples])
    for shots in [int(s) for s in args.shots.split(",")]:
        prefix = build_prefix(task, select_demonstrations(pool, shots, seed=0, strategy="balanced"))
        contexts = build_contexts(task, prefix, examples)
        tokens = tokens_to_run(base.tokenizer, prefix, contexts, LABEL_WORDS[0])
        records = {}
        for method in args.methods.split(","):
            path = args.results / f"{method}-{shots}shot-n{len(examples)}.json"
            if path.exists() and not args.force:
                records[method] = read_json(path)
                print(f"  {shots}-shot {method}: stored result reused ({path})", flush=True)
                continue
            print(f"  {shots}-shot {method}: running ...", flush=True)
            engine, dtype = ENGINES[method]
            run = {"plain": run_plain, "lm_eval": functools.partial(
                run_lm_eval, batch_size=args.batch_size, prefix=prefix)}.get(
                method, lambda b, c: b.score_choices(c, LABEL_WORDS))
            if method != "lm_eval":  # one-time set-up untimed, on another backend object
                run(fresh(engine, dtype), contexts[:2])
            scores, timing = timed(run, fresh(engine, dtype), contexts)
            records[method] = record = {
                "method": method, **timing, "scores": scores.tolist(),
                "examples_per_second": len(contexts) / timing["seconds"], "shots": shots,
                "n": len(examples), "model": args.model, "machine": machine, "dtype": dtype,
                "peak_share": flops_utilization(weights, tokens, timing["seconds"], peaks[dtype]),
            }
            write_json(path, record)
        ordered = {m: records[m] for m in ENGINES if m in records}
        rows += [[shots, *row] for row in versus_reference(ordered, labels, "lmboost")]
    print("\n" + versus_table(rows, "lmboost", keys=("shots",)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
