"""Scoring benchmark: lmboost's backends (HF float32 and bfloat16, vLLM) vs a plain transformers
loop vs lm-evaluation-harness.

SST-2 dev (872 examples), k-shot with fixed demonstrations (balanced draw, seed 0), label words
" negative"/" positive", one model (default SmolLM2-135M-Instruct). In one run it times

  (a) lmboost      -- the HF backend in float32 (``Scorer.score_choices``: shared-prefix KV cache,
                      batched suffixes, head applied only at the scored position);
  (b) lmboost-bf16 -- the same engine with the weights in bfloat16;
  (c) vllm         -- the vLLM backend in float32 (``prompt_logprobs``, which recomputes every
                      prompt in full: vLLM's prefix cache is not used for prompt log-probs);
  (d) plain        -- one full-prompt forward per example with transformers, both label words read
                      from the last position's log-softmax (label words are single tokens here);
  (e) lm_eval      -- lm-evaluation-harness ``simple_evaluate`` with its HF backend on the same
                      loaded model and a task YAML over a local JSONL whose ``description`` holds
                      the same demonstrations, so the prompt is identical (checked).

and reports examples/second, speed-up ratios, how often the predictions agree, and each method's
share of the machine's matmul peak for its dtype (measured in the same run): the physical limit is
2 x non-embedding parameters x the tokens that must be run (the shared prefix once, then each
example's own tokens), at the peak rate. Each (method, shots) result is stored in ``--results``
as it finishes, so an interrupted run resumes with what is missing (``--force`` recomputes).
Run it with ``make bench-scoring`` or

    .venv/bin/python benchmarks/scoring.py --shots 4,16 [--limit N] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from lmboost.backends import load_backend
from lmboost.backends.hf import HFBackend
from lmboost.evaluation.records import read_json, write_json
from lmboost.evaluation.report import markdown_table
from lmboost.icl.prompts import build_contexts, build_prefix, select_demonstrations
from lmboost.scoring import encode_request
from lmboost.tasks import get_task

LABEL_WORDS = [" negative", " positive"]
METHODS = ("lmboost", "lmboost-bf16", "vllm", "plain", "lm_eval")
#: Each method's engine and dtype (the model is loaded once per pair).
ENGINES = {
    "lmboost": ("hf", "float32"), "lmboost-bf16": ("hf", "bfloat16"), "vllm": ("vllm", "float32"),
    "plain": ("hf", "float32"), "lm_eval": ("hf", "float32"),
}


def run_backend(backend, contexts: list[str], batch_size: int) -> np.ndarray:
    """N x 2 label log-probabilities from a backend."""
    del batch_size  # set when the backend was made
    return backend.score_choices(contexts, LABEL_WORDS)


@torch.inference_mode()
def run_plain(backend, contexts: list[str], batch_size: int) -> np.ndarray:
    """One full forward per example; the label words are single tokens, read at the end."""
    del batch_size  # the plain loop is one example at a time by definition
    tok = backend.tokenizer
    label_ids = []
    for word in LABEL_WORDS:
        request = encode_request(tok, contexts[0], word)
        assert len(request.continuation) == 1, f"{word!r} is not a single token"
        label_ids.append(request.continuation[0])
    rows = []
    for ctx in contexts:
        context_ids = encode_request(tok, ctx, LABEL_WORDS[0]).context
        logits = backend.logits(torch.tensor([context_ids]))[0, -1]  # every position's head
        rows.append(torch.log_softmax(logits, -1)[label_ids].tolist())
    return np.array(rows)


def run_lm_eval(backend, contexts: list[str], batch_size: int, prefix: str) -> np.ndarray:
    """lm-evaluation-harness on the same model, prompt and examples."""
    import yaml
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "sst2_dev.jsonl"
        with open(data, "w") as f:
            for i, ctx in enumerate(contexts):
                f.write(json.dumps({"idx": i, "query": ctx[len(prefix) :], "label": 0}) + "\n")
        task = {
            "task": "lmboost_sst2_bench",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"validation": str(data)}},
            "validation_split": "validation",
            "output_type": "multiple_choice",
            "description": prefix,
            "doc_to_text": "{{query}}",
            "doc_to_target": "{{label}}",
            "doc_to_choice": [w.strip() for w in LABEL_WORDS],
            "target_delimiter": " ",
            "metric_list": [{"metric": "acc"}],
        }
        (Path(tmp) / "task.yaml").write_text(yaml.safe_dump(task, allow_unicode=True))
        lm = HFLM(pretrained=backend.model, tokenizer=backend.tokenizer, batch_size=batch_size)
        out = simple_evaluate(
            model=lm,
            tasks=["lmboost_sst2_bench"],
            task_manager=TaskManager(include_path=tmp),
            num_fewshot=0,
            log_samples=True,
            verbosity="ERROR",
        )
    samples = sorted(out["samples"]["lmboost_sst2_bench"], key=lambda s: s["doc"]["idx"])
    for s in samples:
        context = s["arguments"][0][0] if isinstance(s["arguments"][0], list | tuple) else (
            s["arguments"]["gen_args_0"]["arg_0"]
        )
        if context != contexts[s["doc"]["idx"]]:
            raise RuntimeError("lm_eval built a different prompt; the comparison would be unfair.")
    return np.array([[r[0] for r in s["filtered_resps"]] for s in samples], dtype=np.float64)


def measure(
    method: str, backends, engine: str, dtype: str, contexts: list[str], prefix: str,
    batch_size: int,
) -> dict:
    """Time one method over all contexts; its record. A warm-up call on another backend object
    comes first (untimed), so one-time set-up is not timed but no cache is carried over."""
    run = {"plain": run_plain, "lm_eval": partial(run_lm_eval, prefix=prefix)}.get(
        method, run_backend
    )
    if method != "lm_eval":
        run(backends(engine, dtype), contexts[:2], batch_size)
    backend = backends(engine, dtype)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    scores = run(backend, contexts, batch_size)
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "seconds": seconds,
        "examples_per_second": len(contexts) / seconds,
        "load_average": [load, os.getloadavg()[0]],  # 1-minute load before and after
        "scores": scores.tolist(),
    }


def needed_tokens(tokenizer, prefix: str, contexts: list[str]) -> int:
    """The tokens that must be run: the shared prefix once, then each context's own tokens."""
    prefix_len = len(encode_request(tokenizer, prefix + "x", " y").context) - 1
    total = sum(len(encode_request(tokenizer, c, LABEL_WORDS[0]).context) for c in contexts)
    return total - (len(contexts) - 1) * prefix_len


