"""The held-out instruction-tuning ablation (``benchmarks/instruction_tuning.py``, Flan-CoT):
a base model vs the same model tuned on a mixture without and with chain-of-thought data,
evaluated on task groups held out of both mixtures. The pieces between lmboost's entry points:

- :func:`mixture_or_reuse`: :func:`~lmboost.instruct.build_mixture` into a folder, or the
  mixture already there when it was built with the same config (else :class:`MixtureError`);
- :func:`icl_row` / :func:`reasoning_row`: one evaluation row from the record of
  :func:`lmboost.icl.run_icl` (zero-shot accuracy) or :func:`lmboost.reasoning.run_reasoning`
  (accuracy, each item's correctness, and for chain-of-thought modes the chains' mean length
  in words and share of empty chains);
- :func:`summarise`: the rows grouped by evaluation with each model's accuracy, whether the
  task was held out of every mixture (:func:`sources_of`), exact McNemar tests between the
  models on the same items (:mod:`lmboost.evaluation.stats`) and each model's mean over the
  held-out rows (:func:`mean_held_out`, Flan's headline figure); :func:`render` writes it as
  Markdown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lmboost.evaluation.records import read_json
from lmboost.evaluation.report import markdown_table, points
from lmboost.evaluation.stats import pairwise_mcnemar
from lmboost.instruct.mixture import (
    MIXTURE_FILE,
    STATS_FILE,
    MixtureConfig,
    build_mixture,
    write_mixture,
)
from lmboost.instruct.sources import MixtureError, list_sources

#: The compared models: the base, tuned without CoT data, tuned with it.
MODELS = ("base", "nocot", "cot")
PAIRS = (("base", "nocot"), ("base", "cot"), ("nocot", "cot"))
REASON_FAMILIES = ("gsm8k", "bbh", "mmlu")
#: Reasoning tasks whose training data some mixture source holds (its group decides held-out).
REASON_SOURCES = {"gsm8k": ("cot:gsm8k", "gsm8k-train")}


def mixture_or_reuse(config: MixtureConfig, out: Path) -> tuple[dict[str, Any], bool]:
    """``(stats, reused)``: the mixture in ``out`` when it was built with ``config``, else one
    built and written there; MixtureError when ``out`` holds a mixture of another config."""
    stats_path = out / STATS_FILE
    if stats_path.is_file() and (out / MIXTURE_FILE).is_file():
        stats = read_json(stats_path)
        if stats["config"] != config.to_dict():
            raise MixtureError(
                f"{out} holds a mixture built with other settings; delete it (and what was "
                "trained and evaluated from it) to start over, or choose another output folder."
            )
        return stats, True
    return write_mixture(build_mixture(config), out, config), False


def icl_row(model: str, task: str, results: Mapping[str, Any]) -> dict[str, Any]:
    """The row of a zero-shot, uncalibrated :func:`lmboost.icl.run_icl` record."""
    return {"model": model, "kind": "icl", "task": task, "mode": "zero-shot",
            "n": results["eval"]["n"], "accuracy": results["summary"][0]["accuracy"]["mean"]}


def reasoning_row(model: str, task: str, mode: str, results: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """The row of a :func:`lmboost.reasoning.run_reasoning` record; ``correct`` maps each
    item's uid to whether it was solved."""
    row = {"model": model, "kind": "reason", "task": task, "mode": mode,
           "n": results["n_items"], "accuracy": results["accuracy"],
           "correct": {item["uid"]: item["correct"] for item in results["items"]}}
    if mode != "direct":  # what the model reasoned: how long its chains, how many empty
        words = [len(chain.split()) for item in results["items"] for chain in item["chains"]]
        row |= {"chain_words": sum(words) / len(words),
                "empty_chains": words.count(0) / len(words)}
    return row


def sources_of(task: str) -> list[str]:
    """The mixture sources that hold ``task``'s training data (none for BBH and MMLU)."""
    family = task.partition(":")[0]
    if family in REASON_FAMILIES:
        return list(REASON_SOURCES.get(family, ()))
    return [task] if task in list_sources() else []


def summarise(evals: Iterable[Mapping[str, Any]], seen: Iterable[str]) -> dict[str, Any]:
    """``{"evals": one row per (task, mode), "mean_held_out": ...}`` from the evaluation rows
    of every model; ``seen`` are the sources some mixture held, and a row is ``held_out`` when
    none of them holds its task."""
    seen = set(seen)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for e in evals:
        row = rows.setdefault((e["task"], e["mode"]), {
            "task": e["task"], "mode": e["mode"], "kind": e["kind"], "n": e["n"],
            "held_out": not (set(sources_of(e["task"])) & seen), "accuracy": {},
        })
        row["accuracy"][e["model"]] = e["accuracy"]
        for key in ("correct", "chain_words", "empty_chains"):
            if key in e:
                row.setdefault(key, {})[e["model"]] = e[key]
    for row in rows.values():
        if "correct" in row:
            tests = pairwise_mcnemar(row.pop("correct"), PAIRS)
            row["paired"] = {k: t.to_dict() for k, t in tests.items()}
    return {"evals": list(rows.values()), "mean_held_out": mean_held_out(list(rows.values()))}


