"""SEAT/WEAT effect sizes of the packaged models, beside published ones.

Every SEAT test through :func:`lmboost.bias.run_bias` for each ``MODEL:POOLING`` in ``--runs``
(resumable, ``--results/<model>-<pooling>/``); ``summary.md`` and ``summary.json``: one row per
test, one column per run (``*``: p < 0.01), beside GloVe (Caliskan et al. 2017, WEAT 1-10) and
bert-base-uncased (Meade et al. 2022, SEAT 6-8b). See docs/bias-results.md.

    .venv/bin/python benchmarks/bias.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmboost.bias import BiasConfig, run_bias
from lmboost.evaluation.records import read_json, write_json, write_text
from lmboost.evaluation.report import markdown_table

RUNS = "minilm-l6-v2:mean,smollm2-135m-instruct:mean,smollm2-135m-instruct:last,gemma3-270m:mean"
GLOVE = {f"weat{i}": d for i, d in enumerate(
    [1.50, 1.53, 1.41, 1.50, 1.28, 1.81, 1.06, 1.24, 1.38, 1.21], start=1)}
BERT_BASE = {"sent-weat6": 0.931, "sent-weat6b": 0.090, "sent-weat7": -0.124,
             "sent-weat7b": 0.937, "sent-weat8": 0.783, "sent-weat8b": 0.858}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=RUNS, help="comma list of MODEL:POOLING")
    parser.add_argument("--tests", default="all")
    parser.add_argument("--permutations", type=int, default=100_000)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/bias"))
    args = parser.parse_args(argv)

    results = {}
    for run in args.runs.split(","):
        model, _, pooling = run.partition(":")
        out = args.results / f"{model}-{pooling or 'mean'}"
        if not (out / "results.json").exists():
            print(f"== {run}", flush=True)
            run_bias(BiasConfig(model=model, pooling=pooling or "mean", out=out,
                                tests=args.tests.split(","), permutations=args.permutations))
        results[run] = read_json(out / "results.json")
    write_json(args.results / "summary.json", {
        run: {"wall_time_s": r["wall_time_s"], "dim": r["model"]["dim"],
              "tests": {t["test"]: {"effect_size": t["effect_size"], "p_value": t["p_value"]}
                        for t in r["tests"]}}
        for run, r in results.items()
    })
    text = render(results)
    write_text(args.results / "summary.md", text)
    print(text)
    return 0


def render(results: dict[str, dict]) -> str:
    """One row per test: its sets, our effect size per run (* p < 0.01), the references."""
    runs = list(results)
    first = results[runs[0]]
    lines = [
        "# SEAT / WEAT effect sizes",
        "",
        "Effect size d (Caliskan et al. 2017): > 0 means the first target set is closer to the "
        "first attribute set. `*`: one-sided permutation p < 0.01. Word-level tests (`weatN`) "
        "encode single words; `sent-` tests encode them in bleached sentence templates (May et "
        "al. 2019). GloVe: Caliskan et al. 2017; BERT-base: Meade et al. 2022 (SEAT 6-8b).",
        "",
    ]
    rows = []
    for i, test in enumerate(first["tests"]):
        sets = test["sets"]
        cells = []
        for run in runs:
            row = results[run]["tests"][i]
            d = row["effect_size"]
            star = "*" if row["p_value"] < 0.01 else ""
            cells.append("n/a" if d is None else f"{d:.2f}{star}")
        name = test["test"]
        rows.append([name, f"{sets['targ1']['category']} vs {sets['targ2']['category']}",
                     f"{sets['attr1']['category']} vs {sets['attr2']['category']}", *cells,
                     GLOVE.get(name), BERT_BASE.get(name)])
    columns = ["test", "targets (X vs Y)", "attributes (A vs B)", *runs, "GloVe", "BERT-base"]
    lines.append(markdown_table(rows, columns, {"GloVe": ".2f", "BERT-base": ".2f"},
                                align=dict.fromkeys(range(3, len(columns)), "right"),
                                missing=""))
    significant = {run: sum(t["p_value"] < 0.01 for t in r["tests"]) for run, r in results.items()}
    lines += ["", "Tests significant at p < 0.01: " + ", ".join(
        f"{run} {n}/{len(first['tests'])}" for run, n in significant.items()) + ".",
        "", "Wall time per run (s): " + ", ".join(
        f"{run} {r['wall_time_s']:.0f}" for run, r in results.items()) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
