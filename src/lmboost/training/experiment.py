"""The training comparison (``benchmarks/training.py``): full fine-tuning vs LoRA, TAPT and
adversarial training, each configuration scored clean and under attack, as library pieces.

=========  ============================================================================
full       full fine-tuning, the new classification head included; the baseline
lora       LoRA r=8, alpha 16, dropout 0.05 (lmboost.training.lora's target modules)
tapt       TAPT (Gururangan et al. 2020): recipe ``lm`` on the task's unlabelled training
           inputs, then ``full`` from those weights (causal LMs only: the packaged MiniLM
           has no masked-LM head, so its row is n/a)
fgm, pgd,  ``full`` plus the adversarial method, its radius a fraction (0.05 in the
freelb,    benchmark) of the median ||E[x]|| of the training examples (MiniLM about 6): FGM
smart      one step of epsilon, PGD 3 of 0.3 epsilon, FreeLB 3 of 0.1 epsilon; SMART with
           lmboost's defaults. FGM at the methods' absolute default (epsilon 1, 16% of a
           MiniLM SST-2 example's norm) left MiniLM at the majority class; 5% keeps it.
=========  ============================================================================

A configuration is one :func:`lmboost.training.train` run in its own folder
``ROOT/<config>/`` (``ROOT`` is one model and task): the Trainer's output in ``run/``, the
comparison's record in ``result.json`` (:func:`run_result`). TAPT has a second stage, the
language-model run in ``ROOT/tapt/lm/`` (stage ``tapt-lm``). :func:`pending` says which stages
are still to run, :func:`stale` whether a stored result was made with other settings.

Beside the configurations, ``ROOT`` holds two tables computed once from the base model's input
embeddings and reused while their settings match (:func:`stored_or_made`):

- ``scale.json`` (:func:`write_scale`): the median ||E[x]|| of the training examples, so that
  an adversarial radius is a fraction of it (:func:`adversarial_params`: FGM one step of
  epsilon, PGD steps of 0.3 epsilon, FreeLB of 0.1 epsilon; SMART keeps its defaults);
- ``neighbours.json`` (:func:`write_neighbours`): the word-substitution table of
  :func:`lmboost.training.attacks.task_substitution_table`.

:func:`collect` gathers the stored results and :func:`render` writes the Markdown summary, with
the published anchors (:data:`ANCHORS`) beside ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from lmboost.evaluation.records import read_json, to_jsonable, write_json
from lmboost.evaluation.report import markdown_table, points, short_count
from lmboost.training.recipes import TrainConfig

CONFIGS = ("full", "lora", "tapt", "fgm", "pgd", "freelb", "smart")
ADVERSARIAL = ("fgm", "pgd", "freelb", "smart")
ATTACKED = ("full", *ADVERSARIAL)
#: PGD's and FreeLB's step as a fraction of their radius.
ADVERSARIAL_STEP = {"pgd": 0.3, "freelb": 0.1}
#: (comparison, published result, our configuration compared with full fine-tuning).
ANCHORS = (
    ("LoRA vs full fine-tuning",
     "RoBERTa-base, GLUE average: full 86.4 (125M trainable) vs LoRA 87.2 (0.8M); Hu et al. "
     "2021 (LoRA repository table)", "lora"),
    ("FreeLB", "BERT-base, GLUE test score: 78.3 -> 79.4; Zhu et al. 2020", "freelb"),
    ("TAPT", "RoBERTa-base: HyperPartisan F1 86.6 -> 90.4, AG News 93.9 -> 94.5; Gururangan "
     "et al. 2020", "tapt"),
)
RESULT = "result.json"
#: Peak learning rates per model: full fine-tuning, LoRA (higher: only adapters and head move);
#: reasonable picks, not tuned. Other models get ``DEFAULT_LR``.
LEARNING_RATES = {
    "smollm2-135m-instruct": {"full": 5e-5, "lora": 5e-4},
    "minilm-l6-v2": {"full": 1e-4, "lora": 1e-3},
}
DEFAULT_LR = {"full": 5e-5, "lora": 5e-4}


# --------------------------------------------------------------------------- stage folders


def stage_dir(root: Path, stage: str) -> Path:
    """The folder of a configuration, or of TAPT's LM stage (``tapt-lm``)."""
    return root / "tapt" / "lm" if stage == "tapt-lm" else root / stage


