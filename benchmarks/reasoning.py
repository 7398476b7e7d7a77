"""Reasoning benchmark: direct vs zero-shot CoT vs few-shot CoT vs CoT + self-consistency.

Each model x task x setting through ``run_reasoning`` (resumable); ``summary.md`` covers every
finished run under ``--results`` (:mod:`lmboost.reasoning.comparison`); docs/reasoning-results.md.

    .venv/bin/python benchmarks/reasoning.py --models smollm2-135m-instruct \\
        --gsm8k-limit 50 --bbh-limit 3 --mmlu-limit 2 --sc 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmboost.evaluation.records import write_text
from lmboost.reasoning import ReasoningConfig, run_reasoning
from lmboost.reasoning.comparison import collect_runs, comparison_table

TASKS = ("gsm8k", "bbh", "mmlu")
# name -> (mode, whether self-consistency with early stopping; else one greedy chain)
SETTINGS = {"direct": ("direct", False), "zs-cot": ("zs-cot", False),
            "fs-cot": ("fs-cot", False), "fs-cot+sc": ("fs-cot", True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2-135m-instruct", help="comma list")
    parser.add_argument("--gsm8k-limit", type=int, default=50, help="GSM8K test items")
    parser.add_argument("--bbh-limit", type=int, default=3, help="items per BBH task (27 tasks)")
    parser.add_argument("--mmlu-limit", type=int, default=2, help="items per MMLU subject (57)")
    parser.add_argument("--sc", type=int, default=5, help="chains for self-consistency")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/reasoning"))
    args = parser.parse_args(argv)

    limits = dict(zip(TASKS, (args.gsm8k_limit, args.bbh_limit, args.mmlu_limit)))
    for model in args.models.split(","):
        for task, limit in limits.items():
            if not limit:
                continue
            for setting in args.settings.split(","):
                mode, sc = SETTINGS[setting]
                print(f"== {model} / {task} / {setting}", flush=True)
                run_reasoning(ReasoningConfig(
                    task=task, model=model, mode=mode, self_consistency=args.sc if sc else 1,
                    early_stop=sc, limit=limit, max_new_tokens=args.max_new_tokens,
                    batch_size=args.batch_size, out=args.results / model / f"{task}-{setting}",
                    progress=True))
    text = comparison_table(collect_runs(args.results, list(TASKS), list(SETTINGS)), args.sc)
    write_text(args.results / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
