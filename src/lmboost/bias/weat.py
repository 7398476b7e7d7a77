"""The Word Embedding Association Test (Caliskan et al., 2017), as SEAT uses it (May et al., 2019).

Symbols follow the papers: target sets X, Y (e.g. flowers, insects), attribute sets A, B (e.g.
pleasant, unpleasant), all given as vectors (one row per word or sentence).

- association    s(w, A, B) = mean_{a in A} cos(w, a) - mean_{b in B} cos(w, b)
- test statistic S(X, Y, A, B) = sum_{x in X} s(x, A, B) - sum_{y in Y} s(y, A, B)
- effect size    d = (mean_{x in X} s(x) - mean_{y in Y} s(y)) / std_{w in X u Y} s(w), with the
  *sample* standard deviation (ddof=1), as in Caliskan et al.'s code and May et al.'s sent-bias;
  ``nan`` when every s(w) is equal.
- p-value        one-sided, P[S(X_i, Y_i) >= S(X, Y)] over the partitions (X_i, Y_i) of X u Y
  into sets of sizes |X| and |Y| (equal-size partitions for every SEAT test).

The p-value is computed from the s(w) values alone, which are computed once: a partition is a set
of |X| indices into X u Y, and since sum_{X_i} s + sum_{Y_i} s is the same for every partition,
S(X_i, Y_i) = 2 sum_{X_i} s - const, so partitions are compared by sum_{X_i} s.

- **Exact** when the number of partitions C(|X|+|Y|, |X|) is at most ``permutations``
  (enumerating them then costs no more than sampling would): p = (number of partitions whose
  statistic is >= the observed one) / C(|X|+|Y|, |X|). The observed partition counts itself, so
  p >= 1 / C(|X|+|Y|, |X|), which is exactly the p of a perfectly separated test (every s(x)
  above every s(y), no ties).
- **Sampled** otherwise: ``permutations`` partitions drawn uniformly at random by
  ``numpy.random.default_rng(seed)``, and p = (1 + number drawn with statistic >= observed) /
  (1 + permutations) (Phipson & Smyth, 2010: the observed partition counted once, so p is never
  0; its smallest value is 1 / (1 + permutations)). sent-bias does the same with
  ``n_samples - 1`` draws.

Ties count as "at least as extreme" (the conservative choice, as in sent-bias); statistics within
a relative 1e-10 of the observed one are ties, so that floating-point rounding of equal sums does
not decide a p-value.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# Rows of index arrays evaluated at once (bounds memory for large tests and many permutations).
_CHUNK_ELEMENTS = 1 << 22
_TIE_TOLERANCE = 1e-10


@dataclass(frozen=True)
class WEATResult:
    """The outcome of one association test.

    Attributes:
        effect_size: d, in standard deviations of s(w) over X u Y (positive: X is closer to A
            and Y to B).
        statistic: S(X, Y, A, B).
        p_value: one-sided permutation p-value (see the module docstring).
        exact: True when every partition was enumerated, False when they were sampled.
        permutations: partitions evaluated: all C(|X|+|Y|, |X|) when exact, else those drawn.
        s_x: s(x, A, B) for each x in X, in order.
        s_y: s(y, A, B) for each y in Y, in order.
    """

    effect_size: float
    statistic: float
    p_value: float
    exact: bool
    permutations: int
    s_x: np.ndarray
    s_y: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values."""
        return {
            "effect_size": self.effect_size,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "p_method": "exact" if self.exact else "sampled",
            "permutations": self.permutations,
            "s_x": self.s_x.tolist(),
            "s_y": self.s_y.tolist(),
        }


