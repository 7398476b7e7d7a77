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
import time
from pathlib import Path

import numpy as np

from lmboost.calibration import CALIBRATORS
from lmboost.evaluation.records import read_json, write_json
from lmboost.evaluation.report import markdown_table
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
    parser.add_argument(
        "--tasks", default="all", help="comma list, or 'paper' (13 tasks) or 'all' (+4 more)"
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of calibrators")
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
    methods = args.methods.split(",")
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
                calibration=methods,
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
    args.methods = methods
    write_json(root / "summary.json", {"model": args.model, "shots": shots, "seeds": args.seeds,
                                       "limit": args.limit, "tasks": summaries,
                                       "timings_s": timings})
    text = render(args, shots, tables, timings)
    (root / "summary.md").write_text(text)
    print(text)
    return 0


def summary_table(summaries: dict, shots: list[int], metric: str) -> dict:
    """{shots: {task: {method: mean of ``metric`` over seeds, or None where n/a}}}, and the
    same with the standard deviation over seeds under the key ``"std"``."""
    table: dict = {k: {} for k in shots}
    for task, summary in summaries.items():
        for row in summary["rows"]:
            ok = row["status"] == "ok"
            cell = table[row["shots"]].setdefault(task, {"std": {}})
            cell[row["method"]] = row[metric]["mean"] if ok else None
            cell["std"][row["method"]] = row[metric]["std"] if ok else None
    return table


def render(args, shots: list[int], tables: dict, timings: dict) -> str:
    """Markdown: the headline against BC, then % per task and method per metric and shot count."""
    lines = [
        f"# Calibration on {args.model}",
        "",
        f"Mean over {args.seeds} seeds; {args.limit} eval examples per task (fixed stratified "
        "sample; fewer where the set is smaller); labelled set of the label-using methods "
        f"(bcl, linc, hidden, knn): {args.labelled_size} examples per seed. n/a: the method does "
        "not apply (CC and DC need shared answer options; PMI needs per-example options). "
        "Best per row in bold.",
        "",
    ]
    lines += ["## Against BC", ""] + _versus_bc(tables, shots, args.methods) + [""]
    for metric, table in tables.items():
        for k in shots:
            lines += [f"## {metric}, {k}-shot", ""] + _table(table[k], args.methods) + [""]
    total = sum(timings.values())
    lines.append(f"Model wall time: {total / 60:.1f} min in all; per task (s): "
                 + ", ".join(f"{t} {s:.0f}" for t, s in timings.items()))
    return "\n".join(lines) + "\n"


def _versus_bc(tables: dict, shots: list[int], methods: list[str]) -> list[str]:
    """Each method against BC over the tasks where both apply: means (%) and win/tie/loss
    (a tie is within ``TIE`` points)."""
    rows = []
    for metric, table in tables.items():
        for k in shots:
            bc = {t: _pct(v.get("bc")) for t, v in table[k].items()}
            for method in methods:
                v = None if method == "bc" else win_tie_loss(
                    {t: _pct(row.get(method)) for t, row in table[k].items()}, bc, TIE)
                if v is not None:
                    rows.append([metric, k, method, v["n"], v["mean"], v["reference_mean"],
                                 v["mean"] - v["reference_mean"],
                                 f"{v['win']} / {v['tie']} / {v['loss']}"])
    columns = ["metric", "shots", "method", "tasks", "method %", "BC %", "method − BC",
               "win / tie / loss"]
    formats = {"method %": ".1f", "BC %": ".1f", "method − BC": "+.1f"}
    align = dict.fromkeys(["shots", "tasks", "method %", "BC %", "method − BC"], "right")
    return [markdown_table(rows, columns, formats, align=align)]


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _table(rows: dict, methods: list[str]) -> list[str]:
    table = []
    for task, values in rows.items():
        best = max((values[m] for m in methods if values.get(m) is not None), default=None)
        table.append([task, *(
            "n/a" if values.get(m) is None else ("**{}**" if values[m] == best else "{}").format(
                f"{100 * values[m]:.1f}") + f" ± {100 * values['std'][m]:.1f}"
            for m in methods)])
    applicable = [[v[m] for v in rows.values() if v.get(m) is not None] for m in methods]
    table.append(["mean, tasks where each applies (count)",
                  *(f"{100 * np.mean(v):.1f} ({len(v)})" if v else "n/a" for v in applicable)])
    return [markdown_table(table, ["task", *methods],
                           align=dict.fromkeys(range(1, len(methods) + 1), "right"))]


if __name__ == "__main__":
    sys.exit(main())
