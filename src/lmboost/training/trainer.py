"""``run_training(config)``: one training run on the Hugging Face Trainer, evaluated and
recorded.

Steps: resolve the model, tokenize the recipe's data (:mod:`lmboost.training.data`), load the
model with the recipe's head (:mod:`lmboost.training.models`), wrap it with LoRA adapters if
asked (:mod:`lmboost.training.lora`), and run :class:`LmboostTrainer`, a
``transformers.Trainer`` that adds class-weighted classification loss and an adversarial step
(:mod:`lmboost.training.adversarial`). The Trainer evaluates on dev every ``eval_steps``,
checkpoints every ``save_steps`` to ``OUT/checkpoints`` (resumable with ``resume``), stops early
after ``early_stopping_patience`` evaluations without improvement and ends on the best
checkpoint (``load_best_model_at_end``, ``metric_for_best_model``). Afterwards the model is
evaluated with lmboost's metrics (accuracy and macro-F1, or loss and perplexity), saved
(``OUT/model``, or ``OUT/adapter`` and optionally ``OUT/merged`` for LoRA) and the run record
``OUT/results.json`` is written atomically, with the trainable parameter count, seconds per
optimizer step (evaluation and checkpointing excluded) and peak memory (CUDA: the allocator's
peak; CPU: the process's peak resident set size from ``getrusage``, loading included).

Scaling out: under ``torchrun --nproc_per_node N -m lmboost.cli train ...`` or ``accelerate
launch [--config_file recipes/accelerate/ddp.yaml] -m lmboost.cli train ...`` every process runs
``run_training``; the Trainer wraps the model in DistributedDataParallel, gives each process its
own share of every global batch (``per_device_train_batch_size`` x processes x
``gradient_accumulation_steps``) and averages the gradients, and only the main process writes
the saved model and the record (which shows ``world_size`` and the global batch). On a machine
without GPUs the processes use the CPU and the gloo backend (:func:`use_cpu`). Tested with two
CPU processes (tests/test_training_distributed.py): full fine-tuning, LoRA and FreeLB follow the
loss trajectory of one process at the same global batch, and a killed run resumes (PGD and SMART
matched too in a one-off check). GPUs (NCCL), FSDP and DeepSpeed (recipes/accelerate/) are
untested here.
TensorBoard logs go to ``OUT/checkpoints/runs/``; MLflow logs to the file store
``OUT/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import get_last_checkpoint

from lmboost import __version__
from lmboost.errors import DependencyError, RunRecordError
from lmboost.evaluation import accuracy, macro_f1
from lmboost.evaluation.records import RunTimer, read_json, to_jsonable, write_json
from lmboost.evaluation.store import changed_settings, check_out
from lmboost.training.adversarial import AdversarialMethod, PerturbedBatch, get_adversary
from lmboost.training.data import PadCollator, TrainData, build_data
from lmboost.training.lora import apply_lora, count_parameters, merge_and_save, save_adapter
from lmboost.training.models import (
    class_weights,
    classification_loss,
    load_for_training,
    load_tokenizer,
    loss_from_logits,
    resolve_model,
)
from lmboost.training.recipes import RecipeError, TrainConfig

REPORTER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",)}


class LmboostTrainer(Trainer):
    """A ``transformers.Trainer`` with two additions.

    ``class_weights`` (K weights): classification loss sum_i w[y_i] CE_i / sum_i w[y_i] instead
    of the model's plain cross-entropy, in training and evaluation.
    ``adversary``: an :class:`~lmboost.training.adversarial.AdversarialMethod` that replaces the
    forward/backward of every training batch (evaluation is unchanged).
    """

    def __init__(
        self,
        *args: Any,
        adversary: AdversarialMethod | None = None,
        class_weights: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.adversary = adversary
        self.class_weights = class_weights
        if class_weights is not None or is_sequence_classifier(self.model):
            # The loss is a mean over the micro-batch that ignores ``num_items_in_batch``; left
            # True, the Trainer would multiply it by the number of processes and not divide it
            # by the accumulation steps (gradients and logged losses N times too large).
            self.model_accepts_loss_kwargs = False
        if adversary is not None:
            self.add_callback(AdversaryHooks(adversary))

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The Trainer's loss, or the class-weighted cross-entropy when weights are set."""
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = classification_loss(outputs.logits, labels, self.class_weights)
        return (loss, outputs) if return_outputs else loss

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """The Trainer's step, or the adversary's forward/backward passes when one is set."""
        if self.adversary is None:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        if callable(getattr(self.optimizer, "train", None)):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        scale = self.current_gradient_accumulation_steps
        batch = PerturbedBatch(
            model=model,
            inputs=inputs,
            loss_fn=partial(loss_from_logits, weights=self.class_weights),
            embeddings=self.accelerator.unwrap_model(model).get_input_embeddings(),
            autocast=self.compute_loss_context_manager,
        )
        result = self.adversary.step(batch, lambda loss: self.accelerator.backward(loss / scale))
        return result.loss / scale