def done(root: Path, config: str) -> bool:
    """Whether the configuration's result is stored."""
    return (root / config / RESULT).exists()


def pending(root: Path, config: str, settings: Mapping[str, Any]) -> list[str]:
    """The stages still to run for ``config``: TAPT's LM stage first when the TAPT classifier
    is not yet scored and the LM weights are missing or were trained with other ``settings``
    (recorded by :func:`mark_lm_stage`)."""
    if done(root, config):
        return []
    if config != "tapt":
        return [config]
    lm = stage_dir(root, "tapt-lm")
    ready = ((lm / "results.json").exists() and (lm / "model").is_dir()
             and (lm / RESULT).exists() and not stale(lm.parent, lm.name, settings))
    return ["tapt"] if ready else ["tapt-lm", "tapt"]


def mark_lm_stage(root: Path, settings: Mapping[str, Any]) -> None:
    """Record the comparison ``settings`` TAPT's finished LM stage was trained with."""
    write_json(stage_dir(root, "tapt-lm") / RESULT, {"bench": to_jsonable(dict(settings))})


def stale(root: Path, config: str, settings: Mapping[str, Any]) -> bool:
    """Whether the stored result was made with other comparison ``settings`` than these."""
    return read_json(root / config / RESULT).get("bench") != to_jsonable(dict(settings))


