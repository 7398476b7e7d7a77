"""Training benchmark (issue #6): full fine-tuning vs LoRA, TAPT and adversarial training with
accuracy under attack, on SST-2 and TREC: each configuration one ``lmboost.training`` run from
``recipes/bench-training-*.yaml`` with these flags laid over it, in its own process and folder.
What it does, commands and results: docs/training-results.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lmboost.evaluation.records import read_json, write_json, write_text
from lmboost.training import experiment as ex
from lmboost.training.recipes import load_recipe, merge, parse_overrides

REPO = Path(__file__).resolve().parents[1]
CLASSIFY = REPO / "recipes" / "bench-training-classify.yaml"
TAPT = REPO / "recipes" / "bench-training-tapt.yaml"
MODELS = ["smollm2-135m-instruct", "minilm-l6-v2"]
TASKS = ["sst2", "trec"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--models", default=",".join(MODELS), help="comma list of model specs")
    add("--tasks", default=",".join(TASKS), help="comma list of registered tasks")
    add("--configs", default=",".join(ex.CONFIGS), help=f"comma list of: {', '.join(ex.CONFIGS)}")
    add("--train-size", type=int, default=500, help="seeded subset of the task's train pool")
    add("--eval-size", type=int, default=400, help="seeded subset of the dev/test split")
    add("--max-length", type=int, default=64, help="tokens per example")
    add("--epochs", type=float, default=1.0)
    add("--max-steps", type=int, default=-1, help="optimizer steps; -1: --epochs")
    add("--batch-size", type=int, default=16)
    add("--eval-batch-size", type=int, default=32)
    add("--lr-full", type=float, help="learning rate of full fine-tuning (default per model)")
    add("--lr-lora", type=float, help="learning rate of LoRA (default per model)")
    add("--tapt-size", type=int, help="unlabelled inputs for TAPT (default: --train-size)")
    add("--tapt-epochs", type=float, default=3.0)
    add("--tapt-block-size", type=int, default=64)
    add("--tapt-lr", type=float, default=5e-5)
    add("--adv-radius", type=float, default=0.05, help="FGM/PGD/FreeLB radius: a fraction of "
        "the training examples' median ||E[x]|| (scale.json); 0: the methods' defaults")
    add("--attack-size", type=int, default=50, help="dev examples attacked (0: no attacks)")
    add("--attack-epsilon", type=float, default=0.05, help="embedding PGD radius")
    add("--attack-steps", type=int, default=5, help="embedding PGD steps")
    add("--attack-relative", action=argparse.BooleanOptionalAction, default=True,
        help="epsilon as a fraction of each example's embedding norm (default) or absolute")
    add("--sub-words", type=int, default=3, help="word substitution: words changed at most")
    add("--sub-candidates", type=int, default=5, help="word substitution: neighbours per word")
    add("--sub-min-similarity", type=float, default=0.0, help="neighbours' least cosine")
    add("--sub-min-lift", type=float, default=1.3, help="same-association lift (0: no filter)")
    add("--set", action="append", default=[], metavar="KEY=VALUE",
        help="a TrainConfig field of every classify run (e.g. warmup_steps=0)")
    add("--device", default="cpu", choices=["cpu", "auto"])
    add("--seed", type=int, default=0)
    add("--keep-models", action="store_true", help="keep the trained weights")
    add("--results", type=Path, default=Path("benchmarks/results/training"))
    add("--run-one", nargs=3, metavar=("MODEL", "TASK", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.configs.split(",")) - set(ex.CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {list(ex.CONFIGS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.run_one:
        return run_one(args, *args.run_one)
    from lmboost.training.models import resolve_model

    models, tasks, configs = (getattr(args, k).split(",") for k in ("models", "tasks", "configs"))
    clock = time.perf_counter()
    failed, mixed = [], []
    encoders = {model: resolve_model(model).is_encoder for model in models}
    for model in models:
        for task in tasks:
            root = args.results / model / task
            if args.attack_size and set(configs) & set(ex.ATTACKED):
                ex.write_neighbours(root / "neighbours.json", model, task, k=args.sub_candidates,
                                    min_similarity=args.sub_min_similarity,
                                    min_lift=args.sub_min_lift)
            if args.adv_radius and set(configs) & set(ex.ADVERSARIAL):
                ex.write_scale(root / "scale.json", classify_config(args, model, model, task,
                                                                    "full", root / "unused"))
            for config in configs:
                if config == "tapt" and encoders[model]:
                    continue
                for stage in ex.pending(root, config, bench_settings(args)):
                    print(f"== {model} / {task} / {stage}", flush=True)
                    code = subprocess.call([sys.executable, __file__, *argv,
                                            "--run-one", model, task, stage])
                    if code:
                        failed.append(f"{model}/{task}/{stage}")
                        print(f"!! {model}/{task}/{stage} failed (exit {code})", flush=True)
                        break
                if config == "tapt" and not args.keep_models and ex.done(root, "tapt"):
                    shutil.rmtree(root / "tapt" / "lm" / "model", ignore_errors=True)
                if ex.done(root, config) and ex.stale(root, config, bench_settings(args)):
                    mixed.append(f"{model}/{task}/{config}")
                    print(f"!! {model}/{task}/{config}: stored with other settings; delete its "
                          "folder to rerun it with these", flush=True)
    settings = {k: v for k, v in vars(args).items() if k != "run_one"}
    summary = {"kind": "training-benchmark", "settings": settings, "models": models,
               "tasks": tasks, "encoders": encoders,
               "runs": ex.collect(args.results, models, tasks),
               "wall_time_s": round(time.perf_counter() - clock, 1),
               "failed": failed, "other_settings": mixed}
    write_json(args.results / "summary.json", summary)
    text = ex.render(summary)
    write_text(args.results / "summary.md", text)
    print(text)
    return 1 if failed else 0


def bench_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that shape a run's result (stored with it, compared on resume)."""
    skip = {"models", "tasks", "configs", "keep_models", "results", "run_one"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def run_one(args: argparse.Namespace, model: str, task: str, stage: str) -> int:
    """Train (and score, and attack) one configuration; runs in its own process."""
    import torch

    from lmboost.training import KeepModel, run_training
    from lmboost.training.trainer import peak_rss_mb

    root = args.results / model / task
    out = ex.stage_dir(root, stage)
    shutil.rmtree(out if stage == "tapt-lm" else out / "run", ignore_errors=True)  # unfinished
    start = time.perf_counter()
    if stage == "tapt-lm":
        run_training(load_recipe(TAPT, {**common(args, task, out), "model": model,
                                 "max_train_examples": args.tapt_size or args.train_size,
                                 "block_size": args.tapt_block_size,
                                 "num_train_epochs": args.tapt_epochs,
                                 "learning_rate": args.tapt_lr}), callbacks=[KeepModel()])
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        ex.mark_lm_stage(root, bench_settings(args))
        return 0
    spec = str(root / "tapt" / "lm" / "model") if stage == "tapt" else model
    keeper = KeepModel()
    record = run_training(classify_config(args, spec, model, task, stage, out / "run"),
                   callbacks=[keeper])
    result = ex.run_result(record, model=model, task=task, config=stage,
                           threads=torch.get_num_threads(), bench=bench_settings(args))
    if stage == "tapt":
        result["tapt"] = ex.tapt_facts(read_json(root / "tapt" / "lm" / "results.json"))
    if stage in ex.ATTACKED and args.attack_size:
        result["attacks"] = ex.attack(
            keeper.model, model, task, root / "neighbours.json", eval_size=args.eval_size,
            attack_size=args.attack_size, seed=args.seed, epsilon=args.attack_epsilon,
            steps=args.attack_steps, relative=args.attack_relative, max_words=args.sub_words,
            max_length=args.max_length, batch_size=args.eval_batch_size)
    result["wall_time_s"] = round(time.perf_counter() - start, 1)
    result["process_peak_rss_mb"] = peak_rss_mb()
    if not args.keep_models:
        shutil.rmtree(out / "run" / "model", ignore_errors=True)
    shutil.rmtree(out / "run" / "checkpoints", ignore_errors=True)
    write_json(out / "result.json", result)
    print(f"   dev accuracy {result['dev']['accuracy']:.3f}, "
          f"{result['train']['seconds_per_step']:.2f} s/step, peak RSS "
          f"{result['peak_rss_mb']:.0f} MB, {result['wall_time_s']:.0f} s", flush=True)
    return 0


def common(args: argparse.Namespace, task: str, out: Path) -> dict[str, Any]:
    """The recipe values every run of this call shares."""
    return {"task": task, "out": str(out), "seed": args.seed, "device": args.device,
            "per_device_train_batch_size": args.batch_size,
            "per_device_eval_batch_size": args.eval_batch_size,
            "max_eval_examples": args.eval_size, "max_steps": args.max_steps}


def classify_config(args: argparse.Namespace, spec: str, model: str, task: str, config: str,
                    out: Path):
    """The TrainConfig of a classify configuration: the recipe, this call's flags, ``--set``."""
    values = {**common(args, task, out), "model": spec, "max_train_examples": args.train_size,
              "max_length": args.max_length, "num_train_epochs": args.epochs,
              **ex.classify_values(config, model, radius=args.adv_radius,
                                   learning_rates={"full": args.lr_full, "lora": args.lr_lora},
                                   scale=out.parent.parent / "scale.json")}
    return load_recipe(CLASSIFY, merge(values, parse_overrides(args.set)))


if __name__ == "__main__":
    sys.exit(main())
