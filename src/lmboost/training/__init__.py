"""Training on the Hugging Face Trainer: classification heads, continued pretraining, SFT,
LoRA and adversarial training, from YAML recipes.

    >>> from lmboost.training import load_recipe, run_training
    >>> config = load_recipe("recipes/classify-sst2-lora.yaml", {"out": "runs/sst2"})
    >>> record = run_training(config)          # also written to runs/sst2/results.json
    >>> record["eval"]["accuracy"], record["parameters"]["trainable"]

=========  ==================================================================================
recipe     what is trained
=========  ==================================================================================
classify   a sequence-classification head on a causal LM or the MiniLM encoder (task or file)
lm         the causal LM on raw text: TAPT (a task's inputs) or DAPT (a corpus file)
sft        the causal LM on prompt/completion pairs, loss on the completion only
=========  ==================================================================================

Modules: :mod:`~lmboost.training.recipes` (config), :mod:`~lmboost.training.data`,
:mod:`~lmboost.training.models`, :mod:`~lmboost.training.lora`,
:mod:`~lmboost.training.adversarial` (FGM, PGD, FreeLB, SMART, one module each),
:mod:`~lmboost.training.trainer` (the run) and :mod:`~lmboost.training.attacks` (robustness
checks of a trained classifier: embedding-space PGD, greedy word substitution),
:mod:`~lmboost.training.callbacks` (``KeepModel``: the trained model back in memory) and
:mod:`~lmboost.training.experiment` (the training comparison of ``benchmarks/training.py``:
stage folders, embedding scale, neighbour tables, summary and report).
Several processes (GPUs, or CPU processes with gloo) go through ``torchrun`` or ``accelerate
launch -m lmboost.cli train ...``: data-parallel, one writer (see :mod:`lmboost.training.trainer`
and docs/training.md).
"""

from __future__ import annotations

import importlib

_API = {
    "ADVERSARIES": "lmboost.training.adversarial",
    "AdversarialMethod": "lmboost.training.adversarial",
    "get_adversary": "lmboost.training.adversarial",
    "AdversarialSettings": "lmboost.training.recipes",
    "LoraSettings": "lmboost.training.recipes",
    "RecipeError": "lmboost.training.recipes",
    "TrainConfig": "lmboost.training.recipes",
    "build_config": "lmboost.training.recipes",
    "load_recipe": "lmboost.training.recipes",
    "parse_overrides": "lmboost.training.recipes",
    "LmboostTrainer": "lmboost.training.trainer",
    "run_training": "lmboost.training.trainer",
    "train": "lmboost.training.trainer",
    "WordSubstitutionAttack": "lmboost.training.attacks",
    "embedding_pgd_attack": "lmboost.training.attacks",
    "evaluate_robustness": "lmboost.training.attacks",
    "KeepModel": "lmboost.training.callbacks",
}

__all__ = list(_API)


def __getattr__(name: str):
    """Import the public names lazily, so reading a recipe does not load transformers."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'lmboost.training' has no attribute {name!r}")
