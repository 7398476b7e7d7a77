"""Training recipes: a YAML file plus command-line overrides, checked into a :class:`TrainConfig`.

A recipe file holds the fields of :class:`TrainConfig` (``lmboost train --help`` and
``recipes/*.yaml`` show them); the ``lora`` and ``adversarial`` sections are mappings::

    recipe: classify                 # classify | lm | sft
    model: smollm2-135m-instruct     # catalog alias, model directory, .gguf file or hub id
    task: sst2                       # a registered task or .yaml task file; or `data: FILE`
    learning_rate: 2.0e-4            # fields named as in transformers.TrainingArguments
    max_steps: 200
    lora: {enabled: true, r: 8, alpha: 16, dropout: 0.05}
    adversarial: {method: fgm, epsilon: 1.0}     # parameters of lmboost.training.adversarial

The run folder is ``out`` (``--out``); ``output_dir``, its old name, still loads with a
FutureWarning. Files, overrides and checks go through :mod:`lmboost.config`, the loader of every
settings file.

Overrides are ``key=value`` strings (``--set``), dots reaching into a section
(``lora.r=16``, ``adversarial.steps=5``); values are read as YAML scalars and then converted to
the field's type (``1e-4`` is a float, ``neg,pos`` a list). Every unknown key or bad value raises
:class:`RecipeError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmboost.config import (
    check_keys,
    coerce,
    from_dict,
    read_yaml,
    rename_keys,
)
from lmboost.config import merge as config_merge
from lmboost.config import parse_overrides as config_overrides
from lmboost.errors import LmboostError, RecipeError
from lmboost.models import DEFAULT_MODEL

RECIPES = ("classify", "lm", "sft")
REPORTERS = ("none", "tensorboard", "mlflow")
PRECISIONS = ("fp32", "bf16", "fp16")
METRICS = {"classify": ("accuracy", "macro_f1", "loss"), "lm": ("loss",), "sft": ("loss",)}


def _help(text: str, default: Any = None, factory: Any = None) -> Any:
    """A dataclass field carrying help text (PEFT style)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class LoraSettings:
    """The ``lora`` section: low-rank adapters trained instead of the full weights."""

    enabled: bool = _help("train LoRA adapters instead of every weight", False)
    r: int = _help("rank of the update B A", 8)
    alpha: float = _help("scaling: the update is multiplied by alpha / r", 16.0)
    dropout: float = _help("dropout on the adapter input", 0.05)
    target_modules: list[str] | None = _help(
        "module names to adapt; default chosen per architecture (lmboost.training.lora)"
    )
    merge: bool = _help("also save the base model with the adapters merged in (OUT/merged)", False)


@dataclass
class AdversarialSettings:
    """The ``adversarial`` section: a method of :mod:`lmboost.training.adversarial`."""

    method: str | None = _help("fgm, pgd, freelb or smart; none: plain training")
    params: dict[str, Any] = _help(
        "the method's parameters (epsilon, alpha, steps, ...)", factory=dict
    )