def is_sequence_classifier(model: nn.Module) -> bool:
    """Whether ``model`` (or the base model of a PEFT model) is a transformers
    ``...ForSequenceClassification``, whose loss is a plain mean over its batch."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(base).__name__ in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values()


class AdversaryHooks(TrainerCallback):
    """Tells an adversarial method when training starts and after each optimizer step."""

    def __init__(self, adversary: AdversarialMethod) -> None:
        self.adversary = adversary

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Let the method copy or inspect the model before the first step."""
        self.adversary.prepare(kwargs["model"])

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Let the method follow the updated weights (SMART's EMA copy)."""
        self.adversary.on_optimizer_step(kwargs["model"])


class StepTimer(TrainerCallback):
    """Wall-clock seconds of each optimizer step (forward, backward, update), evaluation and
    checkpointing excluded."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start the clock."""
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Stop the clock (after the GPU has finished)."""
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._start)


def classification_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of the argmax of N x K ``logits`` (lmboost's metrics)."""
    predictions = np.asarray(logits).argmax(-1)
    n_classes = int(np.asarray(logits).shape[-1])
    return {
        "accuracy": accuracy(labels, predictions),
        "macro_f1": macro_f1(labels, predictions, n_classes=n_classes),
    }


def _trainer_metrics(eval_pred: Any) -> dict[str, float]:
    logits = eval_pred.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    return classification_scores(logits, eval_pred.label_ids)


class LmboostTrainingArguments(TrainingArguments):
    """``TrainingArguments`` whose CPU device is plain ``cpu``: in a multi-process CPU run
    accelerate names it ``cpu:0``, and ``torch.load`` cannot map a checkpoint there (resuming
    would fail)."""

    @property
    def device(self) -> torch.device:
        """The device of this process."""
        device = super().device
        return torch.device("cpu") if device.type == "cpu" else device


def training_arguments(config: TrainConfig, output_dir: str | Path) -> TrainingArguments:
    """The ``transformers.TrainingArguments`` of ``config``, checkpointing to ``output_dir``."""
    metric = config.dev_metric()
    try:
        return LmboostTrainingArguments(
            output_dir=str(output_dir),
            learning_rate=config.learning_rate,
            num_train_epochs=config.num_train_epochs,
            max_steps=config.max_steps,
            per_device_train_batch_size=config.per_device_train_batch_size,
            per_device_eval_batch_size=config.per_device_eval_batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            warmup_steps=config.warmup_steps,
            weight_decay=config.weight_decay,
            lr_scheduler_type=config.lr_scheduler_type,
            max_grad_norm=config.max_grad_norm,
            eval_strategy="steps",
            eval_steps=config.eval_steps,
            save_strategy="steps",
            save_steps=config.save_steps or config.eval_steps,
            save_total_limit=config.save_total_limit,
            logging_steps=config.logging_steps,
            load_best_model_at_end=config.load_best_model_at_end,
            metric_for_best_model=metric,
            greater_is_better=metric != "loss",
            seed=config.seed,
            report_to=config.report_to,
            bf16=config.precision == "bf16",
            fp16=config.precision == "fp16",
            use_cpu=use_cpu(config.device),
            disable_tqdm=not config.progress,
            remove_unused_columns=False,
            label_names=["labels"],
            prediction_loss_only=config.recipe != "classify",
            dataloader_pin_memory=torch.cuda.is_available(),
            **({"gradient_checkpointing": True} if config.gradient_checkpointing else {}),
        )
    except ValueError as err:
        raise RecipeError(f"transformers rejects the training settings: {err}") from None


LAUNCHER_WORLD_SIZE = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """How many processes the launcher started (torchrun, accelerate launch, mpirun); 1 when
    the run was started directly."""
    for name in LAUNCHER_WORLD_SIZE:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 1


def has_parallel_accelerator() -> bool:
    """Whether this machine has an accelerator with a collective backend (CUDA/ROCm, XPU, NPU,
    ...): MPS and the CPU do not count."""
    if torch.cuda.is_available():
        return True
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is None or not accelerator.is_available():
        return False
    current = accelerator.current_accelerator()
    return current is not None and current.type not in ("cpu", "mps")


def use_cpu(device: str) -> bool:
    """``TrainingArguments.use_cpu`` for the recipe's ``device``: when asked for, and when a
    launcher started several processes on a machine without a parallel accelerator.

    The second case matters: accelerate only makes CPU processes data-parallel (gloo) when told
    to use the CPU; otherwise each process trains alone on all the data.
    """
    if device == "cpu":
        return True
    return launched_processes() > 1 and not has_parallel_accelerator()


def is_main_process() -> bool:
    """False on every process of a distributed run but the first (rank 0)."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _warn_single_cpu_launch() -> None:
    """``accelerate launch --cpu --num_processes N`` starts one process unless given an MPI
    hostfile; say so instead of training at 1/N of the intended global batch silently."""
    asked_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if asked_cpu and "MASTER_PORT" in os.environ and launched_processes() == 1:
        warnings.warn(
            "accelerate launch --cpu started a single process (several CPU processes need "
            "--mpirun_hostfile); for N CPU processes run `torchrun --nproc_per_node N -m "
            "lmboost.cli train ...` or `accelerate launch --config_file "
            "recipes/accelerate/ddp.yaml --num_processes N ...` (on a machine without GPUs it "
            "uses the CPU). The run record shows world_size 1.",
            stacklevel=3,
        )


def run_training(
    config: TrainConfig, *, callbacks: Sequence[TrainerCallback] = ()
) -> dict[str, Any]:
    """Run the training ``config`` describes; returns the run record, exactly as written to
    ``OUT/results.json``. ``callbacks`` are extra ``transformers.TrainerCallback`` objects.

    Under a launcher (``torchrun``, ``accelerate launch``) every process calls this; they train
    data-parallel and only the main process writes the saved model and the record (every
    process gets the record back)."""
    config.validate()
    run_timer = RunTimer()
    _warn_single_cpu_launch()
    out = Path(config.out)
    check_out(out)  # a file, or a folder it cannot write in: said before the model loads
    checkpoints = out / "checkpoints"
    resume_from = _checkpoint_to_resume(checkpoints, config.resume)
    _record_or_check_settings(out, config, resume_from)
    _check_reporter(config.report_to, out)

    set_seed(config.seed)
    source = resolve_model(config.model, config.trust_remote_code)
    tokenizer = load_tokenizer(source)
    data = build_data(config, tokenizer)
    model = load_for_training(source, config.recipe, tokenizer, data.labels)
    if config.lora.enabled:
        model = apply_lora(model, config.lora, source.model_type, config.recipe)
    trainable, total = count_parameters(model)
    adversary = (
        get_adversary(config.adversarial.method, **config.adversarial.params)
        if config.adversarial.method
        else None
    )
    weights = (
        class_weights(data.train_labels, len(data.labels), config.class_weights)
        if config.class_weights is not None
        else None
    )
    timer = StepTimer()
    extra: list[TrainerCallback] = [timer, *callbacks]
    if config.early_stopping_patience is not None:
        extra.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = LmboostTrainer(
        model=model,
        args=training_arguments(config, checkpoints),
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=PadCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        compute_metrics=_trainer_metrics if config.recipe == "classify" else None,
        callbacks=extra,
        adversary=adversary,
        class_weights=weights,
    )
    sharded = bool(trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled)
    if sharded and config.lora.merge:
        raise RecipeError(
            "lora.merge needs the whole model in one process, but FSDP/DeepSpeed shard it: train "
            "without merge, then merge OUT/adapter (lmboost.training.lora.merge_and_save)."
        )
    if adversary is not None and trainer.is_deepspeed_enabled:
        raise RecipeError(
            "adversarial training takes several backward passes per optimizer step, and "
            "DeepSpeed's engine steps the optimizer on every one: train it with DDP or FSDP "
            "(recipes/accelerate/ddp.yaml, fsdp.yaml)."
        )
    if adversary is not None and trainer.args.n_gpu > 1:
        raise RecipeError(
            f"adversarial training on {trainer.args.n_gpu} GPUs needs one process per GPU (the "
            "perturbation hook does not split across nn.DataParallel's copies): launch with "
            f"torchrun --nproc_per_node {trainer.args.n_gpu} -m lmboost.cli train ... or "
            "accelerate launch."
        )
    device = trainer.args.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # the step it resumes at: read now, as the Trainer may rotate that checkpoint away
    start_step = read_json(Path(resume_from) / TRAINER_STATE_NAME)["global_step"] if (
        resume_from) else 0
    output = trainer.train(resume_from_checkpoint=resume_from)
    memory = _peak_memory(device)
    if trainer.args.world_size > 1:
        from accelerate.utils import gather_object

        memory["peak_mb_per_process"] = gather_object([memory["peak_mb"]])
    evaluation = _evaluate(trainer, data, config.recipe)
    saved = _save(trainer, tokenizer, config, out, sharded=sharded)

    record = to_jsonable({
        "kind": "training",
        "lmboost_version": __version__,
        "config": config.to_dict(),
        "model": {
            "spec": source.spec, "path": source.path, "model_type": source.model_type,
            "is_encoder": source.is_encoder,
        },
        "data": data.sources,
        "parameters": {
            "trainable": trainable, "total": total, "trainable_fraction": trainable / total,
        },
        "class_weights": weights.tolist() if weights is not None else None,
        "train": {
            "global_step": output.global_step,
            "epoch": trainer.state.epoch,
            "train_loss": _train_loss(output, start_step),
            "steps_timed": len(timer.seconds),
            "seconds_per_step": sum(timer.seconds) / len(timer.seconds) if timer.seconds else None,
            "train_runtime_s": output.metrics.get("train_runtime"),
            "resumed_from": resume_from,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_metric": trainer.state.best_metric,
            "dev_metric": config.dev_metric(),
            "log": _loss_log(trainer.state.log_history),
        },
        "distributed": _distributed(trainer),
        "eval": evaluation,
        "memory": memory,
        "device": str(device),
        "saved": saved,
        **run_timer.fields(),
    })
    if trainer.is_world_process_zero():
        write_json(out / "results.json", record)
    trainer.accelerator.wait_for_everyone()
    return record


# The earlier name of run_training, kept so that code written against it still runs.
train = run_training


def _distributed(trainer: Trainer) -> dict[str, Any]:
    """How the run was spread: processes, their kind and backend, and the global batch."""
    args = trainer.args
    state = trainer.accelerator.state
    return {
        "world_size": args.world_size,
        "distributed_type": str(state.distributed_type.value),
        "backend": getattr(state, "backend", None),
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "train_batch_size_per_process": args.train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "global_train_batch_size": (
            args.train_batch_size * args.world_size * args.gradient_accumulation_steps
        ),
    }


def _loss_log(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The logged training losses (every ``logging_steps``), averaged over the processes."""
    keys = ("step", "epoch", "loss", "grad_norm", "learning_rate")
    return [{k: entry[k] for k in keys if k in entry} for entry in history if "loss" in entry]


def _record_or_check_settings(out: Path, config: TrainConfig, resume_from: str | None) -> None:
    """Write ``OUT/settings.json`` (the config and the process count) when a run starts; on a
    resume, refuse settings that differ from it: the checkpoint's data order and global batch
    belong to those."""
    path = out / "settings.json"
    settings = to_jsonable({
        **{k: v for k, v in config.to_dict().items() if k not in ("out", "resume", "progress")},
        "processes": launched_processes(),
    })
    if resume_from is not None and path.exists():
        stored = read_json(path)
        changed = changed_settings(stored, settings, sorted(stored.keys() | settings.keys()))
        if changed:
            raise RunRecordError(
                f"--resume in {out} with other settings than the run it continues "
                f"({'; '.join(changed)}): "
                "resume with the same ones (and as many processes), or train into another "
                "output folder."
            )
    elif os.environ.get("RANK", "0") == "0":  # before the process group exists
        write_json(path, settings)


def _train_loss(output: Any, start_step: int) -> float | None:
    """Mean training loss over the steps this invocation ran, from ``start_step`` (None if it
    ran none): after a resume the Trainer sums the losses of the resumed steps only but divides
    by every step."""
    if not start_step:
        return output.training_loss
    ran = output.global_step - start_step
    return output.training_loss * output.global_step / ran if ran > 0 else None


def _checkpoint_to_resume(checkpoints: Path, resume: bool) -> str | None:
    """The last complete checkpoint when resuming (None: start fresh); refuses to mix runs
    otherwise. A checkpoint is complete once the Trainer has written its ``trainer_state.json``
    (its last file): a newer one a kill left half-written is skipped, with a warning."""
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is not None and not resume:
        raise RunRecordError(
            f"{checkpoints} already holds checkpoints of a run: pass --resume (resume: true) to "
            "continue it, or choose another output folder."
        )
    if last is None:
        return None
    steps = {int(p.name.rsplit("-", 1)[1]): p for p in checkpoints.glob("checkpoint-*")
             if p.name.rsplit("-", 1)[1].isdigit()}
    newest = max((n for n, p in steps.items() if (p / TRAINER_STATE_NAME).is_file()), default=-1)
    skipped = [steps[n].name for n in sorted(steps) if n > newest]
    if skipped:
        start = f"resuming from {steps[newest].name}" if newest >= 0 else "starting over"
        warnings.warn(f"{start}: {', '.join(skipped)} in {checkpoints} was not finished (no "
                      "trainer_state.json), probably cut by the kill.", stacklevel=3)
    return str(steps[newest]) if newest >= 0 else None


def _check_reporter(report_to: str, out: Path) -> None:
    """Fail early when the chosen logger's package is missing; point MLflow at OUT/mlruns."""
    packages = REPORTER_PACKAGES.get(report_to, ())
    if packages and not any(importlib.util.find_spec(p) for p in packages):
        raise DependencyError(
            f"report_to {report_to} needs its package: pip install {packages[0]}."
        )
    if report_to == "mlflow":
        os.environ.setdefault("MLFLOW_TRACKING_URI", (out / "mlruns").resolve().as_uri())


def _evaluate(trainer: Trainer, data: TrainData, recipe: str) -> dict[str, Any]:
    """Dev metrics of the final model: accuracy, macro-F1 and loss, or loss and perplexity."""
    if recipe == "classify":
        prediction = trainer.predict(data.eval)
        logits = prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        scores = classification_scores(logits, np.asarray(data.eval_labels))
        return {**scores, "loss": prediction.metrics.get("test_loss"), "n": len(data.eval)}
    loss = trainer.evaluate()["eval_loss"]
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "n": len(data.eval)}


