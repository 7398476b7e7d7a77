"""Reproduction of the Batch Calibration paper's comparison (Zhou et al., ICLR 2024) at small scale.

Every task in ``--tasks`` through :func:`lmboost.icl.run_icl` with every calibrator in
``--methods`` (resumable per task under ``--results/<model>/``); writes ``summary.md`` and
``summary.json`` there: accuracy and macro-F1 (mean ± std over seeds) per task and method, each
method against BC (win/tie/loss, a tie within ``TIE`` points) and the model wall time per task.

    .venv/bin/python benchmarks/calibration.py --model smollm2-135m-instruct \\
        --tasks paper --shots 1,4 --seeds 3 --limit 200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmboost.calibration import CALIBRATORS
from lmboost.evaluation.records import read_json, write_json, write_text
from lmboost.evaluation.report import markdown_table, tasks_table
from lmboost.evaluation.speed import timed
from lmboost.evaluation.stats import win_tie_loss
from lmboost.icl import ICLConfig, run_icl

# The BC paper's 13 tasks as available here (* = 100-example subsets), then 4 more classic ones.
PAPER_TASKS = [
    "sst2", "mnli-100", "qnli", "mrpc", "qqp-100", "boolq", "cb", "copa", "rte", "wic",
    "anli-r1", "anli-r2", "anli-r3",
]
EXTRA_TASKS = ["agnews", "trec", "sst5", "subj"]
METHODS = list(CALIBRATORS)
TIE = 0.5  # accuracy points within which a method ties with BC on a task


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
    write_text(root / "summary.md", text := render(args, summaries, timings))
    print(text)
    return 0


def render(args, summaries: dict, timings: dict) -> str:
    """Markdown: the headline against BC, then % per task and method per metric and shot count."""
    rows = {task: s["rows"] for task, s in summaries.items()}
    lines = [
        f"# Calibration on {args.model}",
        "",
        f"Mean over {args.seeds} seeds; {args.limit} eval examples per task (fixed stratified "
        "sample; fewer where the set is smaller); labelled set of the label-using methods "
        f"(bcl, linc, hidden, knn): {args.labelled_size} examples per seed. n/a: the method does "
        "not apply (CC and DC need shared answer options; PMI needs per-example options). "
        "Best per row in bold.",
        "",
        "## Against BC",
        "",
        versus_bc(rows, args.shots, args.methods),
        "",
    ]
    for metric in ("accuracy", "macro_f1"):
        for k in args.shots:
            lines += [f"## {metric}, {k}-shot", "", tasks_table(rows, k, args.methods, metric), ""]
    lines.append(f"Model wall time: {sum(timings.values()) / 60:.1f} min in all; per task (s): "
                 + ", ".join(f"{t} {s:.0f}" for t, s in timings.items()))
    return "\n".join(lines) + "\n"


def versus_bc(rows: dict, shots: list[int], methods: list[str]) -> str:
    """Each method against BC over the tasks where both apply: means (%) and win/tie/loss (a
    tie is within ``TIE`` points)."""
    table = []
    for metric in ("accuracy", "macro_f1"):
        for k in shots:
            means = {m: {task: 100 * r[metric]["mean"] for task, rs in rows.items() for r in rs
                         if r["method"] == m and r["shots"] == k and r["status"] == "ok"}
                     for m in methods}
            for m in methods:
                v = None if m == "bc" else win_tie_loss(means[m], means.get("bc", {}), TIE)
                if v is not None:
                    table.append([metric, k, m, v["n"], v["mean"], v["reference_mean"],
                                  v["mean"] - v["reference_mean"],
                                  f"{v['win']} / {v['tie']} / {v['loss']}"])
    return markdown_table(
        table, ["metric", "shots", "method", "tasks", "method %", "BC %", "method − BC",
                "win / tie / loss"], {"method %": ".1f", "BC %": ".1f", "method − BC": "+.1f"},
        align=dict.fromkeys(["shots", "tasks", "method %", "BC %", "method − BC"], "right"))


if __name__ == "__main__":
    sys.exit(main())
