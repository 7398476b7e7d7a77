"""Chain-of-thought reasoning with answer extraction and self-consistency voting.

Writes OUT/items.jsonl as items finish (a rerun resumes from it; a larger --limit extends the
run; a rerun with other settings, --batch-size and the model's weights among them, is refused
naming each change, unless --restart moves the old content to OUT.old-<time>) and
OUT/results.json: settings, accuracy (overall and per sub-task), seconds per item and,
per item, the question, the chains, the extracted answers, the vote and its share, and the
samples used and saved by --early-stop.

tasks:   gsm8k | bbh (all 27) | bbh:<task> | mmlu (all 57) | mmlu:<subject>
modes:   direct  answer-only few-shot (MMLU: 5-shot, the letters " A".." D" scored)
         zs-cot  "Let's think step by step." then "Therefore, the answer ... is" (Kojima 2022)
         fs-cot  worked exemplars (GSM8K 8, BBH 3 from its CoT prompts, MMLU 5 dev items)

examples:
  lmboost reason --task gsm8k --mode fs-cot --limit 50 --out runs/gsm8k-cot
  lmboost reason --task gsm8k --mode fs-cot --self-consistency 10 --early-stop \\
      --limit 50 --out runs/gsm8k-sc10
  lmboost reason --task bbh:date_understanding --mode zs-cot --out runs/bbh-date
  lmboost reason --task bbh --mode fs-cot --limit 10 --out runs/bbh   # 10 items per task
  lmboost reason --task mmlu:anatomy --mode direct --out runs/mmlu-anatomy
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmboost.cli.options import (
    add_chat,
    add_model,
    add_run_flags,
    add_sampling,
    config_from_flags,
    default_of,
    shown,
)
from lmboost.reasoning import MODES, ReasoningConfig, run_reasoning

NAME = "reason"
HELP = "chain-of-thought reasoning, self-consistency (GSM8K, BBH, MMLU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``reason`` flags, their defaults those of :class:`ReasoningConfig`."""

    def default(name: str) -> Any:
        return default_of(ReasoningConfig, name)

    add_model(parser, ReasoningConfig)
    parser.add_argument(
        "--task", required=True, help="gsm8k, bbh, bbh:<task>, mmlu or mmlu:<subject>"
    )
    parser.add_argument(
        "--mode", default=default("mode"), choices=MODES, help=f"prompting ({default('mode')})"
    )
    parser.add_argument(
        "--self-consistency", type=int, default=default("self_consistency"), metavar="N",
        help="sample N chains per item and vote (1 = one greedy chain) "
        f"({default('self_consistency')})",
    )
    parser.add_argument(
        "--early-stop", action="store_true", default=default("early_stop"),
        help="stop sampling an item once the remaining samples cannot change its vote",
    )
    parser.add_argument(
        "--limit", type=int, default=default("limit"), metavar="N",
        help="the first N items of each sub-task",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=default("max_new_tokens"), metavar="N",
        help=f"chain length limit ({default('max_new_tokens')})",
    )
    parser.add_argument(
        "--batch-size", type=int, default=default("batch_size"), metavar="N",
        help=f"items generated together ({default('batch_size')})",
    )
    sampling = parser.add_argument_group("sampling (with --self-consistency N > 1)")
    add_sampling(sampling, ReasoningConfig)
    sampling.add_argument("--seed", type=int, default=default("seed"),
                          help=f"({shown(default('seed'))})")
    add_chat(parser, ReasoningConfig)
    add_run_flags(parser, ReasoningConfig)


def config_from_args(args: argparse.Namespace) -> ReasoningConfig:
    """The :class:`ReasoningConfig` the flags describe (progress bars on: a person is
    watching)."""
    return config_from_flags(ReasoningConfig, args, progress=True)


def run(args: argparse.Namespace) -> int:
    """Run or resume the experiment and print the accuracy and where the record is."""
    config = config_from_args(args)
    results = run_reasoning(config)
    print(f"\n{config.task} ({config.mode}, self-consistency {config.self_consistency}) on "
          f"{config.model}: accuracy {100 * results['accuracy']:.1f}% "
          f"({results['n_correct']}/{results['n_items']}), "
          f"{results['seconds_per_item']:.2f} s per item")
    if config.early_stop:
        print(f"early stopping saved {results['samples_saved']} of "
              f"{results['samples_used'] + results['samples_saved']} samples")
    if len(results["accuracy_by_task"]) > 1:
        for task, acc in results["accuracy_by_task"].items():
            print(f"  {task:<50} {100 * acc:5.1f}%")
    print(f"results: {Path(config.out) / 'results.json'}")
    return 0
