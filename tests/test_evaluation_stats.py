"""lmboost.evaluation.stats (McNemar's exact and mid-p tests on hand-worked tables) and
lmboost.evaluation.report.markdown_table (exact output)."""

from __future__ import annotations

import pytest

from lmboost.evaluation.report import markdown_table
from lmboost.evaluation.stats import McNemarResult, mcnemar, paired_mcnemar, pairwise_mcnemar

# --------------------------------------------------------------------------- McNemar


def test_mcnemar_on_a_hand_worked_table():
    """Discordant b = 1, c = 7, so n = 8, k = 1, X ~ Bin(8, 1/2):
    P(X = 0) = 1/256, P(X = 1) = 8/256, P(X <= 1) = 9/256;
    exact p = 2 * 9/256 = 18/256 = 0.0703125 (statsmodels' mcnemar([[a, 1], [7, d]],
    exact=True).pvalue, and scipy's binomtest(1, 8).pvalue, give the same);
    mid-p = 2 * 9/256 - 8/256 = 10/256 = 0.0390625."""
    t = mcnemar(1, 7)
    assert t.p == pytest.approx(18 / 256, abs=1e-12)
    assert t.mid_p == pytest.approx(10 / 256, abs=1e-12)
    assert (t.only_first, t.only_second, t.n_discordant) == (1, 7, 8)
    assert mcnemar(7, 1).p == t.p and mcnemar(7, 1).mid_p == t.mid_p  # symmetric


def test_mcnemar_small_and_balanced_tables():
    """b = 0, c = 5: exact 2 / 32 = 0.0625, mid-p 2/32 - 1/32 = 1/32 = 0.03125.
    b = 2, c = 3 (n = 5, k = 2): P(X <= 2) = 16/32, so exact 1 and mid-p 1 - 10/32 = 0.6875.
    b = c = 3: exact 1 and mid-p 2 * 42/64 - 20/64 = 1. No discordant items: both 1."""
    assert mcnemar(0, 5).p == pytest.approx(0.0625)
    assert mcnemar(0, 5).mid_p == pytest.approx(0.03125)
    assert mcnemar(2, 3).p == pytest.approx(1.0)
    assert mcnemar(2, 3).mid_p == pytest.approx(0.6875)
    assert (mcnemar(3, 3).p, mcnemar(3, 3).mid_p) == (pytest.approx(1.0), pytest.approx(1.0))
    assert (mcnemar(0, 0).p, mcnemar(0, 0).mid_p) == (1.0, 1.0)


def test_mcnemar_rejects_what_is_not_a_count():
    with pytest.raises(ValueError, match="only_first"):
        mcnemar(-1, 3)
    with pytest.raises(ValueError, match="only_second"):
        mcnemar(1, 2.5)


def test_paired_mcnemar_counts_the_table_on_shared_items():
    first = {"a": True, "b": True, "c": False, "d": False, "e": True, "only-first": True}
    second = {"a": True, "b": False, "c": True, "d": False, "e": False, "only-second": False}
    t = paired_mcnemar(first, second)
    assert (t.both, t.only_first, t.only_second, t.neither) == (1, 2, 1, 1)
    assert t == mcnemar(2, 1, both=1, neither=1)
    assert t.to_dict() == {"only_first": 2, "only_second": 1, "p": 1.0, "mid_p": t.mid_p,
                           "both": 1, "neither": 1}
    with pytest.raises(ValueError, match="share no items"):
        paired_mcnemar({"x": True}, {"y": True})


def test_pairwise_mcnemar_skips_pairs_with_a_missing_system():
    correct = {"base": {"1": True, "2": False}, "cot": {"1": False, "2": False}}
    tests = pairwise_mcnemar(correct, [("base", "cot"), ("base", "nocot")])
    assert list(tests) == ["base-cot"]
    assert isinstance(tests["base-cot"], McNemarResult)
    assert (tests["base-cot"].only_first, tests["base-cot"].only_second) == (1, 0)


# --------------------------------------------------------------------------- markdown_table


def test_markdown_table_exact_output():
    rows = [
        {"model": "tiny", "acc": 0.8125, "n": 16, "note": "a|b"},
        {"model": "big", "acc": None, "n": 4, "note": "two\nlines"},
        ["seq", 0.5],
    ]
    text = markdown_table(rows, ["model", "acc", "n", "note"], {"acc": lambda x: f"{100 * x:.1f}"})
    assert text == (
        "| model | acc | n | note |\n"
        "|---|---:|---:|---|\n"
        "| tiny | 81.2 | 16 | a\\|b |\n"
        "| big | — | 4 | two lines |\n"
        "| seq | 50.0 | — | — |"
    )


def test_markdown_table_formats_align_and_missing():
    text = markdown_table(
        [["x", 1.25, True, 3], ["y", 2.0, False, None]],
        ["name", "ratio", "flag", "k"],
        {"ratio": "{:.1f}x", 3: "03d"},
        align={"name": "right", "k": "left"},
        missing="",
    )
    assert text.splitlines() == [
        "| name | ratio | flag | k |",
        "|---:|---:|---|---|",  # bools are not numbers; k left as asked
        "| x | 1.2x | True | 003 |",
        "| y | 2.0x | False |  |",
    ]
    # a header used twice is addressed by position; an empty table is its header
    assert markdown_table([[1, 2]], ["a", "a"], {1: ".1f"}).splitlines()[2] == "| 1 | 2.0 |"
    assert markdown_table([], ["a", "b"]) == "| a | b |\n|---|---|"


def test_markdown_table_errors():
    with pytest.raises(ValueError, match="not in the table"):
        markdown_table([], ["a"], {"b": ".1f"})
    with pytest.raises(ValueError, match="must be 'left' or 'right'"):
        markdown_table([], ["a"], align={"a": "centre"})
    with pytest.raises(ValueError, match="3 values for 2 columns"):
        markdown_table([[1, 2, 3]], ["a", "b"])
