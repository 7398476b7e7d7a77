"""Self-consistency (Wang et al., 2023): sample several reasoning chains, vote on their answers.

The vote is a plain majority over the extracted answers a_1..a_n (chains whose answer could not
be extracted abstain): â = argmax_a sum_i 1[a_i = a]. Ties go to the answer that appeared first.

Early stopping (in the spirit of Aggarwal et al., 2023, "adaptive consistency", with the exact
rather than a probabilistic rule): after m of n samples the leader is final once no other
answer, not even one not seen yet, can overtake it with the n - m samples still to come.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lmboost.errors import ConfigError, GenerationError


@dataclass(frozen=True)
class Vote:
    """The outcome of a vote: the winning answer, its share of all samples drawn, and how many
    samples were drawn (``samples_used``) and skipped by early stopping (``samples_saved``)."""

    answer: str | None
    share: float
    samples_used: int
    samples_saved: int


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, float]:
    """The most frequent non-None answer and the fraction of *all* samples that gave it.

    Ties are broken by first appearance; ``(None, 0.0)`` when no sample has an answer.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)
    return winner, best / len(answers)


def is_decided(answers: Sequence[str | None], remaining: int) -> bool:
    """True when ``remaining`` more samples cannot change :func:`majority_vote` of ``answers``.

    The leader L (count c_L) stays ahead of every other answer a if c_a + remaining < c_L, or
    c_a + remaining == c_L and L appeared first; an answer not seen yet (count 0) appears after
    L, so it cannot win once remaining <= c_L.
    """
    if remaining <= 0:
        return True
    leader, _ = majority_vote(answers)
    if leader is None:
        return False
    counts = Counter(a for a in answers if a is not None)
    lead = counts[leader]
    if remaining > lead:  # a new answer could reach more than the leader's count
        return False
    order = {a: i for i, a in reversed(list(enumerate(answers)))}  # first appearance
    for other, count in counts.items():
        if other == leader:
            continue
        if count + remaining > lead or (count + remaining == lead and order[other] < order[leader]):
            return False
    return True


def first_decidable(n: int) -> int:
    """The fewest samples after which a vote over ``n`` can be decided (all agreeing): ceil(n/2).

    Drawing this many at once costs nothing in early stopping and shares one prompt encoding.
    """
    return math.ceil(n / 2)


def sample_until_decided(
    sample_fn: Callable[[int], Sequence[str | None]],
    n: int,
    *,
    early_stop: bool = True,
    step: int = 1,
) -> tuple[list[str | None], Vote]:
    """Draw up to ``n`` answers with ``sample_fn(k)`` (k answers per call) and vote on them.

    Without ``early_stop`` all n are drawn in one call. With it, the first call draws
    :func:`first_decidable` (n) answers, then ``step`` at a time until :func:`is_decided`.
    Returns the answers drawn and the :class:`Vote`.
    """
    if n < 1:
        raise ConfigError(f"The number of samples must be at least 1, not {n}.")
    if step < 1:
        raise ConfigError(f"step must be at least 1, not {step}.")
    answers: list[str | None] = []
    want = first_decidable(n) if early_stop else n
    while True:
        drawn = list(sample_fn(want))
        if len(drawn) != want:
            raise GenerationError(f"sample_fn({want}) returned {len(drawn)} answers.")
        answers.extend(drawn)
        remaining = n - len(answers)
        if remaining == 0 or (early_stop and is_decided(answers, remaining)):
            break
        want = min(step, remaining)
    answer, share = majority_vote(answers)
    return answers, Vote(answer, share, len(answers), n - len(answers))