def non_embedding_parameters(model) -> int:
    """Parameters outside the input embedding (the output head is tied or run at few places)."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    untied = head is not None and head.weight.data_ptr() != embedding.data_ptr()
    total = sum(p.numel() for p in model.parameters())
    return total - embedding.numel() - (head.weight.numel() if untied else 0)


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """The machine's measured matmul rate (FLOP/s) for ``dtype``: best of ``repeats``."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--shots", default="4,16", help="comma-separated shot counts")
    parser.add_argument("--limit", type=int, default=None, help="first N dev examples (all 872)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/scoring"))
    parser.add_argument("--force", action="store_true", help="recompute stored results")
    args = parser.parse_args(argv)

    task = get_task("sst2")
    examples = task.load_eval()[: args.limit]
    pool = task.load_pool()
    engines = functools.cache(
        lambda engine, dtype: load_backend(
            args.model, engine, dtype=dtype, device="cpu", batch_size=args.batch_size
        )
    )

    def backends(engine: str, dtype: str):
        """A fresh backend over the loaded model: no memo or prefix cache from earlier runs."""
        loaded = engines(engine, dtype)
        return HFBackend(loaded.loaded, batch_size=args.batch_size) if engine == "hf" else loaded

    base = engines("hf", "float32")
    peaks = {d: matmul_peak(getattr(torch, d)) for d in ("float32", "bfloat16")}
    weights = non_embedding_parameters(base.model)
    labels = np.array([ex.label for ex in examples])
    threads = torch.get_num_threads()
    machine = f"{platform.machine()}, {threads} torch threads, torch {torch.__version__}"
    print(f"model {args.model}; SST-2 dev {len(examples)} examples; {machine}", flush=True)
    print(f"matmul peak: float32 {peaks['float32'] / 1e9:.0f} GFLOP/s, bfloat16 "
          f"{peaks['bfloat16'] / 1e9:.0f} GFLOP/s; {weights / 1e6:.1f}M non-embedding "
          "parameters", flush=True)

    table = []
    for shots in [int(s) for s in args.shots.split(",")]:
        prefix = build_prefix(task, select_demonstrations(pool, shots, seed=0, strategy="balanced"))
        contexts = build_contexts(task, prefix, examples)
        flops = 2 * weights * needed_tokens(base.tokenizer, prefix, contexts)
        records = {}
        for method in args.methods.split(","):
            path = args.results / f"{method}-{shots}shot-n{len(examples)}.json"
            if path.exists() and not args.force:
                records[method] = read_json(path)
                print(f"  {shots}-shot {method}: stored result reused ({path})", flush=True)
                continue
            print(f"  {shots}-shot {method}: running ...", flush=True)
            engine, dtype = ENGINES[method]
            record = measure(method, backends, engine, dtype, contexts, prefix, args.batch_size)
            record.update(shots=shots, n=len(examples), model=args.model, machine=machine,
                          dtype=dtype)
            record["peak_share"] = flops / record["seconds"] / peaks[dtype]
            write_json(path, record)
            records[method] = record
        table.append(summarise(shots, records, labels))

    print_table(table)
    return 0


