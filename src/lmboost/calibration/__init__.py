"""Calibrators for in-context classification (Zhou et al., ICLR 2024, "Batch Calibration",
arXiv 2309.17249, the methods it compares, and LinC, Abbas et al., AISTATS 2024).

Each takes an N x K matrix of label log-probabilities from a causal LM and follows the
scikit-learn estimator contract (``fit`` / ``transform`` / ``predict_proba`` / ``predict``);
:data:`CALIBRATORS` maps registry names to classes and :func:`get_calibrator` builds one.

=====  ===================================  ==============  ========================
name   class                                fit needs       extra forward passes
=====  ===================================  ==============  ========================
none   :class:`NoCalibration`               nothing         0
cc     :class:`ContextualCalibration`       content_free    3 per prompt
dc     :class:`DomainContextCalibration`    domain_context  20 per prompt
pc     :class:`PrototypicalCalibration`     test            0
bc     :class:`BatchCalibration`            test            0
bcl    :class:`BatchCalibrationLearned`     labelled        one per labelled example
linc   :class:`LinearProbeCalibration`      labelled        one per labelled example
=====  ===================================  ==============  ========================

:class:`StreamingBatchCalibration` is BC with a running estimate (``partial_fit``).
"""

from __future__ import annotations

from typing import Any

from lmboost.calibration.base import CalibrationError, Calibrator, normalise
from lmboost.calibration.batch import BatchCalibration, StreamingBatchCalibration
from lmboost.calibration.contextual import ContextualCalibration
from lmboost.calibration.domain import DomainContextCalibration, domain_context_strings
from lmboost.calibration.learned import BatchCalibrationLearned
from lmboost.calibration.linear import LinearProbeCalibration
from lmboost.calibration.none import NoCalibration
from lmboost.calibration.prototypical import PrototypicalCalibration

CALIBRATORS: dict[str, type[Calibrator]] = {
    cls.name: cls
    for cls in (
        NoCalibration,
        ContextualCalibration,
        DomainContextCalibration,
        PrototypicalCalibration,
        BatchCalibration,
        BatchCalibrationLearned,
        LinearProbeCalibration,
    )
}


def get_calibrator(name: str, **params: Any) -> Calibrator:
    """A new calibrator registered as ``name`` (case-insensitive), built with ``params``."""
    cls = CALIBRATORS.get(name.strip().lower())
    if cls is None:
        raise CalibrationError(
            f"Unknown calibrator {name!r}; known calibrators: {', '.join(CALIBRATORS)}."
        )
    try:
        return cls(**params)
    except TypeError as exc:
        accepted = ", ".join(cls().get_params()) or "none"
        raise CalibrationError(
            f"Bad parameters for calibrator {name!r} ({exc}); it accepts: {accepted}."
        ) from exc


__all__ = [
    "CALIBRATORS",
    "BatchCalibration",
    "BatchCalibrationLearned",
    "CalibrationError",
    "Calibrator",
    "ContextualCalibration",
    "DomainContextCalibration",
    "LinearProbeCalibration",
    "NoCalibration",
    "PrototypicalCalibration",
    "StreamingBatchCalibration",
    "domain_context_strings",
    "get_calibrator",
    "normalise",
]