def mean_held_out(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each model's unweighted mean accuracy over the held-out rows that every model has."""
    kept = [r for r in rows if r["held_out"]]
    models = set.intersection(*(set(r["accuracy"]) for r in kept)) if kept else set()
    return {
        "n_evaluations": len(kept),
        "accuracy": {m: sum(r["accuracy"][m] for r in kept) / len(kept) for m in models},
    }


def training_facts(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the summary keeps of an SFT run's :func:`lmboost.training.train` record."""
    return {"examples": record["data"]["n_train"], "steps": record["train"]["global_step"],
            "train_loss": record["train"]["train_loss"], "dev_loss": record["eval"]["loss"],
            "seconds_per_step": record["train"]["seconds_per_step"],
            "train_runtime_s": record["train"]["train_runtime_s"],
            "trainable_parameters": record["parameters"]["trainable"],
            "merged": record["saved"]["merged"]}


def render(summary: Mapping[str, Any]) -> str:
    """The Markdown report: the accuracy table (with the held-out mean), the chains of the CoT
    rows, the paired tests, then the mixtures and the training runs."""
    held = ", ".join(summary["held_out_groups"]) or "none"
    lines = [
        f"# Instruction tuning on {summary['model']}: base vs Flan mixture without / with CoT",
        "",
        f"Held-out groups (absent from both mixtures): {held}. Accuracy in %; zero-shot "
        "classification is uncalibrated; \"seen\" marks a task some mixture trained on.",
        "",
    ]
    rows = [[row["task"] + ("" if row["held_out"] else " (seen)"), row["mode"], row["n"],
             *(row["accuracy"].get(m) for m in MODELS)] for row in summary["evals"]]
    mean = summary["mean_held_out"]
    rows.append([f"**mean of the {mean['n_evaluations']} held-out rows**", "", "",
                 *(mean["accuracy"].get(m) for m in MODELS)])
    lines.append(markdown_table(rows, ["evaluation", "mode", "n", "base", "no CoT", "CoT"],
                                dict.fromkeys(["base", "no CoT", "CoT"], points),
                                align=dict.fromkeys(["n", "base", "no CoT", "CoT"], "right")))
    cot_rows = [r for r in summary["evals"] if "chain_words" in r]
    if cot_rows:
        lines += ["", "Chains written in the CoT rows: mean words per chain, and the share of "
                  "empty chains (the model answered without reasoning).", ""]
        lines.append(markdown_table(
            [[row["task"], row["mode"], *(row["chain_words"].get(m) for m in MODELS),
              *(row["empty_chains"].get(m) for m in MODELS)] for row in cot_rows],
            ["evaluation", "mode", "words: base", "no CoT", "CoT", "empty: base", "no CoT",
             "CoT"],
            {2: ".1f", 3: ".1f", 4: ".1f", 5: points, 6: points, 7: points},
            align=dict.fromkeys(range(2, 8), "right"),
        ))
    paired = [r for r in summary["evals"] if r.get("paired")]
    if paired:
        lines += ["", "Paired on the same items (McNemar): items only the first model got "
                  "right / only the second, and the exact two-sided p-value.", ""]
        names = ["base vs no CoT", "base vs CoT", "no CoT vs CoT"]
        lines.append(markdown_table(
            [[row["task"], row["mode"], *(row["paired"].get(f"{a}-{b}") for a, b in PAIRS)]
             for row in paired],
            ["evaluation", "mode", *names], dict.fromkeys(names, _mcnemar),
        ))
    rows = []
    for variant, mix in summary["mixtures"].items():
        t = summary["training"][variant]
        rows.append([variant, mix["n"], len(mix["per_source"]), t["steps"], t["train_loss"],
                     t["dev_loss"], t["seconds_per_step"] or None])
    numbers = ["records", "sources", "steps", "train loss", "dev loss", "s / step"]
    lines += ["", markdown_table(
        rows, ["mixture", *numbers],
        {"train loss": ".3f", "dev loss": ".3f", "s / step": ".2f"},
        align=dict.fromkeys(numbers, "right"),
    )]
    return "\n".join(lines) + "\n"


def _mcnemar(test: Mapping[str, Any]) -> str:
    return f"{test['only_first']} / {test['only_second']}, p {test['p']:.2g}"