@dataclass
class TrainConfig:
    """Everything one training run needs; build it with :func:`load_recipe` or
    :func:`build_config`, which check every value."""

    recipe: str = _help("classify (a classification head), lm (TAPT/DAPT) or sft", "classify")
    out: str | None = _help(
        "run folder (--out): checkpoints/, model/ or adapter/, results.json; formerly output_dir"
    )
    model: str = _help("catalog alias, model directory, .gguf file or hub id", DEFAULT_MODEL)
    task: str | None = _help("registered task or .yaml task file (classify, lm: TAPT, sft)")
    data: str | None = _help(
        "data file: classify .csv/.tsv/.jsonl, lm .txt/.jsonl corpus (DAPT), sft .jsonl"
    )
    eval_data: str | None = _help("evaluation file in the format of `data`; default: a hold-out")
    eval_size: float = _help("hold-out from `data` without eval_data: fraction (<1) or count", 0.1)
    max_train_examples: int | None = _help("use a seeded random subset of the training examples")
    max_eval_examples: int | None = _help("use a seeded random subset of the eval examples")
    template: str = _help("classify data file: str.format template over its columns", "{text}")
    label_column: str = _help("classify data file: the label column", "label")
    labels: list[str] | None = _help("classify data file: label values in class order (required)")
    text_field: str = _help("lm .jsonl corpus: the field holding the text", "text")
    prompt_field: str = _help("sft .jsonl: the prompt field", "prompt")
    completion_field: str = _help("sft .jsonl: the completion field", "completion")
    chat_template: bool = _help("sft: wrap prompts in the tokenizer's chat template if any", True)
    max_length: int = _help("classify/sft: tokens per example (longer ones are cut)", 256)
    block_size: int = _help("lm: tokens per packed block", 256)
    class_weights: str | list[float] | None = _help(
        "classify: 'balanced' (n / (K n_k) from the training labels) or one weight per class"
    )
    metric: str | None = _help("dev metric for the best checkpoint: accuracy, macro_f1 or loss")
    early_stopping_patience: int | None = _help("stop after this many evals without improvement")
    load_best_model_at_end: bool = _help("end with the checkpoint that scored best on dev", True)
    lora: LoraSettings = _help("LoRA settings (section)", factory=LoraSettings)
    adversarial: AdversarialSettings = _help(
        "adversarial training (section)", factory=AdversarialSettings
    )
    learning_rate: float = _help("peak learning rate", 5e-5)
    num_train_epochs: float = _help("epochs (ignored when max_steps > 0)", 3.0)
    max_steps: int = _help("optimizer steps; -1: run num_train_epochs", -1)
    per_device_train_batch_size: int = _help("training batch size per device", 8)
    per_device_eval_batch_size: int = _help("evaluation batch size per device", 16)
    gradient_accumulation_steps: int = _help("micro-batches per optimizer step", 1)
    warmup_steps: float = _help("warm-up steps, or a fraction (<1) of all steps", 0.0)
    weight_decay: float = _help("AdamW weight decay", 0.0)
    lr_scheduler_type: str = _help("transformers scheduler name", "linear")
    max_grad_norm: float = _help("gradient clipping norm (0: none)", 1.0)
    eval_steps: int = _help("evaluate on dev every N steps", 100)
    save_steps: int | None = _help("checkpoint every N steps (default: eval_steps)")
    save_total_limit: int | None = _help("checkpoints kept (the best is always kept)", 2)
    logging_steps: int = _help("log the training loss every N steps", 10)
    gradient_checkpointing: bool = _help("recompute activations to save memory", False)
    precision: str = _help("fp32, bf16 or fp16 (mixed precision)", "fp32")
    device: str = _help("auto (CUDA when available) or cpu", "auto")
    trust_remote_code: bool = _help("run the model's own code (auto_map) if it has some", False)
    seed: int = _help("seed of initialisation, data order and dropout", 0)
    report_to: str = _help("none, tensorboard or mlflow (a local file store in OUT)", "none")
    resume: bool = _help("continue from the last checkpoint in out", False)
    progress: bool = _help("show progress bars", True)

    def validate(self) -> None:
        """Raise RecipeError, naming the key, for a missing, out-of-range or conflicting value."""
        if self.recipe not in RECIPES:
            raise RecipeError(f"recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}.")
        if not self.out:
            raise RecipeError("out is not set: give --out DIR (out: in a recipe).")
        if (self.task is None) == (self.data is None):
            raise RecipeError(
                f"recipe {self.recipe}: give exactly one of task (a registered task or .yaml task "
                "file) and data (a data file)."
            )
        if self.eval_data is not None and self.data is None:
            raise RecipeError("eval_data needs data: a task brings its own eval split.")
        if self.recipe == "classify" and self.data is not None and not self.labels:
            raise RecipeError(
                "labels is required with a classify data file: list the label values in class "
                "order, e.g. labels: [neg, pos] (or --set labels=neg,pos)."
            )
        if self.class_weights is not None and self.recipe != "classify":
            raise RecipeError("class_weights applies to recipe classify only.")
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            raise RecipeError(
                f"class_weights must be 'balanced' or a list of numbers, not "
                f"{self.class_weights!r}."
            )
        lists = {"labels": self.labels, "class_weights": self.class_weights,
                 "lora.target_modules": self.lora.target_modules}
        empty = [name for name, value in lists.items() if value == []]
        if empty:
            raise RecipeError(f"{empty[0]} is an empty list: give its items, or leave it unset.")
        if isinstance(self.class_weights, list) and any(
            not math.isfinite(w) or w <= 0 for w in self.class_weights
        ):
            raise RecipeError(f"class_weights must be positive numbers, not {self.class_weights}.")
        allowed = METRICS[self.recipe]
        if self.metric is not None and self.metric not in allowed:
            raise RecipeError(
                f"metric {self.metric!r} does not suit recipe {self.recipe}; use one of "
                f"{', '.join(allowed)}."
            )
        choices = {"report_to": REPORTERS, "precision": PRECISIONS, "device": ("auto", "cpu")}
        for name, allowed_values in choices.items():
            if getattr(self, name) not in allowed_values:
                raise RecipeError(
                    f"{name} must be one of {', '.join(allowed_values)}, not "
                    f"{getattr(self, name)!r}."
                )
        self._check_ranges()
        if self.early_stopping_patience is not None and not self.load_best_model_at_end:
            raise RecipeError("early_stopping_patience needs load_best_model_at_end: true.")
        if self.load_best_model_at_end and self.save_steps is not None and (
            self.save_steps % self.eval_steps
        ):
            raise RecipeError(
                f"save_steps ({self.save_steps}) must be a multiple of eval_steps "
                f"({self.eval_steps}) when load_best_model_at_end is true."
            )
        if self.adversarial.method is not None:
            from lmboost.training.adversarial import get_adversary

            try:
                get_adversary(self.adversarial.method, **self.adversarial.params)
            except LmboostError as err:
                raise RecipeError(str(err)) from None
        elif self.adversarial.params:
            raise RecipeError(
                f"adversarial parameters {sorted(self.adversarial.params)} are given but no "
                "adversarial.method (fgm, pgd, freelb, smart)."
            )

    def _check_ranges(self) -> None:
        positive = [
            "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size",
            "gradient_accumulation_steps", "eval_steps", "logging_steps", "max_length",
            "block_size", "eval_size", "lora.r", "lora.alpha",
        ]
        non_negative = ["num_train_epochs", "warmup_steps", "weight_decay", "max_grad_norm",
                        "seed", "lora.dropout"]
        optional_positive = ["save_steps", "save_total_limit", "max_train_examples",
                             "max_eval_examples", "early_stopping_patience"]
        for key in positive + non_negative + optional_positive:
            value = _get(self, key)
            if value is None and key in optional_positive:
                continue
            low_ok = value > 0 if key not in non_negative else value >= 0
            if not math.isfinite(value) or not low_ok:
                bound = ">= 0" if key in non_negative else "> 0"
                raise RecipeError(f"{key} must be {bound}, not {value!r}.")
        if self.max_steps == 0 or self.max_steps < -1:
            raise RecipeError(f"max_steps must be -1 (use epochs) or > 0, not {self.max_steps}.")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise RecipeError("num_train_epochs must be > 0 when max_steps is -1.")
        if self.lora.dropout >= 1:
            raise RecipeError(f"lora.dropout must be in [0, 1), not {self.lora.dropout}.")
        if self.eval_size >= 1 and self.eval_size != int(self.eval_size):
            raise RecipeError(
                f"eval_size must be a fraction below 1 or a whole count, not {self.eval_size}."
            )

    @property
    def output_dir(self) -> str | None:
        """Deprecated name of :attr:`out` (the run folder)."""
        warnings.warn("TrainConfig.output_dir is deprecated; use TrainConfig.out.",
                      DeprecationWarning, stacklevel=2)
        return self.out

    def dev_metric(self) -> str:
        """The metric that picks the best checkpoint: ``metric``, else accuracy (classify) or
        loss (lm, sft)."""
        return self.metric or ("accuracy" if self.recipe == "classify" else "loss")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-ready values (sections as nested mappings)."""
        return dataclasses.asdict(self)


def _get(config: TrainConfig, key: str) -> Any:
    obj: Any = config
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------- building

#: Recipe keys renamed (old -> new); the old spelling still loads, with a FutureWarning.
RENAMED = {"output_dir": "out"}
SECTIONS = ("lora", "adversarial")


def load_recipe(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """The checked config of the YAML recipe at ``path`` (None: defaults only) with
    ``overrides`` (nested mappings, e.g. from :func:`parse_overrides`) merged over it."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_recipe(path)
    source = str(path) if path else "recipe"
    data = config_merge(_normalise(data, source), _normalise(overrides or {}, "overrides"))
    return build_config(data, source=source)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML recipe file; RecipeError when it is missing, not UTF-8, not
    valid YAML or not a mapping."""
    return read_yaml(path, what="Recipe file", error=RecipeError)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["lora.r=16", "learning_rate=1e-4"]`` -> ``{"lora": {"r": 16}, "learning_rate": "1e-4"}``
    (:func:`lmboost.config.parse_overrides`); the field's type decides the rest when the config
    is built."""
    return config_overrides(items, flag="--set", error=RecipeError)


