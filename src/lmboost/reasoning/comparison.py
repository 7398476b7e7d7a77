"""Reasoning runs side by side (direct, chain of thought, self-consistency): the summary of
``benchmarks/reasoning.py`` (docs/reasoning-results.md)."""

from __future__ import annotations

from pathlib import Path

from lmboost.evaluation.records import read_json
from lmboost.evaluation.report import markdown_table


def collect_runs(root: str | Path, tasks: list[str], settings: list[str],
                 ) -> list[tuple[str, str, str, dict]]:
    """Every finished run ``root/<model>/<task>-<setting>/results.json`` whose task and setting
    are listed, as (model, task, setting, results), ordered by model, then list order."""
    found = []
    for path in Path(root).glob("*/*/results.json"):
        task, _, setting = path.parent.name.partition("-")
        if task in tasks and setting in settings:
            found.append((path.parent.parent.name, task, setting, path))
    found.sort(key=lambda r: (r[0], tasks.index(r[1]), settings.index(r[2])))
    return [(model, task, setting, read_json(path)) for model, task, setting, path in found]


def comparison_table(rows: list[tuple[str, str, str, dict]], samples: int) -> str:
    """One Markdown table: accuracy, seconds per item, the cost against the greedy ``fs-cot``
    run of the same model and task, and for settings ending in ``sc`` the samples used / saved
    by early stopping (of ``samples`` per item)."""
    table = []
    greedy = {(m, t): r["seconds_per_item"] for m, t, s, r in rows if s == "fs-cot"}
    for model, task, setting, r in rows:
        base = greedy.get((model, task))
        cost = f"{r['seconds_per_item'] / base:.1f}x" if base else "—"
        used = f"{r['samples_used']} / {r['samples_saved']}" if setting.endswith("sc") else "—"
        table.append([model, task, setting, r["n_items"], 100 * r["accuracy"],
                      r["seconds_per_item"], cost, used])
    columns = ["model", "task", "setting", "items", "accuracy (%)", "s / item",
               "cost vs fs-cot", f"samples used / saved (of {samples} per item)"]
    return markdown_table(table, columns, {"accuracy (%)": ".1f", "s / item": ".1f"},
                          align={"cost vs fs-cot": "right"}) + "\n"
