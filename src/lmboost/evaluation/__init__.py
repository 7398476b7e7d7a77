"""Evaluation: metrics over predictions, probabilities and generated texts."""

from lmboost.evaluation.metrics import (
    EvaluationError,
    accuracy,
    confusion_matrix,
    exact_match,
    expected_calibration_error,
    label_distribution,
    macro_f1,
    reliability_diagram,
)

__all__ = [
    "EvaluationError",
    "accuracy",
    "confusion_matrix",
    "exact_match",
    "expected_calibration_error",
    "label_distribution",
    "macro_f1",
    "reliability_diagram",
]
