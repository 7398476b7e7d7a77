"""Instruction-tuning ablation (Flan-CoT): base model vs LoRA SFT on a Flan-style mixture without
chain-of-thought data vs with it, all evaluated zero-shot on task groups held out of both mixtures.

Stages, each skipped when its output exists (so an interrupted run resumes):

1. build  ``recipes/mixture-flan-{nocot,cot}.yaml`` with ``--held-out`` groups removed and
   ``--size`` records -> ``RESULTS/mixtures/{nocot,cot}/`` (``mixture.jsonl``, ``stats.json``);
2. train  ``recipes/sft-mixture.yaml`` (LoRA, adapters merged) on each mixture ->
   ``RESULTS/train/{nocot,cot}/`` (``results.json``, ``merged/``);
3. eval   base, nocot and cot models: zero-shot classification accuracy with
   ``lmboost.icl.run_icl`` (no calibration) on ``--icl-tasks``, and ``lmboost.reasoning.
   run_reasoning`` in ``--modes`` on ``--reason-tasks`` -> ``RESULTS/eval/<model>/...``; both
   runners resume from their own records (stored scores, ``items.jsonl``).

``RESULTS`` is ``--results/<model name>``; the script ends by writing ``summary.json`` and
``summary.md`` there and printing the Markdown table (with a mean over the held-out rows, the
chains' length and share of empty chains, and exact McNemar tests on the reasoning items).
Reasoning's ``direct`` mode is lmboost's answer-only prompt (GSM8K and BBH with answer-only
exemplars, MMLU 5-shot scored); ``zs-cot`` is zero-shot. The defaults (800-record mixtures, 88
LoRA steps, 100 examples per classification task, 20 GSM8K items, one per BBH task and MMLU
subject) took about two hours on one thread of a 2-core CPU for SmolLM2-135M (measured: LoRA 45
min, evaluations 80 min; docs/instruction-tuning-results.md):

    .venv/bin/python benchmarks/instruction_tuning.py --model smollm2-135m-instruct

A smoke run on a tiny model with tiny limits:

    .venv/bin/python benchmarks/instruction_tuning.py --model /tmp/tiny-llama --size 16 \\
        --dev-size 4 --max-steps 2 --max-length 64 --icl-tasks wic --icl-limit 4 \\
        --reason-tasks bbh:boolean_expressions --bbh-limit 2 --modes zs-cot \\
        --max-new-tokens 6 --results /tmp/it-smoke
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lmboost.evaluation.records import read_json, write_json, write_text
from lmboost.evaluation.report import markdown_table
from lmboost.evaluation.stats import pairwise_mcnemar
from lmboost.icl import ICLConfig, run_icl
from lmboost.instruct import (
    HELD_OUT_GROUPS,
    build_mixture,
    list_sources,
    load_mixture_config,
    write_mixture,
)
from lmboost.reasoning import MODES as REASON_MODES
from lmboost.reasoning import ReasoningConfig, run_reasoning
from lmboost.training import load_recipe, run_training

REPO = Path(__file__).resolve().parents[1]
MIXTURES = {
    "nocot": REPO / "recipes" / "mixture-flan-nocot.yaml",
    "cot": REPO / "recipes" / "mixture-flan-cot.yaml",
}
SFT_RECIPE = REPO / "recipes" / "sft-mixture.yaml"
MODELS = ("base", "nocot", "cot")
REASON_FAMILIES = ("gsm8k", "bbh", "mmlu")
#: Reasoning tasks whose training data some mixture source holds (its group decides held-out).
REASON_SOURCES = {"gsm8k": ("cot:gsm8k", "gsm8k-train")}


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) every stage and write the summary."""
    args = parse_args(argv)
    root = args.results / model_name(args.model)
    held_out = [g.strip() for g in args.held_out.split(",") if g.strip()]
    models: dict[str, str] = {"base": args.model}
    mixtures: dict[str, dict[str, Any]] = {}
    training: dict[str, dict[str, Any]] = {}
    for variant, config_path in MIXTURES.items():
        mixtures[variant] = build_stage(config_path, root / "mixtures" / variant, held_out, args)
        training[variant] = train_stage(root / "mixtures" / variant / "mixture.jsonl",
                                        root / "train" / variant, args)
        models[variant] = training[variant]["saved"]["merged"]
    seen = {s for stats in mixtures.values() for s in stats["per_source"]}
    evals = []
    for name in split(args.eval_models):
        for task in split(args.icl_tasks):
            print(f"== {name} / {task} zero-shot", flush=True)
            evals.append(icl_eval(name, models[name], task, root / "eval" / name, args))
        for task in split(args.reason_tasks):
            for mode in split(args.mmlu_modes if task.startswith("mmlu") else args.modes):
                print(f"== {name} / {task} {mode}", flush=True)
                evals.append(reason_eval(name, models[name], task, mode, root / "eval" / name,
                                         args))
    summary = summarise(args, held_out, mixtures, training, evals, seen)
    text = render(summary)
    write_json(root / "summary.json", summary)
    write_text(root / "summary.md", text)
    print(text)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's flags (sizes default to the roughly two-hour CPU run)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="base model spec")
    parser.add_argument("--held-out", default="nli,word_sense,commonsense,math",
                        help=f"groups left out of both mixtures ({', '.join(HELD_OUT_GROUPS)})")
    parser.add_argument("--size", type=int, default=800, help="records per mixture")
    parser.add_argument("--seed", type=int, default=0, help="mixture and training seed")
    parser.add_argument("--dev-size", type=int, help="records held out as dev (recipe: 100)")
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: one epoch")
    parser.add_argument("--max-length", type=int, default=192, help="tokens per training record")
    parser.add_argument("--chat", choices=("off", "on"), default="off",
                        help="train and reason with the chat template (icl always scores plain "
                        "text)")
    parser.add_argument("--icl-tasks", default="anli-r1,qnli,wic,copa",
                        help="held-out classification tasks, scored zero-shot")
    parser.add_argument("--icl-limit", type=int, default=100, help="eval examples per task")
    parser.add_argument("--reason-tasks", default="gsm8k,bbh,mmlu",
                        help="gsm8k, bbh[:task], mmlu[:subject] (comma list)")
    parser.add_argument("--modes", default="direct,zs-cot", help="reasoning modes (GSM8K, BBH)")
    parser.add_argument("--mmlu-modes", default="direct",
                        help="MMLU's modes (direct: 5-shot scored, the figure Flan reports)")
    parser.add_argument("--eval-models", default=",".join(MODELS),
                        help="models to evaluate (a second process can take one of them; a "
                        "final run with all three reuses the stored evaluations)")
    parser.add_argument("--gsm8k-limit", type=int, default=20, help="GSM8K test items")
    parser.add_argument("--bbh-limit", type=int, default=1, help="items per BBH task")
    parser.add_argument("--mmlu-limit", type=int, default=1, help="items per MMLU subject")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="chain length limit")
    parser.add_argument("--batch-size", type=int, default=8, help="scoring/generation batch")
    parser.add_argument("--results", type=Path,
                        default=REPO / "benchmarks" / "results" / "instruction_tuning",
                        help="results root; a folder per model goes under it")
    args = parser.parse_args(argv)
    # checked here, not hours later when the evaluations reach them
    for flag, values, allowed in (("--eval-models", args.eval_models, MODELS),
                                  ("--modes", args.modes, REASON_MODES),
                                  ("--mmlu-modes", args.mmlu_modes, REASON_MODES)):
        unknown = [v for v in split(values) if v not in allowed]
        if unknown:
            parser.error(f"{flag}: {', '.join(unknown)} not among {', '.join(allowed)}")
    return args


