"""Reasoning benchmark: direct vs zero-shot CoT vs few-shot CoT vs CoT + self-consistency.

Each model x task (GSM8K, BBH, MMLU subsets) x setting through
:func:`lmboost.reasoning.run_reasoning` into ``--results/<model>/<task>-<setting>/``
(resumable); ``summary.md``: accuracy, seconds per item, cost against one greedy chain and the
samples early stopping saved, over every finished run.

    .venv/bin/python benchmarks/reasoning.py --models smollm2-135m-instruct \\
        --gsm8k-limit 50 --bbh-limit 3 --mmlu-limit 2 --sc 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmboost.evaluation.records import read_json
from lmboost.evaluation.report import markdown_table
from lmboost.reasoning import ReasoningConfig, run_reasoning

TASKS = ("gsm8k", "bbh", "mmlu")
SETTINGS = {  # name -> (mode, self-consistency samples or None for greedy)
    "direct": ("direct", None),
    "zs-cot": ("zs-cot", None),
    "fs-cot": ("fs-cot", None),
    "fs-cot+sc": ("fs-cot", "sc"),
}


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
                run_reasoning(
                    ReasoningConfig(
                        task=task,
                        model=model,
                        mode=mode,
                        self_consistency=args.sc if sc else 1,
                        early_stop=bool(sc),
                        limit=limit,
                        max_new_tokens=args.max_new_tokens,
                        batch_size=args.batch_size,
                        out=args.results / model / f"{task}-{setting}",
                        progress=True,
                    )
                )
    args.results.mkdir(parents=True, exist_ok=True)
    text = render(collect(args.results), args.sc)
    (args.results / "summary.md").write_text(text)
    print(text)
    return 0


def collect(root: Path) -> list[tuple[str, str, str, dict]]:
    """Every finished run under ``root`` (this invocation's and earlier ones', so models or
    tasks run separately at different sizes share one table), ordered by model, task, setting."""
    found = []
    for path in root.glob("*/*/results.json"):
        task, _, setting = path.parent.name.partition("-")
        if task in TASKS and setting in SETTINGS:
            found.append((path.parent.parent.name, task, setting, path))
    settings = list(SETTINGS)
    found.sort(key=lambda r: (r[0], TASKS.index(r[1]), settings.index(r[2])))
    return [(model, task, setting, read_json(path)) for model, task, setting, path in found]


def render(rows: list[tuple[str, str, str, dict]], n: int) -> str:
    """One Markdown table: accuracy, seconds per item and sampling cost per run."""
    table = []
    greedy = {(m, t): r["seconds_per_item"] for m, t, s, r in rows if s == "fs-cot"}
    for model, task, setting, r in rows:
        base = greedy.get((model, task))
        cost = f"{r['seconds_per_item'] / base:.1f}x" if base else "—"
        samples = f"{r['samples_used']} / {r['samples_saved']}" if setting.endswith("sc") else "—"
        table.append([model, task, setting, r["n_items"], 100 * r["accuracy"],
                      r["seconds_per_item"], cost, samples])
    columns = ["model", "task", "setting", "items", "accuracy (%)", "s / item",
               "cost vs fs-cot", f"samples used / saved (of {n} per item)"]
    return markdown_table(table, columns, {"accuracy (%)": ".1f", "s / item": ".1f"},
                          align={"cost vs fs-cot": "right"}) + "\n"


if __name__ == "__main__":
    sys.exit(main())