def merge(*layers: Mapping[str, Any], source: str = "recipe") -> dict[str, Any]:
    """The recipe layers (file, ``--set`` overrides, flags), each later one laid over the
    earlier (:func:`lmboost.config.merge`), after spelling each layer's renamed keys and section
    shorthands (``lora: true``, ``adversarial: fgm``) out in full."""
    return config_merge(*(_normalise(layer, source) for layer in layers))


def _normalise(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    out = rename_keys(data, RENAMED, source=source, error=RecipeError)
    for name in SECTIONS:
        if name in out:
            out[name] = _section(name, out[name], source)
    return out


def build_config(data: Mapping[str, Any], *, source: str = "recipe") -> TrainConfig:
    """A :class:`TrainConfig` from a raw mapping: unknown keys and bad values raise RecipeError
    naming the key (and ``source``), then :meth:`TrainConfig.validate` runs."""
    values = _normalise(data, source)
    adversarial = dict(values.pop("adversarial", {}))
    method = adversarial.pop("method", None)
    values["adversarial"] = {"method": method}
    config = from_dict(TrainConfig, values, source=source, error=RecipeError)
    if config.adversarial.method is not None:
        config.adversarial.method = config.adversarial.method.strip().lower() or None
    config.adversarial.params = _adversarial_params(config.adversarial.method, adversarial, source)
    config.validate()
    return config


def _section(name: str, value: Any, source: str) -> Mapping[str, Any]:
    """A section as a mapping; ``lora: true`` and ``adversarial: fgm`` are shorthands."""
    if value is None:
        return {}
    if name == "lora" and isinstance(value, bool):
        return {"enabled": value}
    if name == "adversarial" and isinstance(value, str):
        return {"method": value}
    if not isinstance(value, Mapping):
        raise RecipeError(f"{source}: {name} must be a mapping of settings, not {value!r}.")
    return value


def _adversarial_params(method: str | None, params: Mapping[str, Any], source: str) -> dict:
    """The method's parameters converted to the types its constructor declares."""
    if method is None:
        return dict(params)  # validate() says that parameters need a method
    from lmboost.training.adversarial import ADVERSARIES

    cls = ADVERSARIES.get(method)
    if cls is None:
        return dict(params)  # validate() names the unknown method
    defaults = cls().get_params()
    check_keys(params, list(defaults), source=source, prefix="adversarial.", error=RecipeError,
               help=f"(the parameters of method {method})")
    hints = typing.get_type_hints(cls.__init__)
    return {
        key: coerce(value, hints.get(key, type(defaults[key])), key=f"adversarial.{key}",
                    source=source, error=RecipeError)
        for key, value in params.items()
    }
