"""Calibrators for in-context classification (Zhou et al., ICLR 2024, "Batch Calibration",
arXiv 2309.17249, the methods it compares, LinC, Abbas et al., AISTATS 2024, and four that read
more of the model than the label scores: Hidden Calibration, kNN prompting, PMI_DC and
Generative Calibration).

Each follows the scikit-learn estimator contract (``fit`` / ``transform`` / ``predict_proba`` /
``predict``) on an N x K matrix of label log-probabilities from a causal LM, except the
:class:`FeatureCalibrator` methods (hidden, knn), which classify per-example model features;
:data:`CALIBRATORS` maps registry names to classes and :func:`get_calibrator` builds one.
They are scikit-learn estimators (:class:`sklearn.base.BaseEstimator`): ``get_params``,
``set_params``, ``sklearn.base.clone`` and the ``repr`` work as for any other, and hyper-parameters
are checked when ``fit`` runs.

======  ==================================  ==============  ===================================
name    class                               fit needs       extra forward passes
======  ==================================  ==============  ===================================
none    :class:`NoCalibration`              nothing         0
cc      :class:`ContextualCalibration`      content_free    3 per prompt
dc      :class:`DomainContextCalibration`   domain_context  20 per prompt
pc      :class:`PrototypicalCalibration`    test            0
bc      :class:`BatchCalibration`           test            0
bcl     :class:`BatchCalibrationLearned`    labelled        one per labelled example
linc    :class:`LinearProbeCalibration`     labelled        one per labelled example
hidden  :class:`HiddenCalibration`          hidden_states   one per eval and labelled example
knn     :class:`KNNPrompting`               next_token      one per eval and labelled example
pmi     :class:`DomainPremisePMI`           domain_premise  one per distinct domain premise
gc      :class:`GenerativeCalibration`      generated       n_gc generations + n_gc scorings
======  ==================================  ==============  ===================================

:class:`StreamingBatchCalibration` is BC with a running estimate (``partial_fit``).
:data:`DEFAULT_METHODS` are the methods fitted on label scores alone, which ``lmboost icl``
runs by default.
"""

from __future__ import annotations

from typing import Any

from lmboost.calibration.base import Calibrator, FeatureCalibrator, normalise
from lmboost.calibration.batch import BatchCalibration, StreamingBatchCalibration
from lmboost.calibration.contextual import ContextualCalibration
from lmboost.calibration.domain import DomainContextCalibration, domain_context_strings
from lmboost.calibration.generative import GenerativeCalibration
from lmboost.calibration.hidden import HiddenCalibration
from lmboost.calibration.knn import KNNPrompting
from lmboost.calibration.learned import BatchCalibrationLearned
from lmboost.calibration.linear import LinearProbeCalibration
from lmboost.calibration.none import NoCalibration
from lmboost.calibration.pmi import DomainPremisePMI
from lmboost.calibration.prototypical import PrototypicalCalibration
from lmboost.errors import CalibrationError

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
        HiddenCalibration,
        KNNPrompting,
        DomainPremisePMI,
        GenerativeCalibration,
    )
}

#: The methods fitted on label scores alone (no hidden states, distributions, domain premise or
#: generations): what ``lmboost icl`` runs when no methods are named.
DEFAULT_METHODS: tuple[str, ...] = ("none", "cc", "dc", "pc", "bc", "bcl", "linc")


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
    "DEFAULT_METHODS",
    "BatchCalibration",
    "BatchCalibrationLearned",
    "CalibrationError",
    "Calibrator",
    "ContextualCalibration",
    "DomainContextCalibration",
    "DomainPremisePMI",
    "FeatureCalibrator",
    "GenerativeCalibration",
    "HiddenCalibration",
    "KNNPrompting",
    "LinearProbeCalibration",
    "NoCalibration",
    "PrototypicalCalibration",
    "StreamingBatchCalibration",
    "domain_context_strings",
    "get_calibrator",
    "normalise",
]
