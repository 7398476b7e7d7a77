"""Train a model on the Hugging Face Trainer: a classification head, continued pretraining
(TAPT/DAPT) or supervised fine-tuning, fully or with LoRA, optionally adversarially.

Settings come from a YAML recipe (--recipe, see recipes/*.yaml), then --set KEY=VALUE
overrides (dots reach into the lora and adversarial sections), then the flags below. Writes
OUT/checkpoints/, OUT/model/ (or OUT/adapter/ and, with lora.merge, OUT/merged/) and
OUT/results.json (metrics, trainable parameters, seconds per step, peak memory).

recipes:
  classify  sequence-classification head on a causal LM or the MiniLM encoder
  lm        continued pretraining: --task T (TAPT, the task's inputs) or --data corpus.txt (DAPT)
  sft       prompt/completion pairs (a task, or a .jsonl file), loss on the completion only

adversarial methods (on the input embeddings; parameters as adversarial.KEY):
  fgm     epsilon                      pgd     epsilon, alpha, steps
  freelb  epsilon, alpha, steps, init_mag
  smart   weight, epsilon, step_size, noise_std, steps, mu (Bregman term), beta

examples:
  lmboost train classify --recipe recipes/classify-sst2-lora.yaml --out runs/sst2-lora
  lmboost train classify --task sst2 --lora --adversarial fgm --max-steps 200 --out runs/fgm
  lmboost train classify --data reviews.csv --set labels=neg,pos --set template="{text}" \\
      --model minilm-l6-v2 --out runs/reviews
  lmboost train lm --recipe recipes/tapt-sst2.yaml --out runs/tapt
  lmboost train sft --recipe recipes/sft-example.yaml --set lora.r=16 --out runs/sft
  lmboost train classify --recipe recipes/classify-sst2-lora.yaml --resume --out runs/sst2-lora
  torchrun --nproc_per_node 4 -m lmboost.cli train classify --recipe ... --out ...  # 4 GPUs
  accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 4 \\
      -m lmboost.cli train classify --recipe ... --out ...   # docs/training.md
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmboost.cli.options import add_out, default_of, shown
from lmboost.tasks.custom import SUFFIXES
from lmboost.training.adversarial import ADVERSARIES
from lmboost.training.recipes import RECIPES, TrainConfig

NAME = "train"
HELP = "fine-tune: classification head, TAPT/DAPT, SFT; LoRA; FGM/PGD/FreeLB/SMART"
#: Files --task takes as data rather than as a task: the task data files, and lm's text corpus.
DATA_SUFFIXES = (*SUFFIXES, ".txt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` flags; values are checked when the recipe is built, naming the key. A flag
    left out leaves the recipe's value, else :class:`TrainConfig`'s default (shown in the
    help)."""

    def default(name: str) -> str:
        return shown(default_of(TrainConfig, name))

    parser.add_argument("recipe", choices=RECIPES, help="what to train")
    parser.add_argument("--recipe", dest="recipe_file", type=Path, metavar="FILE",
                        help="YAML recipe (recipes/*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a recipe key (repeatable)")
    parser.add_argument("--model", help=f"model spec (the recipe's, else {default('model')})")
    parser.add_argument("--task", help="registered task or .yaml task file")
    parser.add_argument("--data", help="data file (.csv/.tsv/.jsonl; lm: .txt/.jsonl corpus)")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters")
    parser.add_argument("--adversarial", choices=list(ADVERSARIES),
                        help="adversarial training method")
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help=f"optimizer steps (the recipe's, else {default('max_steps')}: "
                        "run num_train_epochs)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in OUT/checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow the model's own code (auto_map) to run (off)")
    add_out(parser)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The checked :class:`TrainConfig`: the recipe file, then the ``--set`` overrides, then the
    flags given."""
    from lmboost.training import RecipeError, build_config, parse_overrides
    from lmboost.training.recipes import merge, read_recipe

    base = read_recipe(args.recipe_file) if args.recipe_file else {}
    declared = base.get("recipe")
    if declared is not None and declared != args.recipe:
        raise RecipeError(
            f"{args.recipe_file} is a {declared} recipe, but the command is "
            f"`lmboost train {args.recipe}`; run `lmboost train {declared} ...`."
        )
    source = str(args.recipe_file or "command line")
    data = merge(base, parse_overrides(args.overrides), _flags(args), source=source)
    return build_config(data, source=source)


def run(args: argparse.Namespace) -> int:
    """Build the config, train, print the dev metrics and where the record is."""
    from lmboost.training import run_training
    from lmboost.training.trainer import is_main_process

    record = run_training(config_from_args(args))
    if is_main_process():  # under torchrun / accelerate launch: one summary, not one per process
        _print_summary(record)
    return 0


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The command's flags as recipe keys (only those given)."""
    flags: dict[str, Any] = {"recipe": args.recipe, "out": str(args.out)}
    if args.model:
        flags["model"] = args.model
    if args.task:
        if Path(args.task).suffix.lower() in DATA_SUFFIXES:
            flags.update(data=args.task, task=None)
        else:
            flags.update(task=args.task, data=None)
    if args.data:
        flags.update(data=args.data, task=None)
    if args.lora:
        flags["lora"] = {"enabled": True}
    if args.adversarial:
        flags["adversarial"] = {"method": args.adversarial}
    if args.max_steps is not None:
        flags["max_steps"] = args.max_steps
    if args.resume:
        flags["resume"] = True
    if args.no_progress:
        flags["progress"] = False
    if args.trust_remote_code:
        flags["trust_remote_code"] = True
    return flags


def _print_summary(record: dict[str, Any]) -> None:
    params = record["parameters"]
    train = record["train"]
    metrics = ", ".join(
        f"{k} {v:.4f}" for k, v in record["eval"].items() if isinstance(v, float)
    )
    print(f"\n{record['config']['recipe']} on {record['model']['spec']}: {train['global_step']} "
          f"steps, {params['trainable']:,} of {params['total']:,} parameters trained")
    print(f"dev ({record['eval']['n']} examples): {metrics}")
    memory = record["memory"]
    if train["seconds_per_step"] is not None and memory["peak_mb"] is not None:
        print(f"{train['seconds_per_step']:.3f} s/step; peak memory {memory['peak_mb']:.0f} MiB "
              f"({memory['source']})")
    for kind, path in record["saved"].items():
        print(f"{kind}: {path}")
    print(f"results: {Path(record['config']['out']) / 'results.json'}")
