"""SEAT/WEAT results of several models side by side, beside published effect sizes: the report
of ``benchmarks/bias.py`` (docs/bias-results.md)."""

from __future__ import annotations

from lmboost.evaluation.report import markdown_table

# Caliskan et al. 2017 (GloVe, WEAT 1-10) and Meade et al. 2022 (bert-base-uncased, SEAT 6-8b).
GLOVE = {f"weat{i}": d for i, d in enumerate(
    [1.50, 1.53, 1.41, 1.50, 1.28, 1.81, 1.06, 1.24, 1.38, 1.21], start=1)}
BERT_BASE = {"sent-weat6": 0.931, "sent-weat6b": 0.090, "sent-weat7": -0.124,
             "sent-weat7b": 0.937, "sent-weat8": 0.783, "sent-weat8b": 0.858}


def comparison_summary(results: dict[str, dict]) -> dict:
    """Per run (name -> :func:`lmboost.bias.run_bias`'s ``results.json``): wall time, vector
    size and each test's effect size and p-value."""
    return {run: {"wall_time_s": r["wall_time_s"], "dim": r["model"]["dim"],
                  "tests": {t["test"]: {"effect_size": t["effect_size"], "p_value": t["p_value"]}
                            for t in r["tests"]}}
            for run, r in results.items()}


def comparison_report(results: dict[str, dict]) -> str:
    """Markdown: one row per test (the runs ran the same tests), its sets, the effect size per
    run (``*``: p < 0.01) and the published ones; then significant tests and wall time per run."""
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
