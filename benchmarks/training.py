"""Training benchmark (issue #6): full fine-tuning vs LoRA, TAPT, and adversarial training with
accuracy under attack, on SST-2 and TREC with SmolLM2-135M-Instruct and MiniLM-L6.

Every configuration is one run of ``lmboost.training.train`` (recipe ``classify``) in its own
folder ``--results/<model>/<task>/<config>/`` (the Trainer's output in ``run/``, the
benchmark's record in ``result.json``) and in its own process, so its peak RSS is its own. A
configuration whose ``result.json`` exists is skipped, so an interrupted benchmark resumes; an
unfinished one starts again. Weights are deleted after scoring (``--keep-models`` keeps them).

Configurations (all: same seeded train subset, 1 epoch, batch 16, max length 64, linear decay
with 6% warm-up, weight decay 0.01, seed 0; scored on the same seeded dev subset):

=========  ============================================================================
full       full fine-tuning, the new classification head included; the baseline
lora       LoRA r=8, alpha 16, dropout 0.05 (lmboost.training.lora's target modules)
tapt       TAPT (Gururangan et al. 2020): recipe ``lm`` (next-token loss) on the task's
           unlabelled training inputs (``--tapt-size``, ``--tapt-epochs``, blocks of 64
           tokens), then ``full`` from those weights (causal LMs only: the packaged
           MiniLM has no masked-LM head and recipe ``lm`` trains causal LMs, so its row is
           n/a rather than a masked-LM objective with a randomly initialised head)
fgm, pgd,  ``full`` plus the adversarial method. Radius epsilon = ``--adv-radius`` (0.05)
freelb,    times the median ||E[x]|| of the training examples under the base model's input
smart      embeddings (``scale.json``; MiniLM about 6, so epsilon about 0.3): FGM one step
           of epsilon; PGD 3 steps of 0.3 epsilon; FreeLB 3 steps of 0.1 epsilon; SMART
           with lmboost's defaults (weight 1, epsilon 0.01, 1 step, no Bregman term). The
           methods' absolute default (epsilon 1, ``--adv-radius 0``) is 16% of a MiniLM
           SST-2 example's norm, and FGM at that radius left MiniLM at the majority class
           after 32 steps; at 5% it keeps clean accuracy.
=========  ============================================================================

``full`` and the four adversarial configurations are also attacked, on a seeded sample of
``--attack-size`` examples of the dev subset (both attacks in ``lmboost.training.attacks``,
deterministic; an example counts as robust when it is classified correctly before and
throughout the attack):

- embedding PGD: ``--attack-steps`` steps in the per-example L2 ball of radius
  ``--attack-epsilon`` times the example's own ||E[x]|| (0.05, the training radius;
  ``--no-attack-relative``: absolute, in the units the adversarial methods train in), step
  2.5 epsilon / steps;
- word substitution: greedy, at most ``--sub-words`` words per example (the most important by
  deletion), each replaced by the best of its ``--sub-candidates`` nearest neighbours in the
  base model's input-embedding space among the task's words that are one whole-word token.
  Function words, negations and question words are never touched, and a substitute must carry
  the same class association in the training pool as the word it replaces (lift >=
  ``--sub-min-lift``; this removes most antonym swaps such as good -> bad). The table is
  written once per model and task to ``neighbours.json``.

Reported: dev accuracy and macro-F1, trainable parameters, seconds per optimizer step (lmboost's
StepTimer), peak RSS of the run's process up to the end of training (getrusage), and accuracy
clean and under each attack. ``--results/summary.md`` and ``summary.json`` put the published
anchors beside ours. Learning rates (``LEARNING_RATES``) are reasonable picks, not tuned.

Sizes. Defaults: 500 training examples per task (32 steps of 16), 400 dev examples (seeded
samples of SST-2's 872 and TREC's 500), TAPT on the inputs of the same 500 examples for 3
epochs, attacks on 50 dev examples (PGD 5 steps; substitution 3 words, 5 candidates).
docs/training-results.md was made with MiniLM at 2000 examples (125 steps; about 55 min on one
thread for both tasks) and SmolLM2 at the defaults (SmolLM2 steps cost about 6-8 times
MiniLM's; about 80 min a task on one thread), each command given there::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training.py --models minilm-l6-v2 \\
        --train-size 2000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training.py --models smollm2-135m-instruct
    .venv/bin/python benchmarks/training.py --models minilm-l6-v2 --tasks sst2 \\
        --train-size 32 --eval-size 16 --attack-size 4 --max-steps 2     # a quick look
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from lmboost.evaluation.report import markdown_table

MODELS = ["smollm2-135m-instruct", "minilm-l6-v2"]
TASKS = ["sst2", "trec"]
CONFIGS = ["full", "lora", "tapt", "fgm", "pgd", "freelb", "smart"]
ADVERSARIAL = ["fgm", "pgd", "freelb", "smart"]
ATTACKED = ["full", *ADVERSARIAL]
# Peak learning rates: full fine-tuning, LoRA (higher: only adapters and head move).
LEARNING_RATES = {
    "smollm2-135m-instruct": {"full": 5e-5, "lora": 5e-4},
    "minilm-l6-v2": {"full": 1e-4, "lora": 1e-3},
}
DEFAULT_LR = {"full": 5e-5, "lora": 5e-4}
LORA = {"enabled": True, "r": 8, "alpha": 16, "dropout": 0.05}
NEVER = 10**9  # eval_steps: no evaluation during training (the run is scored at its end)

ANCHORS = [
    ("LoRA vs full fine-tuning",
     "RoBERTa-base, GLUE average: full 86.4 (125M trainable) vs LoRA 87.2 (0.8M); Hu et al. "
     "2021 (LoRA repository table)", "lora"),
    ("FreeLB", "BERT-base, GLUE test score: 78.3 -> 79.4; Zhu et al. 2020", "freelb"),
    ("TAPT", "RoBERTa-base: HyperPartisan F1 86.6 -> 90.4, AG News 93.9 -> 94.5; Gururangan "
     "et al. 2020", "tapt"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--models", default=",".join(MODELS), help="comma list of model specs")
    add("--tasks", default=",".join(TASKS), help="comma list of registered tasks")
    add("--configs", default=",".join(CONFIGS), help=f"comma list of: {', '.join(CONFIGS)}")
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
    add("--adv-radius", type=float, default=0.05,
        help="FGM/PGD/FreeLB radius as a fraction of the median ||E[x]|| of the training "
        "examples (scale.json); PGD's step 0.3 and FreeLB's 0.1 of it; 0: the methods' "
        "absolute defaults")
    add("--attack-size", type=int, default=50, help="dev examples attacked (0: no attacks)")
    add("--attack-epsilon", type=float, default=0.05, help="embedding PGD radius")
    add("--attack-steps", type=int, default=5, help="embedding PGD steps")
    add("--attack-relative", action=argparse.BooleanOptionalAction, default=True,
        help="epsilon as a fraction of each example's embedding norm (default) or absolute")
    add("--sub-words", type=int, default=3, help="word substitution: words changed at most")
    add("--sub-candidates", type=int, default=5, help="word substitution: neighbours per word")
    add("--sub-min-similarity", type=float, default=0.0, help="neighbours' least cosine")
    add("--sub-min-lift", type=float, default=1.3,
        help="class-association lift of the same-association filter (0: no filter)")
    add("--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a TrainConfig field of every classify run (e.g. warmup_steps=0)")
    add("--device", default="cpu", choices=["cpu", "auto"])
    add("--seed", type=int, default=0)
    add("--keep-models", action="store_true", help="keep the trained weights")
    add("--results", type=Path, default=Path("benchmarks/results/training"))
    add("--run-one", nargs=3, metavar=("MODEL", "TASK", "CONFIG"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.run_one:
        return run_one(args, *args.run_one)
    from lmboost.training.models import resolve_model

    models, tasks = args.models.split(","), args.tasks.split(",")
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; choose from {CONFIGS}")
    clock = time.perf_counter()
    failed, mixed = [], []
    encoders = {model: resolve_model(model).is_encoder for model in models}
    for model in models:
        encoder = encoders[model]
        for task in tasks:
            root = args.results / model / task
            if args.attack_size and set(configs) & set(ATTACKED):
                write_neighbours(args, model, task, root / "neighbours.json")
            if args.adv_radius and set(configs) & set(ADVERSARIAL):
                write_scale(args, model, task, root / "scale.json")
            for config in configs:
                if config == "tapt" and encoder:
                    continue
                for stage in pending(root, config):
                    print(f"== {model} / {task} / {stage}", flush=True)
                    code = subprocess.call([sys.executable, __file__, *argv,
                                            "--run-one", model, task, stage])
                    if code:
                        failed.append(f"{model}/{task}/{stage}")
                        print(f"!! {model}/{task}/{stage} failed (exit {code})", flush=True)
                        break
                if config == "tapt" and not args.keep_models and done(root, "tapt"):
                    shutil.rmtree(root / "tapt" / "lm" / "model", ignore_errors=True)
                if done(root, config) and stale(root, config, args):
                    mixed.append(f"{model}/{task}/{config}")
                    print(f"!! {model}/{task}/{config}: stored with other settings; delete its "
                          "folder to rerun it with these", flush=True)
    summary = collect(args, models, tasks, encoders)
    summary["wall_time_s"] = round(time.perf_counter() - clock, 1)
    summary["failed"] = failed
    summary["other_settings"] = mixed
    write_json(args.results / "summary.json", summary)
    text = render(summary)
    (args.results / "summary.md").write_text(text)
    print(text)
    return 1 if failed else 0


def bench_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that shape a run's result (stored with it, compared on resume)."""
    skip = {"models", "tasks", "configs", "keep_models", "results", "run_one"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def stale(root: Path, config: str, args: argparse.Namespace) -> bool:
    """The stored result was made with other settings than this call's."""
    stored = json.loads((root / config / "result.json").read_text()).get("bench")
    return stored != json.loads(json.dumps(bench_settings(args)))


def stage_dir(root: Path, stage: str) -> Path:
    """The folder of a configuration, or of TAPT's LM stage (``tapt-lm``)."""
    return root / "tapt" / "lm" if stage == "tapt-lm" else root / stage


def done(root: Path, config: str) -> bool:
    """The configuration's result is stored."""
    return (root / config / "result.json").exists()


def pending(root: Path, config: str) -> list[str]:
    """The stages still to run for ``config``: TAPT's LM stage first when its weights are
    missing and the TAPT classifier is not yet scored."""
    if done(root, config):
        return []
    if config != "tapt":
        return [config]
    lm = stage_dir(root, "tapt-lm")
    ready = (lm / "results.json").exists() and (lm / "model").is_dir()
    return ["tapt"] if ready else ["tapt-lm", "tapt"]


def write_json(path: Path, data: Any) -> None:
    from lmboost.evaluation.records import write_json as write

    write(path, data)


# --------------------------------------------------------------------------- one run (child)


def run_one(args: argparse.Namespace, model: str, task: str, stage: str) -> int:
    """Train (and score, and attack) one configuration; runs in its own process."""
    import torch

    from lmboost.training import run_training

    root = args.results / model / task
    out = stage_dir(root, stage)
    if out.exists():  # an unfinished run: start it again
        shutil.rmtree(out / "run", ignore_errors=True)
        if stage == "tapt-lm":
            shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    if stage == "tapt-lm":
        run_training(tapt_config(args, model, task, out), callbacks=[KeepModel()])
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        return 0
    spec = str(root / "tapt" / "lm" / "model") if stage == "tapt" else model
    keeper = KeepModel()
    record = run_training(classify_config(args, spec, model, task, stage, out / "run"),
                          callbacks=[keeper])
    result: dict[str, Any] = {
        "model": model, "task": task, "config": stage, "status": "ok",
        "dev": record["eval"],
        "parameters": record["parameters"],
        "train": {k: record["train"][k] for k in
                  ("global_step", "train_loss", "seconds_per_step", "train_runtime_s")},
        "peak_rss_mb": record["memory"]["peak_mb"],
        "threads": torch.get_num_threads(),
        "settings": record["config"],
        "bench": bench_settings(args),
    }
    if stage == "tapt":
        lm = json.loads((root / "tapt" / "lm" / "results.json").read_text())
        result["tapt"] = {
            "global_step": lm["train"]["global_step"],
            "seconds_per_step": lm["train"]["seconds_per_step"],
            "train_runtime_s": lm["train"]["train_runtime_s"],
            "train_blocks": lm["data"]["train_blocks"],
            "eval_perplexity": lm["eval"]["perplexity"],
            "peak_rss_mb": lm["memory"]["peak_mb"],
            "wall_time_s": lm["wall_time_s"],
        }
    if stage in ATTACKED and args.attack_size:
        result["attacks"] = attack(args, keeper.model, model, task, root / "neighbours.json")
    result["wall_time_s"] = round(time.perf_counter() - start, 1)
    result["process_peak_rss_mb"] = _peak_rss_mb()
    if not args.keep_models:
        shutil.rmtree(out / "run" / "model", ignore_errors=True)
    shutil.rmtree(out / "run" / "checkpoints", ignore_errors=True)
    write_json(out / "result.json", result)
    dev = result["dev"]["accuracy"]
    print(f"   dev accuracy {dev:.3f}, {result['train']['seconds_per_step']:.2f} s/step, "
          f"peak RSS {result['peak_rss_mb']:.0f} MB, {result['wall_time_s']:.0f} s", flush=True)
    return 0


def _peak_rss_mb() -> float:
    """This process's peak RSS so far, training and attacks included."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, else KiB


def _common(args: argparse.Namespace, task: str, output_dir: Path) -> dict[str, Any]:
    return {
        "task": task, "out": str(output_dir), "seed": args.seed, "device": args.device,
        "per_device_train_batch_size": args.batch_size,
        "per_device_eval_batch_size": args.eval_batch_size,
        "max_eval_examples": args.eval_size, "warmup_steps": 0.06, "weight_decay": 0.01,
        "eval_steps": NEVER, "load_best_model_at_end": False, "save_total_limit": 1,
        "logging_steps": 10, "progress": False, "max_steps": args.max_steps,
    }


def classify_config(args: argparse.Namespace, spec: str, model: str, task: str, config: str,
                    output_dir: Path):
    """The TrainConfig of a classify configuration (``--set`` laid over it)."""
    from lmboost.training.recipes import build_config, merge, parse_overrides

    kind = "lora" if config == "lora" else "full"
    lr = {"full": args.lr_full, "lora": args.lr_lora}[kind]
    lr = lr or LEARNING_RATES.get(model, DEFAULT_LR)[kind]
    values = {
        **_common(args, task, output_dir), "recipe": "classify", "model": spec,
        "max_train_examples": args.train_size, "max_length": args.max_length,
        "num_train_epochs": args.epochs, "learning_rate": lr,
    }
    if config == "lora":
        values["lora"] = dict(LORA)
    if config in ADVERSARIAL:
        values["adversarial"] = {"method": config,
                                 **adversarial_params(args, config, output_dir.parent.parent)}
    return build_config(merge(values, parse_overrides(args.set)))


def adversarial_params(args: argparse.Namespace, config: str, root: Path) -> dict:
    """The method's radius (and step) from ``--adv-radius`` and the task's embedding scale."""
    if not args.adv_radius or config == "smart":
        return {}
    scale = json.loads((root / "scale.json").read_text())["median_norm"]
    epsilon = args.adv_radius * scale
    step = {"pgd": 0.3, "freelb": 0.1}
    return {"epsilon": epsilon, **({"alpha": step[config] * epsilon} if config in step else {})}


def write_scale(args: argparse.Namespace, spec: str, task_name: str, path: Path) -> None:
    """The median L2 norm ||E[x]|| of the input embeddings of the training examples (the
    tokens of each, as the classify recipe tokenizes them), with the base model's weights
    (skipped when stored for the same examples)."""
    settings = {"train_size": args.train_size, "seed": args.seed, "max_length": args.max_length}
    if path.exists() and json.loads(path.read_text()).get("settings") == settings:
        return
    import torch

    from lmboost.training.data import classification_examples, subset

    config = classify_config(args, spec, spec, task_name, "full", path.parent / "unused")
    task, train, _ = classification_examples(config)
    train = subset(train, config.max_train_examples, config.seed)
    tokenizer, weight = base_embeddings(spec)
    ids = tokenizer([task.render(ex) for ex in train], truncation=True,
                    max_length=args.max_length)["input_ids"]
    norms = [float(weight[torch.tensor(row)].norm()) for row in ids]
    write_json(path, {"model": spec, "task": task_name, "settings": settings,
                      "examples": len(norms), "median_norm": float(np.median(norms))})


def base_embeddings(spec: str):
    """The base model's tokenizer and input-embedding matrix (detached)."""
    from transformers import AutoModel

    from lmboost.training.models import load_tokenizer, resolve_model

    source = resolve_model(spec)
    weight = AutoModel.from_pretrained(source.path).get_input_embeddings().weight.detach()
    return load_tokenizer(source), weight


def tapt_config(args: argparse.Namespace, model: str, task: str, output_dir: Path):
    """The TrainConfig of TAPT: recipe lm on the task's unlabelled training inputs."""
    from lmboost.training.recipes import build_config

    return build_config({
        **_common(args, task, output_dir), "recipe": "lm", "model": model,
        "max_train_examples": args.tapt_size or args.train_size,
        "block_size": args.tapt_block_size, "num_train_epochs": args.tapt_epochs,
        "learning_rate": args.tapt_lr,
    })


class KeepModel(TrainerCallback):
    """Keeps the trained model in memory, and stops the Trainer's own evaluation and checkpoint
    at the end (the run is scored after ``train`` returns, and never resumed)."""

    model = None

    def on_step_end(self, args, state, control, **kwargs):
        control.should_save = False
        control.should_evaluate = False
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


# --------------------------------------------------------------------------- attacks


def attack_examples(args: argparse.Namespace, task_name: str) -> list:
    """The attacked examples: a seeded sample of the dev subset the runs are scored on."""
    from lmboost.tasks import get_task
    from lmboost.training.data import subset

    dev = subset(get_task(task_name).load_eval(), args.eval_size, args.seed)
    return subset(dev, args.attack_size, args.seed)


def attack(args: argparse.Namespace, model, spec: str, task_name: str,
           neighbours_path: Path) -> dict[str, Any]:
    """Accuracy of ``model`` on the attacked examples: clean, under embedding PGD and under
    greedy word substitution (lmboost.training.attacks.evaluate_robustness)."""
    from lmboost.tasks import get_task
    from lmboost.training.attacks import evaluate_robustness
    from lmboost.training.models import load_tokenizer, resolve_model

    result = evaluate_robustness(
        model, load_tokenizer(resolve_model(spec)), get_task(task_name),
        attack_examples(args, task_name),
        candidates=json.loads(neighbours_path.read_text())["table"],
        epsilon=args.attack_epsilon, steps=args.attack_steps, relative=args.attack_relative,
        max_words=args.sub_words, max_length=args.max_length,
        batch_size=args.eval_batch_size,
    )
    result["word_substitution"]["candidates"] = args.sub_candidates
    return result


def write_neighbours(args: argparse.Namespace, spec: str, task_name: str, path: Path) -> None:
    """The substitution table of ``spec`` on ``task_name`` (skipped when stored with the same
    settings): every word of the task's inputs that is one whole-word token, with its nearest
    such words in the base model's input-embedding space that carry the same class
    association in the training pool (lmboost.training.attacks)."""
    settings = {"k": args.sub_candidates, "min_similarity": args.sub_min_similarity,
                "min_lift": args.sub_min_lift, "min_count": 5}
    if path.exists() and json.loads(path.read_text())["settings"] == settings:
        return
    from lmboost.tasks import get_task
    from lmboost.training.attacks import (
        class_associations,
        substitution_table,
        whole_word_ids,
    )

    task = get_task(task_name)
    field = task.template_fields[-1]
    pool = task.load_pool()
    documents = [ex.fields[field].split() for ex in pool + task.load_eval()]
    tokenizer, weight = base_embeddings(spec)
    ids = whole_word_ids(tokenizer, [w for words in documents for w in words])
    associations = None
    if settings["min_lift"] > 0:
        associations = class_associations(
            documents[:len(pool)], [ex.label for ex in pool], len(task.labels),
            min_count=settings["min_count"], min_lift=settings["min_lift"],
        )
    table = substitution_table(weight, ids, settings["k"],
                               min_similarity=settings["min_similarity"],
                               associations=associations)
    del weight
    gc.collect()
    write_json(path, {"model": spec, "task": task_name, "field": field, "settings": settings,
                      "words": len(ids), "table": table})


# --------------------------------------------------------------------------- summary


def collect(args: argparse.Namespace, models: list[str], tasks: list[str],
            encoders: dict[str, bool]) -> dict[str, Any]:
    """Every stored result under the benchmark's folders, and the settings of this call."""
    runs = {}
    for model in models:
        for task in tasks:
            for config in CONFIGS:
                path = args.results / model / task / config / "result.json"
                if path.exists():
                    runs[f"{model}/{task}/{config}"] = json.loads(path.read_text())
    settings = {k: v for k, v in vars(args).items() if k != "run_one"}
    settings["results"] = str(args.results)
    return {"kind": "training-benchmark", "settings": settings, "models": models,
            "tasks": tasks, "encoders": encoders, "runs": runs}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _params(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def render(summary: dict[str, Any]) -> str:
    """The Markdown report: two tables of our runs, then the published anchors."""
    s = summary["settings"]
    runs = summary["runs"]
    length = f"{s['max_steps']} steps" if s["max_steps"] > 0 else f"{s['epochs']:g} epoch(s)"
    lines = [
        "# Training benchmark",
        "",
        "Training examples (a seeded subset of the train pool) and optimizer steps: per row "
        f"below. This call: {s['train_size']} examples, {length}, batch {s['batch_size']}, max "
        f"length {s['max_length']}, seed {s['seed']}, FGM/PGD/FreeLB radius {s['adv_radius']} "
        "of the median training ||E[x]|| (scale.json); dev "
        f"accuracy on a seeded subset of {s['eval_size']} dev examples. Attacks on "
        f"{s['attack_size']} of them: embedding PGD with epsilon {s['attack_epsilon']}"
        f"{' (relative to ||E[x]||)' if s['attack_relative'] else ''}, {s['attack_steps']} "
        f"steps; greedy word substitution of up to {s['sub_words']} words, each by one of "
        f"{s['sub_candidates']} input-embedding neighbours with the same class association in "
        f"the training pool (lift >= {s['sub_min_lift']}; neighbours.json holds each table). "
        "Accuracy under attack counts an example as robust when it is right before and "
        "throughout the attack. Peak RSS: the run's process, model load and training "
        "(getrusage).",
        "",
        "## Full fine-tuning vs LoRA, with and without TAPT",
        "",
    ]
    rows = []
    for model in summary["models"]:
        for task in summary["tasks"]:
            for config in ("full", "lora", "tapt"):
                run = runs.get(f"{model}/{task}/{config}")
                if run is None:
                    encoder = summary["encoders"].get(model)
                    why = "n/a (encoder)" if config == "tapt" and encoder else "not run"
                    rows.append([model, task, config, None, why])
                    continue
                p, t = run["parameters"], run["train"]
                runtime = t["train_runtime_s"] or 0
                if config == "tapt":
                    runtime += run["tapt"]["train_runtime_s"] or 0
                rows.append([
                    model, task, config,
                    f"{run['settings']['max_train_examples']} / {t['global_step']}",
                    _pct(run["dev"]["accuracy"]), _pct(run["dev"]["macro_f1"]),
                    f"{_params(p['trainable'])} ({100 * p['trainable_fraction']:.2f}%)",
                    t["seconds_per_step"], run["peak_rss_mb"], runtime,
                ])
    lines += [
        markdown_table(
            rows,
            ["model", "task", "config", "train ex. / steps", "dev acc", "macro-F1",
             "trainable params", "s/step", "peak RSS (MB)", "train time (s)"],
            {"s/step": ".2f", "peak RSS (MB)": ".0f", "train time (s)": ".0f"},
            align=dict.fromkeys(["train ex. / steps", "dev acc", "macro-F1",
                                 "trainable params", "s/step", "peak RSS (MB)",
                                 "train time (s)"], "right"),
            missing="",
        ),
        "",
        "TAPT's train time includes its LM stage (its steps, s/step and dev perplexity are in "
        "summary.json). n/a (encoder): the packaged MiniLM has no masked-LM head and recipe lm "
        "trains causal LMs only.",
        "",
        "## Adversarial training: clean accuracy and accuracy under attack",
        "",
    ]
    rows = []
    for model in summary["models"]:
        for task in summary["tasks"]:
            base = runs.get(f"{model}/{task}/full")
            for config in ATTACKED:
                run = runs.get(f"{model}/{task}/{config}")
                name = "none (full)" if config == "full" else config
                if run is None:
                    rows.append([model, task, name, "not run"])
                    continue
                a = run.get("attacks") or {}
                step = run["train"]["seconds_per_step"]
                ratio = (f" ({step / base['train']['seconds_per_step']:.1f}x)"
                         if base and base["train"]["seconds_per_step"] else "")
                rows.append([
                    model, task, name, _pct(run["dev"]["accuracy"]),
                    _pct(a.get("clean_accuracy")),
                    _pct(a.get("embedding_pgd", {}).get("accuracy")),
                    _pct(a.get("word_substitution", {}).get("accuracy")),
                    f"{step:.2f}{ratio}",
                ])
    lines.append(markdown_table(
        rows,
        ["model", "task", "method", "dev acc", "attacked set: clean", "embedding PGD",
         "word substitution", "s/step (x full)"],
        align=dict.fromkeys(["dev acc", "attacked set: clean", "embedding PGD",
                             "word substitution", "s/step (x full)"], "right"),
        missing="",
    ))
    scale = []
    for model in summary["models"]:
        for task in summary["tasks"]:
            pgd = (runs.get(f"{model}/{task}/full") or {}).get("attacks", {}).get("embedding_pgd")
            if pgd:
                share = 100 * pgd["median_radius_over_embedding_norm"]
                scale.append(f"{model} {task} {share:.0f}%")
    if scale:
        lines += ["", "The embedding PGD radius as a share of the example's embedding norm "
                  f"||E[x]|| (median): {', '.join(scale)}."]
    rows = []
    for title, published, config in ANCHORS:
        ours = []
        for model in summary["models"]:
            for task in summary["tasks"]:
                base, run = (runs.get(f"{model}/{task}/{c}") for c in ("full", config))
                if base is None or run is None:
                    continue
                text = (f"{model} {task}: {_pct(base['dev']['accuracy'])} -> "
                        f"{_pct(run['dev']['accuracy'])}")
                if config == "lora":
                    text += (f" ({_params(base['parameters']['trainable'])} -> "
                             f"{_params(run['parameters']['trainable'])} trainable)")
                ours.append(text)
        rows.append([title, published, "; ".join(ours) or "not run"])
    lines += ["", "## Published anchors beside ours", "",
              markdown_table(rows, ["comparison", "published",
                                    "ours: full -> method (dev accuracy)"])]
    total = sum(r.get("wall_time_s", 0) + r.get("tapt", {}).get("wall_time_s", 0)
                for r in runs.values())
    lines += ["", f"Wall time of the stored runs (training, scoring, attacks): {total / 60:.1f} "
              "min."]
    if summary.get("failed"):
        lines.append(f"Failed in the last call: {', '.join(summary['failed'])}.")
    if summary.get("other_settings"):
        lines.append("Stored with other settings than the ones above: "
                     f"{', '.join(summary['other_settings'])}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