def summarise(shots: int, records: dict, labels: np.ndarray) -> dict:
    """Speed, speed-up and agreement of every method against lmboost's engine."""
    preds = {m: np.asarray(r["scores"]).argmax(1) for m, r in records.items()}
    base = records.get("lmboost")
    row = {"shots": shots}
    for m, r in records.items():
        row[m] = {
            "ex_per_s": r["examples_per_second"],
            "accuracy": float((preds[m] == labels).mean()),
            "peak_share": r.get("peak_share"),
        }
        if base is not None and m != "lmboost":
            row[m]["lmboost_speedup"] = base["examples_per_second"] / r["examples_per_second"]
            row[m]["agreement"] = float((preds[m] == preds["lmboost"]).mean())
            diff = np.abs(np.asarray(r["scores"]) - np.asarray(base["scores"]))
            row[m]["max_abs_logprob_diff"] = float(diff.max())
    return row


def print_table(rows: list[dict]) -> None:
    table = []
    for row in rows:
        for m in METHODS:
            if m not in row:
                continue
            r = row[m]
            speed = f"{r['lmboost_speedup']:.1f}x" if "lmboost_speedup" in r else "—"
            agree = f"{100 * r['agreement']:.2f}%" if "agreement" in r else "—"
            diff = f"{r['max_abs_logprob_diff']:.1e}" if "max_abs_logprob_diff" in r else "—"
            share = "—" if r["peak_share"] is None else f"{100 * r['peak_share']:.0f}%"
            table.append([row["shots"], m, r["ex_per_s"], speed, agree, diff, r["accuracy"],
                          share])
    print()
    print(markdown_table(
        table, ["shots", "method", "ex/s", "lmboost speed-up", "agreement", "max abs dlogp",
                "accuracy", "peak share"],
        {"ex/s": ".1f", "accuracy": ".3f"}, align=dict.fromkeys(range(8), "left"),
    ))


if __name__ == "__main__":
    sys.exit(main())
