r"""k-shot in-context classification, calibrated every way, averaged over seeds.

Scores each (shots, seed) prompt once and keeps the scores in OUT/scores/, so a rerun resumes
an interrupted run and a new --calibration list needs no model (or: lmboost calibrate OUT),
unless it adds hidden, knn, pmi or gc: what they need is computed once and stored beside.
Writes OUT/results.json (every score, metric and setting) and OUT/report.md with plots.
Scores are keyed by the model's weights (their content, not the name), so replaced weights are
scored anew. OUT/settings.json is written first: a rerun that changes what the scores depend on
(model, dtype, backend, task, template, --limit, --demos, --labelled-size, --n-domain) is
refused naming each change; --restart moves the old content to OUT.old-<time> and starts over.

calibration methods (default: the first seven, which need only label scores):
  none  the label scores, normalised        pc    prototypical calibration (test scores)
  cc    contextual calibration ("N/A" ...)  bc    batch calibration (test scores)
  dc    domain-context calibration          bcl   BC with gamma tuned on labelled examples
                                            linc  linear probe calibration (labelled examples)
  hidden  nearest centroid on the prompts' last hidden states (labelled examples)
  knn     k nearest labelled prompts by KL of next-token distributions (stores them: large)
  pmi     choice scores minus their scores after the domain premise alone ("Answer:")
  gc      generative calibration: divide out the label marginal over --n-gc sampled inputs

examples:
  lmboost icl --task sst2 --out runs/sst2
  lmboost icl --task agnews --shots 0,1,4,8 --seeds 5 --limit 500 --out runs/agnews
  lmboost icl --task sst2 --calibration none,bc --out runs/sst2     # reuses the stored scores
  lmboost icl --task sst2 --calibration hidden,knn,pmi,gc --out runs/sst2   # adds what they need
  lmboost icl --model gemma3-270m --task my-task.yaml --demos balanced --out runs/mine

your own data in one command (a CSV/TSV with a header row, or JSON lines; docs/tasks.md):
  lmboost icl --task reviews.csv --template "Review: {text}\nSentiment:" \
      --label-words 0=negative,1=positive --pool-size 100 --shots 0,4 \
      --calibration none,bc --out runs/reviews
  (--label-words maps label values to words; a plain list negative,positive means labels 0,1;
  check the prompt first with: lmboost tasks reviews.csv --template ... --label-words ...)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmboost.cli.options import (
    add_model,
    add_run_flags,
    add_task_file,
    comma_items,
    config_from_flags,
    default_of,
    shown,
    task_from_args,
)
from lmboost.errors import ConfigError
from lmboost.evaluation.report import same_seed_note, summary_table
from lmboost.icl import ICLConfig, run_icl
from lmboost.icl.runner import DEMO_STRATEGIES, TRUNCATIONS

NAME = "icl"
HELP = "k-shot classification with calibration (CC, DC, PC, BC, BCL, LinC, hidden, kNN, PMI, GC)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``icl`` flags, their defaults those of :class:`ICLConfig`; comma lists are validated
    in :func:`run`, with clear messages."""

    def default(name: str) -> str:
        return shown(default_of(ICLConfig, name))

    add_model(parser, ICLConfig)
    parser.add_argument(
        "--task", required=True, help="task name (lmboost tasks), .yaml task file, or data file"
    )
    add_task_file(parser)
    parser.add_argument(
        "--shots", default=default("shots"), metavar="LIST",
        help=f"comma list of shot counts ({default('shots')})",
    )
    parser.add_argument(
        "--seeds", type=int, default=default_of(ICLConfig, "seeds"), metavar="N",
        help=f"number of seeds ({default('seeds')})",
    )
    parser.add_argument(
        "--calibration", default=default("calibration"), metavar="LIST",
        help=f"comma list of methods ({default('calibration')})",
    )
    parser.add_argument(
        "--limit", type=int, default=default_of(ICLConfig, "limit"), metavar="N",
        help="evaluate a fixed stratified sample of N examples",
    )
    parser.add_argument(
        "--batch-size", type=int, default=default_of(ICLConfig, "batch_size"), metavar="N",
        help=f"scoring batch size ({default('batch_size')})",
    )
    parser.add_argument(
        "--demos", default=default("demo_strategy"), choices=DEMO_STRATEGIES,
        help=f"demonstrations ({default('demo_strategy')})",
    )
    parser.add_argument(
        "--labelled-size", type=int, default=default_of(ICLConfig, "labelled_size"), metavar="N",
        help="pool examples held out per seed as the labelled set of bcl, linc, hidden, knn "
        f"({default('labelled_size')})",
    )
    parser.add_argument(
        "--n-domain", type=int, default=default_of(ICLConfig, "n_domain"), metavar="N",
        help=f"random strings for DC ({default('n_domain')})",
    )
    parser.add_argument(
        "--n-gc", type=int, default=default_of(ICLConfig, "n_gc"), metavar="N",
        help=f"pseudo-inputs GC samples per prompt ({default('n_gc')})",
    )
    parser.add_argument(
        "--truncation", default=default("truncation"), choices=TRUNCATIONS,
        help="prompts longer than the context window: error or left (drop the oldest tokens) "
        f"({default('truncation')})",
    )
    add_run_flags(parser, ICLConfig)


def config_from_args(args: argparse.Namespace) -> ICLConfig:
    """The :class:`ICLConfig` the flags describe (a data file given as the task is registered)."""
    return config_from_flags(
        ICLConfig, args, task=task_from_args(args.task, args),
        shots=_int_list(args.shots, "--shots"),
        calibration=name_list(args.calibration, "--calibration"), demo_strategy=args.demos,
    )


def run(args: argparse.Namespace) -> int:
    """Run the experiment, print the accuracy table and where the report is."""
    print_summary(run_icl(config_from_args(args)))
    return 0


def print_summary(results: dict) -> None:
    """The accuracy table of a results object and where its report and record are."""
    ev, out = results["eval"], Path(results["config"]["out"])
    sample = " (a sample)" if ev["sample"] else ""
    seeds = results["config"]["seeds"]
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    print(f"\n{results['task']['name']} on {results['model']['spec']}: accuracy (%), {spread}, "
          f"{ev['n']} eval examples{sample}")
    print(summary_table(results, "accuracy"))
    note = same_seed_note(results)
    if note:
        print(note)
    print(f"\nreport: {out / 'report.md'}")
    print(f"results: {out / 'results.json'}")


def _int_list(text: str, flag: str) -> list[int]:
    items = comma_items(text, flag)
    try:
        return [int(item) for item in items]
    except ValueError:
        raise ConfigError(
            f"{flag} expects comma-separated integers such as 0,1,4, got {text!r}."
        ) from None


def name_list(text: str, flag: str) -> list[str]:
    """Lower-cased names of a comma-separated flag value."""
    return [item.lower() for item in comma_items(text, flag)]
