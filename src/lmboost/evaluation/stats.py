"""Paired significance tests: did two models (or methods) differ on the same items?

``mcnemar(only_first, only_second)`` is McNemar's test from the discordant counts of a paired
2 x 2 table (items only the first got right, items only the second got right); the concordant
items carry no information about the difference and do not enter. Under the null hypothesis
each discordant item is equally likely to fall either way, so with n = b + c discordant items
and k = min(b, c)::

    exact p = min(1, 2 P(X <= k)),            X ~ Binomial(n, 1/2)
    mid-p   = 2 P(X <= k) - P(X = k)          (Lancaster's mid-p; Fagerland et al. 2013)

The exact p-value is :func:`scipy.stats.binomtest`'s two-sided one (statsmodels'
``mcnemar(table, exact=True)`` gives the same); the mid-p is less conservative, with close to
nominal size in small samples. No discordant items: both are 1.

``paired_mcnemar(first, second)`` counts the table from two mappings item id -> correct (only
the items both hold), and ``pairwise_mcnemar(correct, pairs)`` does so for named pairs of
systems.

``win_tie_loss(scores, reference, tie)`` compares two systems' scores over the tasks (or any
keys) both have: their means and how many tasks each wins, with differences within ``tie``
counted as ties.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from scipy.stats import binom, binomtest


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on a paired table (see the module docstring).

    Attributes:
        only_first: items the first system got right and the second wrong (b).
        only_second: items the second got right and the first wrong (c).
        both: items both got right (None when only the discordant counts were given).
        neither: items both got wrong (None likewise).
        p: the exact two-sided p-value.
        mid_p: the two-sided mid-p-value.
    """

    only_first: int
    only_second: int
    p: float
    mid_p: float
    both: int | None = None
    neither: int | None = None

    @property
    def n_discordant(self) -> int:
        return self.only_first + self.only_second

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar(only_first: int, only_second: int, *, both: int | None = None,
            neither: int | None = None) -> McNemarResult:
    """McNemar's exact and mid-p tests from the discordant counts (``both`` and ``neither``
    are recorded, not used)."""
    for name, value in (("only_first", only_first), ("only_second", only_second)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a count (an integer >= 0), not {value!r}")
    b, c = int(only_first), int(only_second)
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 1.0, 1.0, both, neither)
    k = min(b, c)
    exact = float(binomtest(b, n, 0.5).pvalue)
    mid = float(min(1.0, binom.cdf(k, n, 0.5) + binom.cdf(k - 1, n, 0.5)))  # 2P(<=k) - P(k)
    return McNemarResult(b, c, exact, mid, both, neither)


def paired_mcnemar(first: Mapping[Hashable, bool], second: Mapping[Hashable, bool]
                   ) -> McNemarResult:
    """McNemar's test of two systems on the items both mappings (item id -> correct) hold."""
    items = first.keys() & second.keys()
    if not items:
        raise ValueError("the two systems share no items to compare")
    counts = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for item in items:
        counts[(bool(first[item]), bool(second[item]))] += 1
    return mcnemar(counts[(True, False)], counts[(False, True)], both=counts[(True, True)],
                   neither=counts[(False, False)])


def pairwise_mcnemar(
    correct: Mapping[str, Mapping[Hashable, bool]], pairs: Iterable[tuple[str, str]]
) -> dict[str, McNemarResult]:
    """``"A-B"`` -> :func:`paired_mcnemar` of systems A and B, for each pair whose two systems
    ``correct`` (system -> item id -> correct) holds."""
    return {
        f"{a}-{b}": paired_mcnemar(correct[a], correct[b])
        for a, b in pairs
        if a in correct and b in correct
    }


def win_tie_loss(scores: Mapping[Hashable, float | None],
                 reference: Mapping[Hashable, float | None], tie: float = 0.0
                 ) -> dict[str, Any] | None:
    """``scores`` against ``reference`` over the keys where both have a value (not None):
    ``{"n", "mean", "reference_mean", "win", "tie", "loss"}``, a win being ``score - reference
    > tie``, a loss ``< -tie``; None where they share no key."""
    if tie < 0:
        raise ValueError(f"tie must be >= 0, not {tie}")
    keys = [k for k, v in scores.items() if v is not None and reference.get(k) is not None]
    if not keys:
        return None
    diffs = [scores[k] - reference[k] for k in keys]
    return {
        "n": len(keys),
        "mean": sum(scores[k] for k in keys) / len(keys),
        "reference_mean": sum(reference[k] for k in keys) / len(keys),
        "win": sum(d > tie for d in diffs),
        "tie": sum(abs(d) <= tie for d in diffs),
        "loss": sum(d < -tie for d in diffs),
    }
