"""Trainer callbacks for runs driven from Python.

``KeepModel`` hands the trained model back to the caller of :func:`lmboost.training.train`
and skips the Trainer's own evaluations and checkpoints, for a run that is scored (or attacked)
in memory right after training and never resumed::

    keeper = KeepModel()
    record = train(config, callbacks=[keeper])
    evaluate_robustness(keeper.model, ...)
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import TrainerCallback


class KeepModel(TrainerCallback):
    """Keeps the trained model in ``model`` at the end of training, and stops the Trainer from
    evaluating or saving a checkpoint after any step (``train`` still scores and saves the
    final model)."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Cancel the step's evaluation and checkpoint."""
        control.should_save = False
        control.should_evaluate = False
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                     **kwargs: Any) -> None:
        """Keep the trained model."""
        self.model = model
