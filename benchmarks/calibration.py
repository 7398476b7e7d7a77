"""Reproduction of the Batch Calibration paper's comparison (Zhou et al., ICLR 2024) at small scale.

For one model, every task in ``--tasks`` is run through ``lmboost.icl.run_icl`` with every
calibrator fitted on label scores alone (none, CC, DC, PC, BC, BCL, LinC) at ``--shots`` and
``--seeds``, on a fixed stratified sample of ``--limit`` eval examples per task. Scores are
stored per (task, shots, seed) under ``--results/<model>/<task>/``, so an interrupted run
resumes where it stopped, and a rerun only re-applies the calibrators. At the end it writes
``<results>/<model>/summary.md`` and ``summary.json``: accuracy (mean over seeds) per task and
method, the average over tasks, and the wall time of each task's scoring.

    .venv/bin/python benchmarks/calibration.py --model smollm2-135m-instruct \\
        --tasks paper --shots 1,4 --seeds 3 --limit 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from lmboost.calibration import DEFAULT_METHODS
from lmboost.evaluation.records import read_json, write_json
from lmboost.icl import ICLConfig, run_icl

# The BC paper's 13 tasks as available here (* = 100-example subsets), then 4 more classic ones.
PAPER_TASKS = [
    "sst2", "mnli-100", "qnli", "mrpc", "qqp-100", "boolq", "cb", "copa", "rte", "wic",
    "anli-r1", "anli-r2", "anli-r3",
]
EXTRA_TASKS = ["agnews", "trec", "sst5", "subj"]
METHODS = list(DEFAULT_METHODS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument(
        "--tasks", default="all", help="comma list, or 'paper' (13 tasks) or 'all' (+4 more)"
    )
    parser.add_argument("--shots", default="1,4")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=200, help="eval examples per task")
    parser.add_argument("--labelled-size", type=int, default=16, help="BCL's labelled set")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/calibration"))
    args = parser.parse_args(argv)

    tasks = {"paper": PAPER_TASKS, "all": PAPER_TASKS + EXTRA_TASKS}.get(
        args.tasks, args.tasks.split(",")
    )
    shots = [int(s) for s in args.shots.split(",")]
    root = args.results / args.model
    timings_path = root / "timings.json"
    timings = read_json(timings_path) if timings_path.exists() else {}
    summaries = {}
    for task in tasks:
        print(f"== {args.model} / {task}", flush=True)
        start = time.perf_counter()
        results = run_icl(
            ICLConfig(
                task=task,
                model=args.model,
                shots=shots,
                seeds=args.seeds,
                calibration=METHODS,
                limit=args.limit,
                labelled_size=args.labelled_size,
                batch_size=args.batch_size,
                truncation="left",
                out=root / task,
            )
        )
        seconds = time.perf_counter() - start
        if any(not r["scores_from_cache"] for r in results["runs"]):
            timings[task] = timings.get(task, 0.0) + seconds
            write_json(timings_path, timings)
        summaries[task] = {
            "n": results["eval"]["n"],
            "rows": results["summary"],
        }
    tables = {m: summary_table(summaries, shots, m) for m in ("accuracy", "macro_f1")}
    write_json(root / "summary.json", {"model": args.model, "shots": shots, "seeds": args.seeds,
                                       "limit": args.limit, "tasks": summaries,
                                       "timings_s": timings})
    text = render(args, shots, tables, timings)
    (root / "summary.md").write_text(text)
    print(text)
    return 0


def summary_table(summaries: dict, shots: list[int], metric: str) -> dict:
    """{shots: {task: {method: mean of ``metric`` over seeds, or None where n/a}}}"""
    table: dict = {k: {} for k in shots}
    for task, summary in summaries.items():
        for row in summary["rows"]:
            acc = row[metric]["mean"] if row["status"] == "ok" else None
            table[row["shots"]].setdefault(task, {})[row["method"]] = acc
    return table


def render(args, shots: list[int], tables: dict, timings: dict) -> str:
    """Markdown tables per metric and shot count: % per task and method, and the averages."""
    lines = [
        f"# Calibration on {args.model}",
        "",
        f"Mean over {args.seeds} seeds; {args.limit} eval examples per task (fixed stratified "
        "sample; fewer where the set is smaller). n/a: the method does not apply (COPA's options "
        "are per example, so CC and DC have no content-free input). Best per row in bold.",
        "",
    ]
    lines += ["## Headline", ""] + _headline(tables, shots) + [""]
    for metric, table in tables.items():
        for k in shots:
            lines += [f"## {metric}, {k}-shot", ""] + _table(table[k]) + [""]
    total = sum(timings.values())
    lines.append(f"Scoring wall time: {total / 60:.1f} min in all; per task (s): "
                 + ", ".join(f"{t} {s:.0f}" for t, s in timings.items()))
    return "\n".join(lines) + "\n"


def _headline(tables: dict, shots: list[int]) -> list[str]:
    """Means over the tasks where every method applies (paper's tasks run, then all run), with
    BC's gain over no calibration, over the best of CC/DC/PC, and BCL's over BC."""
    lines = [
        "| shots | metric, tasks | " + " | ".join(METHODS)
        + " | BC − none | BC − best of CC/DC/PC | BCL − BC |",
        "|---|---|" + "---:|" * (len(METHODS) + 3),
    ]
    for metric, table in tables.items():
        for k in shots:
            rows = table[k]
            common = [t for t, v in rows.items() if all(v.get(m) is not None for m in METHODS)]
            paper = [t for t in common if t in PAPER_TASKS]
            groups = [(f"paper's ({len(paper)})", paper), (f"all ({len(common)})", common)]
            if len(paper) in (0, len(common)):
                groups = groups[1:]
            for label, names in groups:
                mean = {m: 100 * np.mean([rows[t][m] for t in names]) for m in METHODS}
                rival = max(("cc", "dc", "pc"), key=mean.get)
                lines.append(
                    f"| {k} | {metric}, {label} | " + " | ".join(f"{mean[m]:.1f}" for m in METHODS)
                    + f" | {mean['bc'] - mean['none']:+.1f} | {mean['bc'] - mean[rival]:+.1f} "
                    f"({rival}) | {mean['bcl'] - mean['bc']:+.1f} |"
                )
    return lines


def _table(rows: dict) -> list[str]:
    lines = ["| task | " + " | ".join(METHODS) + " |", "|---|" + "---:|" * len(METHODS)]
    for task, values in rows.items():
        best = max((values[m] for m in METHODS if values.get(m) is not None), default=None)
        cells = [
            "n/a" if values.get(m) is None
            else f"**{100 * values[m]:.1f}**" if values[m] == best
            else f"{100 * values[m]:.1f}"
            for m in METHODS
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    common = [t for t, v in rows.items() if all(v.get(m) is not None for m in METHODS)]
    means = [np.mean([rows[t][m] for t in common]) for m in METHODS]
    lines.append(
        f"| **mean, {len(common)} tasks where all apply** | "
        + " | ".join(f"{100 * v:.1f}" for v in means) + " |"
    )
    applicable = [[v[m] for v in rows.values() if v.get(m) is not None] for m in METHODS]
    lines.append(
        "| mean, tasks where each applies (count) | "
        + " | ".join(f"{100 * np.mean(v):.1f} ({len(v)})" for v in applicable) + " |"
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
