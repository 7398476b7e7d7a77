"""k-shot in-context classification, calibrated every way, averaged over seeds.

Scores each (shots, seed) prompt once and keeps the scores in OUT/scores/, so a rerun resumes
an interrupted run and a new --calibration list needs no model. Writes OUT/results.json (every
score, metric and setting) and OUT/report.md with plots.

calibration methods:
  none  the label scores, normalised        pc   prototypical calibration (test scores)
  cc    contextual calibration ("N/A" ...)  bc   batch calibration (test scores)
  dc    domain-context calibration          bcl  BC with gamma tuned on labelled examples

examples:
  lmboost icl --task sst2 --out runs/sst2
  lmboost icl --task agnews --shots 0,1,4,8 --seeds 5 --limit 500 --out runs/agnews
  lmboost icl --task sst2 --calibration none,bc --out runs/sst2     # reuses the stored scores
  lmboost icl --model gemma3-270m --task my-task.yaml --demos balanced --out runs/mine

your own data in one command (a CSV/TSV with a header row, or JSON lines):
  lmboost icl --task reviews.csv --template "Review: {text}\nSentiment:" \
      --label-words neg=negative,pos=positive --pool-size 100 --shots 0,4 \
      --calibration none,bc --out runs/reviews
  (--label-words maps label values to words; a plain list negative,positive means labels 0,1)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmboost.cli.options import add_backend, add_dtype, add_out
from lmboost.errors import LmboostError
from lmboost.evaluation.report import summary_table
from lmboost.icl import ICLConfig, run_icl
from lmboost.icl.runner import DEMO_STRATEGIES, TRUNCATIONS
from lmboost.models import DEFAULT_MODEL
from lmboost.tasks import register_task, task_from_file
from lmboost.tasks.custom import SUFFIXES

NAME = "icl"
HELP = "k-shot classification with calibration (CC, DC, PC, BC, BCL)"
DEFAULT_CALIBRATION = "none,cc,dc,pc,bc,bcl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``icl`` flags; comma lists are validated in :func:`run`, with clear messages."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model spec ({DEFAULT_MODEL})")
    parser.add_argument(
        "--task", required=True, help="task name (lmboost tasks), .yaml task file, or data file"
    )
    data = parser.add_argument_group("a task from a .csv/.tsv/.jsonl data file given as --task")
    data.add_argument("--template", help='e.g. "Review: {text}\\nSentiment:" (required)')
    data.add_argument("--label-words", metavar="LIST", help="value=word,... or word,... (required)")
    data.add_argument("--label-column", default="label", help="column of the label (label)")
    data.add_argument("--pool", type=Path, help="file of demonstration examples")
    data.add_argument(
        "--pool-size", type=int, metavar="N", help="or: hold out N rows of the file as the pool"
    )
    data.add_argument("--instruction", default="", help="text placed before the demonstrations")
    parser.add_argument(
        "--shots", default="0,1,4", metavar="LIST", help="comma list of shot counts (0,1,4)"
    )
    parser.add_argument("--seeds", type=int, default=5, metavar="N", help="number of seeds (5)")
    parser.add_argument(
        "--calibration",
        default=DEFAULT_CALIBRATION,
        metavar="LIST",
        help=f"comma list of methods ({DEFAULT_CALIBRATION})",
    )
    parser.add_argument(
        "--limit", type=int, metavar="N", help="evaluate a fixed stratified sample of N examples"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="scoring batch size (16)"
    )
    add_dtype(parser)
    add_backend(parser)
    parser.add_argument(
        "--demos", default="random", choices=DEMO_STRATEGIES, help="demonstrations (random)"
    )
    parser.add_argument(
        "--labelled-size", type=int, default=32, metavar="N",
        help="pool examples held out per seed as BCL's labelled set (32)",
    )
    parser.add_argument(
        "--n-domain", type=int, default=20, metavar="N", help="random strings for DC (20)"
    )
    parser.add_argument(
        "--truncation", default="error", choices=TRUNCATIONS,
        help="prompts longer than the context window: error (default) or drop oldest tokens",
    )
    add_out(parser)


def run(args: argparse.Namespace) -> int:
    """Run the experiment, print the accuracy table and where the report is."""
    config = ICLConfig(
        model=args.model,
        task=_task(args),
        shots=_int_list(args.shots, "--shots"),
        seeds=args.seeds,
        calibration=_name_list(args.calibration, "--calibration"),
        limit=args.limit,
        demo_strategy=args.demos,
        labelled_size=args.labelled_size,
        n_domain=args.n_domain,
        batch_size=args.batch_size,
        dtype=args.dtype,
        backend=args.backend,
        tensor_parallel_size=args.tensor_parallel_size,
        truncation=args.truncation,
        out=args.out,
    )
    results = run_icl(config)
    ev = results["eval"]
    sample = " (a sample)" if ev["sample"] else ""
    print(f"\n{results['task']['name']} on {config.model}: accuracy (%), mean ± std over "
          f"{config.seeds} seeds, {ev['n']} eval examples{sample}")
    print(summary_table(results, "accuracy"))
    print(f"\nreport: {Path(config.out) / 'report.md'}")
    print(f"results: {Path(config.out) / 'results.json'}")
    return 0


def _task(args: argparse.Namespace) -> str:
    """The task name to run: a data file becomes a registered task built from the flags."""
    if Path(args.task).suffix.lower() not in SUFFIXES:
        return args.task
    if not args.template or not args.label_words:
        raise LmboostError(
            f"--task {args.task} is a data file: also give --template (e.g. "
            '"Review: {text}\\nSentiment:") and --label-words (e.g. neg=negative,pos=positive).'
        )
    pairs = _items(args.label_words, "--label-words")
    if all("=" in p for p in pairs):
        words: list[str] | dict[str, str] = dict(p.split("=", 1) for p in pairs)
    elif any("=" in p for p in pairs):
        raise LmboostError("--label-words: give either all value=word pairs or only words.")
    else:
        words = pairs
    task = task_from_file(
        args.task,
        template=args.template.replace("\\n", "\n"),
        label_words=words,
        label_column=args.label_column,
        pool_path=args.pool,
        pool_size=args.pool_size,
        instruction=args.instruction,
    )
    return register_task(task, overwrite=True).name


def _items(text: str, flag: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise LmboostError(f"{flag} expects a comma-separated list without empty items, got "
                           f"{text!r}.")
    return items


def _int_list(text: str, flag: str) -> list[int]:
    items = _items(text, flag)
    try:
        return [int(item) for item in items]
    except ValueError:
        raise LmboostError(
            f"{flag} expects comma-separated integers such as 0,1,4, got {text!r}."
        ) from None


def _name_list(text: str, flag: str) -> list[str]:
    return [item.lower() for item in _items(text, flag)]