def _save(
    trainer: Trainer, tokenizer: Any, config: TrainConfig, out: Path, *, sharded: bool = False
) -> dict[str, str]:
    """Save the final model (full weights, or adapters and optionally the merged model); every
    process calls this, the main process writes."""
    if not config.lora.enabled:
        trainer.save_model(str(out / "model"))  # gathers sharded weights; the main one writes
        return {"model": str(out / "model")}
    saved = {"adapter": str(out / "adapter")}
    if config.lora.merge:
        saved["merged"] = str(out / "merged")
    if sharded:  # (merge is refused before training)
        trainer.save_model(saved["adapter"])  # PEFT format, gathered from the shards
        return saved
    if trainer.is_world_process_zero():
        save_adapter(trainer.model, tokenizer, out / "adapter")
        if config.lora.merge:
            merge_and_save(trainer.model, tokenizer, out / "merged")
    trainer.accelerator.wait_for_everyone()
    return saved


def _peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory in MiB: CUDA allocator peak on GPU, process peak RSS on CPU."""
    if device.type == "cuda":
        return {
            "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20,
            "source": "torch.cuda.max_memory_allocated",
        }
    rss = peak_rss_mb()
    if rss is None:
        return {"peak_mb": None, "source": "unavailable"}
    return {"peak_mb": rss, "source": "getrusage ru_maxrss (process peak RSS)"}


def peak_rss_mb() -> float | None:
    """This process's peak resident set size so far, in MiB (getrusage); None off POSIX."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return rss * scale / 2**20