def model_name(spec: str) -> str:
    """A folder name for a model spec: a directory's name, or the alias / hub id."""
    path = Path(spec).expanduser()
    return path.name if path.exists() else spec.replace("/", "--")


def split(text: str) -> list[str]:
    """The items of a comma-separated flag."""
    return [part.strip() for part in text.split(",") if part.strip()]


# --------------------------------------------------------------------------- stages


def build_stage(
    config_path: Path, out: Path, held_out: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Build and write one mixture, or reuse the one in ``out`` if built with these settings."""
    config = load_mixture_config(
        config_path, {"held_out": held_out, "size": args.size, "seed": args.seed}
    )
    stats_path = out / "stats.json"
    if stats_path.is_file() and (out / "mixture.jsonl").is_file():
        stats = read_json(stats_path)
        if stats["config"] != config.to_dict():
            raise SystemExit(
                f"{out} holds a mixture built with other settings; delete {out.parents[1]} "
                "(mixtures, models and evaluations) to start over, or choose another --results."
            )
        print(f"== mixture {out.name}: reusing {stats['n']} records", flush=True)
        return stats
    print(f"== mixture {out.name}: building", flush=True)
    return write_mixture(build_mixture(config), out, config)


def train_stage(data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """LoRA SFT on one mixture with the adapters merged, or the record of a finished run;
    an interrupted run resumes from its last checkpoint."""
    if (out / "results.json").is_file():
        print(f"== train {out.name}: reusing {out / 'results.json'}", flush=True)
        return read_json(out / "results.json")
    print(f"== train {out.name}", flush=True)
    overrides: dict[str, Any] = {
        "data": str(data), "out": str(out), "model": args.model, "seed": args.seed,
        "max_steps": args.max_steps, "max_length": args.max_length,
        "chat_template": args.chat == "on", "lora": {"merge": True}, "resume": True,
    }
    if args.dev_size is not None:
        overrides["eval_size"] = args.dev_size
    return run_training(load_recipe(SFT_RECIPE, overrides))


def icl_eval(
    name: str, spec: str, task: str, out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Zero-shot, uncalibrated classification accuracy of one model on one task."""
    results = run_icl(
        ICLConfig(
            task=task, out=out / f"icl-{task}", model=spec, shots=[0], seeds=1,
            calibration=["none"], limit=args.icl_limit, labelled_size=0, n_domain=1,
            batch_size=args.batch_size, truncation="left",
        ),
        progress=False,
    )
    row = results["summary"][0]
    return {"model": name, "kind": "icl", "task": task, "mode": "zero-shot",
            "n": results["eval"]["n"], "accuracy": row["accuracy"]["mean"]}


def reason_eval(
    name: str, spec: str, task: str, mode: str, out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Reasoning accuracy of one model on one task in one mode."""
    family = task.partition(":")[0]
    limits = {"gsm8k": args.gsm8k_limit, "bbh": args.bbh_limit, "mmlu": args.mmlu_limit}
    if family not in limits:
        raise SystemExit(f"--reason-tasks: {task!r} is not one of {', '.join(REASON_FAMILIES)}.")
    results = run_reasoning(
        ReasoningConfig(
            task=task, out=out / f"{task.replace(':', '_')}-{mode}", model=spec, mode=mode,
            limit=limits[family], max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size, chat=args.chat == "on", progress=True,
        )
    )
    record = {"model": name, "kind": "reason", "task": task, "mode": mode,
              "n": results["n_items"], "accuracy": results["accuracy"],
              "correct": {item["uid"]: item["correct"] for item in results["items"]}}
    if mode != "direct":  # what the model reasoned: how long its chains, how many empty
        words = [len(chain.split()) for item in results["items"] for chain in item["chains"]]
        record |= {"chain_words": sum(words) / len(words),
                   "empty_chains": words.count(0) / len(words)}
    return record


# --------------------------------------------------------------------------- summary


def summarise(
    args: argparse.Namespace,
    held_out: list[str],
    mixtures: dict[str, dict[str, Any]],
    training: dict[str, dict[str, Any]],
    evals: list[dict[str, Any]],
    seen: set[str],
) -> dict[str, Any]:
    """Settings, mixtures, training facts and one row per evaluation with each model's
    accuracy; ``held_out`` says whether no mixture trained on the task."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for e in evals:
        row = rows.setdefault((e["task"], e["mode"]), {
            "task": e["task"], "mode": e["mode"], "kind": e["kind"], "n": e["n"],
            "held_out": not (set(_sources_of(e["task"])) & seen), "accuracy": {},
        })
        row["accuracy"][e["model"]] = e["accuracy"]
        if "correct" in e:
            row.setdefault("correct", {})[e["model"]] = e["correct"]
        if "chain_words" in e:
            row.setdefault("chain_words", {})[e["model"]] = e["chain_words"]
            row.setdefault("empty_chains", {})[e["model"]] = e["empty_chains"]
    for row in rows.values():
        if "correct" in row:
            row["paired"] = _paired_tests(row.pop("correct"))
    return {
        "model": args.model,
        "held_out_groups": held_out,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "mixtures": {
            v: {"n": s["n"], "per_source": s["per_source"], "per_format": s["per_format"],
                "sha256": s.get("sha256")}
            for v, s in mixtures.items()
        },
        "training": {
            v: {"examples": r["data"]["n_train"], "steps": r["train"]["global_step"],
                "train_loss": r["train"]["train_loss"], "dev_loss": r["eval"]["loss"],
                "seconds_per_step": r["train"]["seconds_per_step"],
                "train_runtime_s": r["train"]["train_runtime_s"],
                "trainable_parameters": r["parameters"]["trainable"],
                "merged": r["saved"]["merged"]}
            for v, r in training.items()
        },
        "evals": list(rows.values()),
        "mean_held_out": _mean_held_out(list(rows.values())),
    }


def _mean_held_out(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each model's unweighted mean accuracy over the held-out evaluations that every model has
    (Flan's headline figure is such an average)."""
    kept = [r for r in rows if r["held_out"]]
    models = set.intersection(*(set(r["accuracy"]) for r in kept)) if kept else set()
    return {
        "n_evaluations": len(kept),
        "accuracy": {m: sum(r["accuracy"][m] for r in kept) / len(kept) for m in models},
    }


def _paired_tests(correct: dict[str, dict[str, bool]]) -> dict[str, dict[str, Any]]:
    """McNemar tests on the same items for each pair of models (A, B): the items only A got
    right, only B, and the exact (and mid-p) two-sided p-values (lmboost.evaluation.stats)."""
    pairs = (("base", "nocot"), ("base", "cot"), ("nocot", "cot"))
    return {k: t.to_dict() for k, t in pairwise_mcnemar(correct, pairs).items()}


def _sources_of(task: str) -> list[str]:
    """The mixture sources that hold ``task``'s training data (none for BBH and MMLU)."""
    family = task.partition(":")[0]
    if family in REASON_FAMILIES:
        return list(REASON_SOURCES.get(family, ()))
    return [task] if task in list_sources() else []


def render(summary: dict[str, Any]) -> str:
    """The Markdown report: the accuracy table, then the mixtures and the training runs."""
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
                                dict.fromkeys(["base", "no CoT", "CoT"], _pct),
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
            {2: ".1f", 3: ".1f", 4: ".1f", 5: _pct, 6: _pct, 7: _pct},
            align=dict.fromkeys(range(2, 8), "right"),
        ))
    paired = [r for r in summary["evals"] if r.get("paired")]
    if paired:
        lines += ["", "Paired on the same items (McNemar): items only the first model got "
                  "right / only the second, and the exact two-sided p-value.", ""]
        lines.append(markdown_table(
            [[row["task"], row["mode"], *(row["paired"].get(k) for k in
                                          ("base-nocot", "base-cot", "nocot-cot"))]
             for row in paired],
            ["evaluation", "mode", "base vs no CoT", "base vs CoT", "no CoT vs CoT"],
            dict.fromkeys(["base vs no CoT", "base vs CoT", "no CoT vs CoT"], _mcnemar),
        ))
    rows = []
    for variant, mix in summary["mixtures"].items():
        t = summary["training"][variant]
        rows.append([variant, mix["n"], len(mix["per_source"]), t["steps"], t["train_loss"],
                     t["dev_loss"], t["seconds_per_step"] or None])
    lines += ["", markdown_table(
        rows, ["mixture", "records", "sources", "steps", "train loss", "dev loss", "s / step"],
        {"train loss": ".3f", "dev loss": ".3f", "s / step": ".2f"},
        align=dict.fromkeys(["records", "sources", "steps", "train loss", "dev loss",
                             "s / step"], "right"),
    )]
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _mcnemar(test: dict[str, Any]) -> str:
    return f"{test['only_first']} / {test['only_second']}, p {test['p']:.2g}"


if __name__ == "__main__":
    sys.exit(main())
