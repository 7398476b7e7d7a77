"""Generative Calibration (GC; Jiang et al., Findings of EMNLP 2023, "Generative Calibration for
In-context Learning", arXiv 2310.10266)."""

from __future__ import annotations

from lmboost.calibration.contextual import ContextualCalibration


class GenerativeCalibration(ContextualCalibration):
    """GC: divide out the label marginal of the in-context model, estimated by sampling inputs
    from the model itself.

    With prompt C (instruction + demonstrations), the model's label marginal is
    p(y | C) = E_{x ~ p(x | C)}[p(y | x, C)]. GC estimates it by Monte Carlo: sample pseudo-
    inputs x'_1..x'_M from the LM continuing C in the task's input format, score the labels
    after each, and average the label probabilities,

        p^(y | C) = (1/M) sum_m softmax(X_gen[m])                               (``prior_``)

    then predicts q(y | x) proportional to p(y | x, C) / p^(y | C). ``fit(X_gen)`` takes the M x K
    label scores after the sampled pseudo-inputs; the arithmetic is
    :class:`~lmboost.calibration.contextual.ContextualCalibration`'s.
    """

    name = "gc"
    needs = "generated"
    extra_forward_passes = "n_gc sampled pseudo-inputs per prompt (generation), scored once each"
