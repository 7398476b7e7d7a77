"""Domain-context Calibration (DC; Fei et al. 2023, "Mitigating Label Biases for In-context
Learning", arXiv 2305.19148)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from lmboost.calibration.contextual import ContextualCalibration
from lmboost.errors import CalibrationError


class DomainContextCalibration(ContextualCalibration):
    """DC: contextual calibration with the prior estimated on random in-domain text.

    Same arithmetic as :class:`ContextualCalibration` (q = diag(p_dc)^-1 p, renormalised), but
    ``fit`` takes the scores of ~20 strings of random in-domain words (see
    :func:`domain_context_strings`) put in the same prompt, so that ``prior_`` = p_dc also
    captures the label bias the task's vocabulary induces (domain-label bias).
    """

    name = "dc"
    needs = "domain_context"
    extra_forward_passes = "20 per prompt"


def domain_context_strings(
    texts: Sequence[str], n: int = 20, seed: int = 0, length: int | None = None
) -> list[str]:
    """``n`` strings of words drawn uniformly at random from the bag of words of ``texts``.

    The bag is every whitespace-separated word of every text, repeats kept (a frequent word is
    drawn more often). Each string has ``length`` words; by default the average word count of
    ``texts`` rounded half up (at least 1). Deterministic for a given ``seed``
    (``random.Random(seed)``).
    """
    if isinstance(texts, str):
        raise CalibrationError("texts must be a sequence of strings, not a single str.")
    counts = [len(t.split()) for t in texts]
    bag = [w for t in texts for w in t.split()]
    if not bag:
        raise CalibrationError(
            "domain_context_strings needs unlabelled in-domain texts with at least one word."
        )
    if n < 1:
        raise CalibrationError(f"n must be at least 1, not {n}.")
    if length is None:
        length = max(1, int(sum(counts) / len(counts) + 0.5))
    elif length < 1:
        raise CalibrationError(f"length must be at least 1 word, not {length}.")
    rng = random.Random(seed)
    return [" ".join(rng.choices(bag, k=length)) for _ in range(n)]
