"""Reproduction of the Batch Calibration paper's comparison (Zhou et al., ICLR 2024) at small scale.

Every task in ``--tasks`` through ``run_icl`` with every calibrator in ``--methods`` (resumable),
reported by :mod:`lmboost.icl.comparison`; method and tables: docs/calibration-results.md.

    .venv/bin/python benchmarks/calibration.py --model smollm2-135m-instruct \\
        --tasks paper --shots 1,4 --seeds 3 --limit 200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmboost.calibration import CALIBRATORS
from lmboost.evaluation.records import read_json, write_json, write_text
from lmboost.evaluation.speed import timed
from lmboost.icl import ICLConfig, run_icl
from lmboost.icl.comparison import comparison_report

# The BC paper's 13 tasks as available here (* = 100-example subsets), then 4 more classic ones.
PAPER_TASKS = [
    "sst2", "mnli-100", "qnli", "mrpc", "qqp-100", "boolq", "cb", "copa", "rte", "wic",
    "anli-r1", "anli-r2", "anli-r3",
]
EXTRA_TASKS = ["agnews", "trec", "sst5", "subj"]
METHODS = list(CALIBRATORS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tasks", default="all",
                        help="comma list, or 'paper' (13 tasks) or 'all' (+4 more)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of calibrators")
    parser.add_argument("--shots", default="1,4")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=200, help="eval examples per task")
    parser.add_argument("--labelled-size", type=int, default=16, help="BCL's labelled set")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/calibration"))
    args = parser.parse_args(argv)
    tasks = {"paper": PAPER_TASKS, "all": PAPER_TASKS + EXTRA_TASKS}.get(
        args.tasks, args.tasks.split(","))
    args.shots, args.methods = [int(s) for s in args.shots.split(",")], args.methods.split(",")
    root = args.results / args.model
    timings = read_json(root / "timings.json") if (root / "timings.json").exists() else {}
    summaries = {}
    for task in tasks:
        print(f"== {args.model} / {task}", flush=True)
        results, timing = timed(run_icl, ICLConfig(
            task=task, model=args.model, shots=args.shots, seeds=args.seeds,
            calibration=args.methods, limit=args.limit, labelled_size=args.labelled_size,
            batch_size=args.batch_size, truncation="left", out=root / task))
        if any(not r["scores_from_cache"] for r in results["runs"]):
            timings[task] = timings.get(task, 0.0) + timing["seconds"]
            write_json(root / "timings.json", timings)
        summaries[task] = {"n": results["eval"]["n"], "rows": results["summary"]}
    write_json(root / "summary.json", {"model": args.model, "shots": args.shots,
                                       "seeds": args.seeds, "limit": args.limit,
                                       "tasks": summaries, "timings_s": timings})
    write_text(root / "summary.md", text := comparison_report(
        args.model, summaries, timings, shots=args.shots, methods=args.methods, seeds=args.seeds,
        limit=args.limit, labelled_size=args.labelled_size))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