def stored_or_made(path: Path, settings: Mapping[str, Any],
                   make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The record at ``path`` when it was made with ``settings``; else ``make()`` with the
    settings added, written there atomically."""
    settings = to_jsonable(dict(settings))
    if path.exists():
        stored = read_json(path)
        if stored.get("settings") == settings:
            return stored
    record = {**make(), "settings": settings}
    write_json(path, record)
    return record


# --------------------------------------------------------------------------- embedding tables


def write_scale(path: Path, config: TrainConfig) -> dict[str, Any]:
    """``scale.json``: the median ||E[x]|| of the training examples of the classify ``config``
    (its seeded subset, tokens as the recipe cuts them) under the base model's input
    embeddings (:func:`lmboost.training.attacks.median_embedding_norm`)."""
    from lmboost.training.attacks import base_embeddings, median_embedding_norm
    from lmboost.training.data import classification_examples, subset

    def make() -> dict[str, Any]:
        task, train, _ = classification_examples(config)
        train = subset(train, config.max_train_examples, config.seed)
        tokenizer, weight = base_embeddings(config.model)
        norm = median_embedding_norm(tokenizer, weight, [task.render(ex) for ex in train],
                                     config.max_length)
        return {"model": config.model, "task": config.task, "examples": len(train),
                "median_norm": norm}

    settings = {"train_size": config.max_train_examples, "seed": config.seed,
                "max_length": config.max_length}
    return stored_or_made(path, settings, make)


def write_neighbours(path: Path, spec: str, task: str, *, k: int, min_similarity: float,
                     min_lift: float, min_count: int = 5) -> dict[str, Any]:
    """``neighbours.json``: the word-substitution table of model ``spec`` on ``task``
    (:func:`lmboost.training.attacks.task_substitution_table`)."""
    from lmboost.tasks import get_task
    from lmboost.training.attacks import base_embeddings, task_substitution_table

    def make() -> dict[str, Any]:
        tokenizer, weight = base_embeddings(spec)
        table = task_substitution_table(get_task(task), tokenizer, weight, k,
                                        min_similarity=min_similarity, min_lift=min_lift,
                                        min_count=min_count)
        return {"model": spec, "task": task, **table}

    settings = {"k": k, "min_similarity": min_similarity, "min_lift": min_lift,
                "min_count": min_count}
    return stored_or_made(path, settings, make)


def adversarial_params(method: str, radius: float, median_norm: float) -> dict[str, float]:
    """The method's ``epsilon`` (``radius`` x ``median_norm``) and, for PGD and FreeLB, its
    step ``alpha``; none for SMART or a radius of 0 (the method's own defaults)."""
    if not radius or method == "smart":
        return {}
    epsilon = radius * median_norm
    step = ADVERSARIAL_STEP.get(method)
    return {"epsilon": epsilon, **({"alpha": step * epsilon} if step is not None else {})}


def classify_values(config: str, model: str, *, learning_rates: Mapping[str, float | None],
                    radius: float, scale: Path) -> dict[str, Any]:
    """The classify recipe values that make ``config`` of ``model``: its learning rate (from
    ``learning_rates``' ``full`` or ``lora`` entry, else :data:`LEARNING_RATES`), LoRA on or off,
    and for an adversarial method its :func:`adversarial_params` (``radius`` times the median
    norm stored in ``scale`` by :func:`write_scale`; SMART always with its own defaults)."""
    kind = "lora" if config == "lora" else "full"
    values: dict[str, Any] = {
        "learning_rate": learning_rates.get(kind) or LEARNING_RATES.get(model, DEFAULT_LR)[kind],
        "lora": {"enabled": config == "lora"},
    }
    if config in ADVERSARIAL:
        radius = 0.0 if config == "smart" else radius
        norm = read_json(scale)["median_norm"] if radius else 0.0
        values["adversarial"] = {"method": config, **adversarial_params(config, radius, norm)}
    return values


def attack(model: nn.Module, spec: str, task: str, neighbours: Path, *, eval_size: int | None,
           attack_size: int, seed: int, **options: Any) -> dict[str, Any]:
    """:func:`lmboost.training.attacks.evaluate_robustness` of a trained classifier (``spec``:
    its base model, whose tokenizer it uses) on a seeded sample of ``attack_size`` of the
    seeded ``eval_size`` dev subset the runs are scored on, with the substitution table stored
    in ``neighbours`` (:func:`write_neighbours`); ``options``: evaluate_robustness's
    ``epsilon``, ``steps``, ``relative``, ``max_words``, ``max_length``, ``batch_size``."""
    from lmboost.tasks import get_task
    from lmboost.training.attacks import evaluate_robustness
    from lmboost.training.data import subset
    from lmboost.training.models import load_tokenizer, resolve_model

    loaded = get_task(task)
    examples = subset(subset(loaded.load_eval(), eval_size, seed), attack_size, seed)
    stored = read_json(neighbours)
    result = evaluate_robustness(model, load_tokenizer(resolve_model(spec)), loaded, examples,
                                 candidates=stored["table"], **options)
    result["word_substitution"]["candidates"] = stored["settings"]["k"]
    return result


# --------------------------------------------------------------------------- records


def run_result(record: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """A configuration's ``result.json`` from its :func:`~lmboost.training.train` record:
    ``fields`` (model, task, config, ...), then dev metrics, parameters, training facts, peak
    RSS and the run's settings."""
    return {
        **fields, "status": "ok",
        "dev": record["eval"],
        "parameters": record["parameters"],
        "train": {k: record["train"][k] for k in
                  ("global_step", "train_loss", "seconds_per_step", "train_runtime_s")},
        "peak_rss_mb": record["memory"]["peak_mb"],
        "settings": record["config"],
    }


def tapt_facts(lm: Mapping[str, Any]) -> dict[str, Any]:
    """What a TAPT result keeps of its LM stage's record."""
    return {
        "global_step": lm["train"]["global_step"],
        "seconds_per_step": lm["train"]["seconds_per_step"],
        "train_runtime_s": lm["train"]["train_runtime_s"],
        "train_blocks": lm["data"]["train_blocks"],
        "eval_perplexity": lm["eval"]["perplexity"],
        "peak_rss_mb": lm["memory"]["peak_mb"],
        "wall_time_s": lm["wall_time_s"],
    }


def collect(results: Path, models: Sequence[str], tasks: Sequence[str]) -> dict[str, Any]:
    """``"model/task/config"`` -> every stored result under ``results``."""
    runs = {}
    for model in models:
        for task in tasks:
            for config in CONFIGS:
                path = results / model / task / config / RESULT
                if path.exists():
                    runs[f"{model}/{task}/{config}"] = read_json(path)
    return runs


# --------------------------------------------------------------------------- report


def render(summary: Mapping[str, Any]) -> str:
    """The Markdown summary: our runs in two tables, then the published anchors."""
    s = summary["settings"]
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
        _efficiency_table(summary),
        "",
        "TAPT's train time includes its LM stage (its steps, s/step and dev perplexity are in "
        "summary.json). n/a (encoder): the packaged MiniLM has no masked-LM head and recipe lm "
        "trains causal LMs only.",
        "",
        "## Adversarial training: clean accuracy and accuracy under attack",
        "",
        _robustness_table(summary),
    ]
    runs = summary["runs"]
    pairs = [(m, t) for m in summary["models"] for t in summary["tasks"]]
    scale = []
    for model, task in pairs:
        pgd = (runs.get(f"{model}/{task}/full") or {}).get("attacks", {}).get("embedding_pgd")
        if pgd:
            scale.append(f"{model} {task} "
                         f"{100 * pgd['median_radius_over_embedding_norm']:.0f}%")
    if scale:
        lines += ["", "The embedding PGD radius as a share of the example's embedding norm "
                  f"||E[x]|| (median): {', '.join(scale)}."]
    rows = []
    for title, published, config in ANCHORS:
        ours = []
        for model, task in pairs:
            base, run = (runs.get(f"{model}/{task}/{c}") for c in ("full", config))
            if base is None or run is None:
                continue
            text = (f"{model} {task}: {points(base['dev']['accuracy'])} -> "
                    f"{points(run['dev']['accuracy'])}")
            if config == "lora":
                text += (f" ({short_count(base['parameters']['trainable'])} -> "
                         f"{short_count(run['parameters']['trainable'])} trainable)")
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


def _efficiency_table(summary: Mapping[str, Any]) -> str:
    """Full fine-tuning, LoRA and TAPT: accuracy, trainable parameters, speed and memory."""
    rows = []
    for model in summary["models"]:
        for task in summary["tasks"]:
            for config in ("full", "lora", "tapt"):
                run = summary["runs"].get(f"{model}/{task}/{config}")
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
                    points(run["dev"]["accuracy"]), points(run["dev"]["macro_f1"]),
                    f"{short_count(p['trainable'])} ({100 * p['trainable_fraction']:.2f}%)",
                    t["seconds_per_step"], run["peak_rss_mb"], runtime,
                ])
    numbers = ["train ex. / steps", "dev acc", "macro-F1", "trainable params", "s/step",
               "peak RSS (MB)", "train time (s)"]
    return markdown_table(
        rows, ["model", "task", "config", *numbers],
        {"s/step": ".2f", "peak RSS (MB)": ".0f", "train time (s)": ".0f"},
        align=dict.fromkeys(numbers, "right"), missing="",
    )


