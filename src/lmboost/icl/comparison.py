"""Calibrators compared over many tasks: each against Batch Calibration, and per task; the
report of ``benchmarks/calibration.py`` (docs/calibration-results.md)."""

from __future__ import annotations

from lmboost.evaluation.report import markdown_table, tasks_table
from lmboost.evaluation.stats import win_tie_loss

TIE = 0.5  # accuracy points within which a method ties with BC on a task
METRICS = ("accuracy", "macro_f1")


def versus_bc(rows: dict[str, list[dict]], shots: list[int], methods: list[str],
              tie: float = TIE) -> str:
    """Each method against BC over the tasks where both apply: means (%) and win/tie/loss (a tie
    is within ``tie`` points). ``rows``: task -> :func:`lmboost.icl.run_icl`'s ``summary``."""
    table = []
    for metric in METRICS:
        for k in shots:
            means = {m: {task: 100 * r[metric]["mean"] for task, rs in rows.items() for r in rs
                         if r["method"] == m and r["shots"] == k and r["status"] == "ok"}
                     for m in methods}
            for m in methods:
                v = None if m == "bc" else win_tie_loss(means[m], means.get("bc", {}), tie)
                if v is not None:
                    table.append([metric, k, m, v["n"], v["mean"], v["reference_mean"],
                                  v["mean"] - v["reference_mean"],
                                  f"{v['win']} / {v['tie']} / {v['loss']}"])
    return markdown_table(
        table, ["metric", "shots", "method", "tasks", "method %", "BC %", "method − BC",
                "win / tie / loss"], {"method %": ".1f", "BC %": ".1f", "method − BC": "+.1f"},
        align=dict.fromkeys(["shots", "tasks", "method %", "BC %", "method − BC"], "right"))


def comparison_report(
    model: str, summaries: dict[str, dict], timings: dict[str, float], *, shots: list[int],
    methods: list[str], seeds: int, limit: int, labelled_size: int,
) -> str:
    """Markdown: the headline against BC (:func:`versus_bc`), then % per task and method per
    metric and shot count, then the model wall time (``timings``: task -> seconds).
    ``summaries``: task -> ``{"n": ..., "rows": run_icl's summary}``."""
    rows = {task: s["rows"] for task, s in summaries.items()}
    lines = [
        f"# Calibration on {model}",
        "",
        f"Mean over {seeds} seeds; {limit} eval examples per task (fixed stratified "
        "sample; fewer where the set is smaller); labelled set of the label-using methods "
        f"(bcl, linc, hidden, knn): {labelled_size} examples per seed. n/a: the method does "
        "not apply (CC and DC need shared answer options; PMI needs per-example options). "
        "Best per row in bold.",
        "",
        "## Against BC",
        "",
        versus_bc(rows, shots, methods),
        "",
    ]
    for metric in METRICS:
        for k in shots:
            lines += [f"## {metric}, {k}-shot", "", tasks_table(rows, k, methods, metric), ""]
    lines.append(f"Model wall time: {sum(timings.values()) / 60:.1f} min in all; per task (s): "
                 + ", ".join(f"{t} {s:.0f}" for t, s in timings.items()))
    return "\n".join(lines) + "\n"