def cosine_matrix(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """cos(u, v) for every row u of ``U`` and row v of ``V`` (len(U) x len(V), float64)."""
    U = _rows(U, "U")
    V = _rows(V, "V")
    if U.shape[1] != V.shape[1]:
        raise ValueError(f"vectors differ in dimension: {U.shape[1]} vs {V.shape[1]}.")
    return _unit(U, "U") @ _unit(V, "V").T


def association(W: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b), for every row w of ``W``."""
    return cosine_matrix(W, A).mean(axis=1) - cosine_matrix(W, B).mean(axis=1)


def weat_statistic(s_x: np.ndarray, s_y: np.ndarray) -> float:
    """S(X, Y, A, B) = sum_x s(x) - sum_y s(y), from the associations of X and Y."""
    return float(np.sum(s_x) - np.sum(s_y))


def effect_size(s_x: np.ndarray, s_y: np.ndarray) -> float:
    """d = (mean_x s(x) - mean_y s(y)) / std_{w in X u Y} s(w), sample std (ddof=1).

    ``nan`` when every s(w) is equal (the standard deviation is 0).
    """
    s_x, s_y = _scores(s_x, s_y)
    std = float(np.std(np.concatenate([s_x, s_y]), ddof=1))
    if std == 0.0:
        return math.nan
    return float((s_x.mean() - s_y.mean()) / std)


def p_value(
    s_x: np.ndarray, s_y: np.ndarray, *, permutations: int = 100_000, seed: int = 0
) -> tuple[float, bool, int]:
    """One-sided permutation p-value of S(X, Y, A, B) from the associations of X and Y.

    Returns ``(p, exact, evaluated)``: exact enumeration when the partitions of X u Y number at
    most ``permutations``, else ``permutations`` partitions sampled with
    ``numpy.random.default_rng(seed)`` (see the module docstring for both formulas).
    """
    s_x, s_y = _scores(s_x, s_y)
    if not isinstance(permutations, (int, np.integer)) or permutations < 1:
        raise ValueError(f"permutations must be a positive integer, not {permutations!r}.")
    s = np.concatenate([s_x, s_y])
    n, k = len(s), len(s_x)
    observed = float(s_x.sum())
    threshold = observed - _TIE_TOLERANCE * max(float(np.abs(s).sum()), np.finfo(float).tiny)
    total = math.comb(n, k)
    rows = max(1, _CHUNK_ELEMENTS // n)
    if total <= permutations:
        combos = itertools.combinations(range(n), k)
        hits = 0
        for start in range(0, total, rows):
            m = min(rows, total - start)
            flat = itertools.chain.from_iterable(itertools.islice(combos, m))
            idx = np.fromiter(flat, dtype=np.intp, count=m * k).reshape(m, k)
            hits += int(np.count_nonzero(s[idx].sum(axis=1) >= threshold))
        return hits / total, True, total
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, rows):
        m = min(rows, permutations - start)
        idx = rng.permuted(np.tile(np.arange(n), (m, 1)), axis=1)[:, :k]
        hits += int(np.count_nonzero(s[idx].sum(axis=1) >= threshold))
    return (1 + hits) / (1 + permutations), False, permutations


def weat(
    X: np.ndarray,
    Y: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    *,
    permutations: int = 100_000,
    seed: int = 0,
) -> WEATResult:
    """Run one association test on target vectors ``X``, ``Y`` and attribute vectors ``A``, ``B``
    (2-D arrays, one row per word or sentence): effect size, statistic and p-value."""
    s_x = association(X, A, B)
    s_y = association(Y, A, B)
    p, exact, evaluated = p_value(s_x, s_y, permutations=permutations, seed=seed)
    return WEATResult(
        effect_size=effect_size(s_x, s_y),
        statistic=weat_statistic(s_x, s_y),
        p_value=p,
        exact=exact,
        permutations=evaluated,
        s_x=s_x,
        s_y=s_y,
    )


def _rows(M: np.ndarray, name: str) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or len(M) == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (one row per vector), got shape "
                         f"{M.shape}.")
    if not np.all(np.isfinite(M)):
        raise ValueError(f"{name} holds non-finite values (nan or inf).")
    return M


def _unit(M: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name} holds a zero vector, whose cosine is undefined.")
    return M / norms


def _scores(s_x: np.ndarray, s_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s_x = np.asarray(s_x, dtype=np.float64).reshape(-1)
    s_y = np.asarray(s_y, dtype=np.float64).reshape(-1)
    if len(s_x) == 0 or len(s_y) == 0:
        raise ValueError("both target sets need at least one member.")
    return s_x, s_y