def _robustness_table(summary: Mapping[str, Any]) -> str:
    """Each attacked configuration: dev accuracy, clean and attacked accuracy, step cost."""
    rows = []
    for model in summary["models"]:
        for task in summary["tasks"]:
            base = summary["runs"].get(f"{model}/{task}/full")
            for config in ATTACKED:
                run = summary["runs"].get(f"{model}/{task}/{config}")
                name = "none (full)" if config == "full" else config
                if run is None:
                    rows.append([model, task, name, "not run"])
                    continue
                a = run.get("attacks") or {}
                step = run["train"]["seconds_per_step"]
                ratio = (f" ({step / base['train']['seconds_per_step']:.1f}x)"
                         if base and base["train"]["seconds_per_step"] else "")
                rows.append([
                    model, task, name, points(run["dev"]["accuracy"]),
                    points(a.get("clean_accuracy")),
                    points(a.get("embedding_pgd", {}).get("accuracy")),
                    points(a.get("word_substitution", {}).get("accuracy")),
                    f"{step:.2f}{ratio}",
                ])
    numbers = ["dev acc", "attacked set: clean", "embedding PGD", "word substitution",
               "s/step (x full)"]
    return markdown_table(rows, ["model", "task", "method", *numbers],
                          align=dict.fromkeys(numbers, "right"), missing="")
