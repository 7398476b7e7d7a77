"""Instruction-tuning ablation (Flan-CoT): base model vs LoRA SFT on a Flan-style mixture without
chain-of-thought data vs with it, all evaluated zero-shot on task groups held out of both mixtures.
Stages (each resumed), commands and results: docs/instruction-tuning-results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmboost.evaluation.records import read_json, write_json, write_text
from lmboost.icl import ICLConfig, run_icl
from lmboost.instruct import HELD_OUT_GROUPS, load_mixture_config
from lmboost.instruct import ablation as ab
from lmboost.reasoning import MODES as REASON_MODES
from lmboost.reasoning import ReasoningConfig, run_reasoning
from lmboost.training import load_recipe, run_training

REPO = Path(__file__).resolve().parents[1]
MIXTURES = {"nocot": REPO / "recipes" / "mixture-flan-nocot.yaml",
            "cot": REPO / "recipes" / "mixture-flan-cot.yaml"}
SFT_RECIPE = REPO / "recipes" / "sft-mixture.yaml"


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) every stage and write the summary."""
    args = parse_args(argv)
    root = args.results / (Path(args.model).name if Path(args.model).expanduser().exists()
                           else args.model.replace("/", "--"))
    held_out = split(args.held_out)
    models, mixtures, training = {"base": args.model}, {}, {}
    for variant, path in MIXTURES.items():
        out = root / "mixtures" / variant
        mixtures[variant], reused = ab.mixture_or_reuse(load_mixture_config(
            path, {"held_out": held_out, "size": args.size, "seed": args.seed}), out)
        print(f"== mixture {variant}: {'reused' if reused else 'built'}, "
              f"{mixtures[variant]['n']} records", flush=True)
        run = root / "train" / variant
        if (run / "results.json").is_file():
            training[variant] = read_json(run / "results.json")
        else:
            print(f"== train {variant}", flush=True)
            training[variant] = run_training(load_recipe(SFT_RECIPE, {
                "data": str(out / "mixture.jsonl"), "out": str(run), "model": args.model,
                "seed": args.seed, "max_steps": args.max_steps, "max_length": args.max_length,
                "chat_template": args.chat == "on", "lora": {"merge": True}, "resume": True,
                **({} if args.dev_size is None else {"eval_size": args.dev_size})}))
        models[variant] = training[variant]["saved"]["merged"]
    evals = []
    limits = {"gsm8k": args.gsm8k_limit, "bbh": args.bbh_limit, "mmlu": args.mmlu_limit}
    for name in split(args.eval_models):
        out = root / "eval" / name
        for task in split(args.icl_tasks):
            print(f"== {name} / {task} zero-shot", flush=True)
            evals.append(ab.icl_row(name, task, run_icl(ICLConfig(
                task=task, out=out / f"icl-{task}", model=models[name], shots=[0], seeds=1,
                calibration=["none"], limit=args.icl_limit, labelled_size=0, n_domain=1,
                batch_size=args.batch_size, truncation="left"), progress=False)))
        for task in split(args.reason_tasks):
            for mode in split(args.mmlu_modes if task.startswith("mmlu") else args.modes):
                print(f"== {name} / {task} {mode}", flush=True)
                evals.append(ab.reasoning_row(name, task, mode, run_reasoning(ReasoningConfig(
                    task=task, out=out / f"{task.replace(':', '_')}-{mode}", model=models[name],
                    mode=mode, limit=limits[task.partition(":")[0]],
                    max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                    chat=args.chat == "on", progress=True))))
    summary = {
        "model": args.model, "held_out_groups": held_out,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "mixtures": {v: {k: s.get(k) for k in ("n", "per_source", "per_format", "sha256")}
                     for v, s in mixtures.items()},
        "training": {v: ab.training_facts(r) for v, r in training.items()},
        **ab.summarise(evals, {s for stats in mixtures.values() for s in stats["per_source"]}),
    }
    text = ab.render(summary)
    write_json(root / "summary.json", summary)
    write_text(root / "summary.md", text)
    print(text)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's flags (sizes default to the roughly two-hour CPU run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--model", default="smollm2-135m-instruct", help="base model spec")
    add("--held-out", default="nli,word_sense,commonsense,math",
        help=f"groups left out of both mixtures ({', '.join(HELD_OUT_GROUPS)})")
    add("--size", type=int, default=800, help="records per mixture")
    add("--seed", type=int, default=0, help="mixture and training seed")
    add("--dev-size", type=int, help="records held out as dev (recipe: 100)")
    add("--max-steps", type=int, default=-1, help="-1: one epoch")
    add("--max-length", type=int, default=192, help="tokens per training record")
    add("--chat", choices=("off", "on"), default="off", help="chat template (train, reason)")
    add("--icl-tasks", default="anli-r1,qnli,wic,copa", help="classification tasks, zero-shot")
    add("--icl-limit", type=int, default=100, help="eval examples per task")
    add("--reason-tasks", default="gsm8k,bbh,mmlu", help="gsm8k, bbh[:task], mmlu[:subject]")
    add("--modes", default="direct,zs-cot", help="reasoning modes (GSM8K, BBH)")
    add("--mmlu-modes", default="direct", help="MMLU's modes (direct: 5-shot scored, as Flan)")
    add("--eval-models", default=",".join(ab.MODELS), help="models to evaluate (a second "
        "process can take one; a final run with all three reuses the stored evaluations)")
    add("--gsm8k-limit", type=int, default=20, help="GSM8K test items")
    add("--bbh-limit", type=int, default=1, help="items per BBH task")
    add("--mmlu-limit", type=int, default=1, help="items per MMLU subject")
    add("--max-new-tokens", type=int, default=256, help="chain length limit")
    add("--batch-size", type=int, default=8, help="scoring/generation batch")
    add("--results", type=Path, default=REPO / "benchmarks" / "results" / "instruction_tuning",
        help="results root; a folder per model goes under it")
    args = parser.parse_args(argv)
    # checked here, not hours later when the evaluations reach them
    families = [t.partition(":")[0] for t in split(args.reason_tasks)]
    for flag, values, allowed in (("--eval-models", split(args.eval_models), ab.MODELS),
                                  ("--modes", split(args.modes), REASON_MODES),
                                  ("--mmlu-modes", split(args.mmlu_modes), REASON_MODES),
                                  ("--reason-tasks", families, ab.REASON_FAMILIES)):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            parser.error(f"{flag}: {', '.join(unknown)} not among {', '.join(allowed)}")
    return args


def split(text: str) -> list[str]:
    """The items of a comma-separated flag."""
    return [part.strip() for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
