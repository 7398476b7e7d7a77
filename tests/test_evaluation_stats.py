"""lmboost.evaluation.stats (McNemar's exact and mid-p tests on hand-worked tables, win/tie/loss
counts), lmboost.evaluation.report's table and cell formats (exact output),
lmboost.evaluation.speed (timing, parameter counts and FLOP utilisation) and
lmboost.evaluation.records.machine_info."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lmboost.evaluation.records import RunTimer, machine_info
from lmboost.evaluation.report import markdown_table, mean_std, percent, tasks_table
from lmboost.evaluation.speed import (
    best_time,
    flops_utilization,
    matmul_peak,
    non_embedding_parameters,
    timed,
)
from lmboost.evaluation.stats import (
    McNemarResult,
    mcnemar,
    paired_mcnemar,
    pairwise_mcnemar,
    win_tie_loss,
)

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


def test_percent_and_mean_std_cells():
    assert percent(0.1234) == "12.3%" and percent(0.5, 0) == "50%" and percent(None) == "—"
    assert percent(0.99999, 2) == "100.00%" and percent(None, missing="n/a") == "n/a"
    assert mean_std({"mean": 0.682, "std": 0.098}) == "68.2 ± 9.8"
    assert mean_std({"mean": 2.5, "std": 0.25}, 2, scale=1) == "2.50 ± 0.25"
    assert mean_std(None) == "n/a"


def test_tasks_table_bolds_the_best_mean_and_averages_where_each_method_applies():
    def row(method, shots, mean, std=0.01, status="ok"):
        return {"method": method, "shots": shots, "status": status,
                "accuracy": {"mean": mean, "std": std}}

    summaries = {
        "sst2": [row("none", 1, 0.6), row("bc", 1, 0.8, 0.02), row("cc", 1, 0.7),
                 row("bc", 4, 0.1)],  # other shots: left out
        "copa": [row("none", 1, 0.55), row("bc", 1, 0.5), row("cc", 1, None, status="n/a")],
    }
    assert tasks_table(summaries, 1, ["none", "bc", "cc"]).splitlines() == [
        "| task | none | bc | cc |",
        "|---|---:|---:|---:|",
        "| sst2 | 60.0 ± 1.0 | **80.0** ± 2.0 | 70.0 ± 1.0 |",
        "| copa | **55.0** ± 1.0 | 50.0 ± 1.0 | n/a |",
        "| mean, tasks where each applies (count) | 57.5 (2) | 65.0 (2) | 70.0 (1) |",
    ]


# --------------------------------------------------------------------------- win / tie / loss


def test_win_tie_loss_over_the_shared_keys():
    """a: +2 (win), b: -0.3 (tie within 0.5), c: -1 (loss); d has no reference, e no score."""
    scores = {"a": 72.0, "b": 60.0, "c": 50.0, "d": 90.0, "e": None}
    reference = {"a": 70.0, "b": 60.3, "c": 51.0, "e": 40.0}
    assert win_tie_loss(scores, reference, tie=0.5) == {
        "n": 3, "mean": pytest.approx(182 / 3), "reference_mean": pytest.approx(181.3 / 3),
        "win": 1, "tie": 1, "loss": 1,
    }
    exact = win_tie_loss(scores, reference)  # tie 0: only equal scores tie
    assert (exact["win"], exact["tie"], exact["loss"]) == (1, 0, 2)
    assert win_tie_loss({"a": 1.0}, {"b": 1.0}) is None
    with pytest.raises(ValueError, match="tie must be >= 0"):
        win_tie_loss(scores, reference, tie=-1)


# --------------------------------------------------------------------------- speed


def test_timed_returns_the_result_and_the_seconds_of_one_call():
    result, timing = timed(lambda x, y=0: (time.sleep(0.05), x + y)[1], 2, y=3)
    assert result == 5 and 0.05 <= timing["seconds"] < 1
    assert len(timing["load_average"]) == 2


def test_best_time_skips_the_warmup_and_keeps_the_fastest_call():
    """Calls sleep 0.2 s (the warm-up), then 0.1, 0.02, 0.1 s: the best is the 0.02 s call."""
    sleeps = iter([0.2, 0.1, 0.02, 0.1])
    calls = []
    best = best_time(lambda: calls.append(time.sleep(next(sleeps))), repeats=3, warmup=1)
    assert len(calls) == 4 and 0.02 <= best < 0.09
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        best_time(lambda: None, repeats=0)


def test_non_embedding_parameters_of_the_tiny_llama(tiny_model):
    """2 layers of hidden 32, 4 heads of 8 with 2 key/value heads (k, v: 32 -> 16), MLP 64:
    attention 32*32 + 2*32*16 + 32*32, MLP 3*32*64, two RMSNorms of 32; a final norm of 32.
    The untied output head and the input embedding are left out."""
    per_layer = 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64 + 2 * 32
    assert non_embedding_parameters(tiny_model.model) == 2 * per_layer + 32
    tied = torch.nn.Module()
    tied.emb = torch.nn.Embedding(10, 4)
    tied.lin = torch.nn.Linear(4, 4, bias=False)
    tied.get_input_embeddings = lambda: tied.emb
    tied.get_output_embeddings = lambda: tied.emb  # a head tied to the embedding
    assert non_embedding_parameters(tied) == 16


def test_flops_utilization_and_matmul_peak():
    # 2 * 1e6 weights * 500 tokens = 1e9 FLOP in 0.5 s = 2e9 FLOP/s of a 4e9 peak: half.
    assert flops_utilization(10**6, 500, 0.5, 4e9) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="must be > 0"):
        flops_utilization(10**6, 500, 0.0, 4e9)
    peak = matmul_peak(torch.float32, size=128, repeats=2)
    assert 1e6 < peak < 1e15  # a real CPU rate: between a megaFLOP and a petaFLOP per second


# --------------------------------------------------------------------------- machine


def test_machine_info_describes_this_machine_and_run_records_carry_it():
    info = machine_info()
    assert info["cores"] == os.cpu_count() and info["cpu"]
    assert info["torch"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()
    assert info["transformers"] and info["python"].count(".") == 2
    if os.path.exists("/proc/meminfo"):
        lines = Path("/proc/meminfo").read_text().splitlines()
        kib = int(next(line.split()[1] for line in lines if line.startswith("MemTotal")))
        assert info["memory_gib"] == round(kib / 2**20, 1)
        assert len(info["load_average"]) == 3
    assert RunTimer().fields()["machine"]["cpu"] == info["cpu"]


def test_versus_reference_compares_speed_and_scores_with_the_reference():
    from lmboost.evaluation.speed import versus_reference

    records = {
        "ref": {"scores": [[0.0, 1.0], [2.0, 0.0]], "examples_per_second": 10.0,
                "peak_share": 0.5},
        "fast": {"scores": [[0.0, 1.5], [0.0, 1.0]], "examples_per_second": 40.0},
    }
    rows = versus_reference(records, np.array([1, 1]), "ref")
    assert rows == [["ref", 10.0, None, None, None, 0.5, 0.5],
                    ["fast", 40.0, 0.25, 0.5, 2.0, 1.0, None]]
    assert versus_reference({"fast": records["fast"]}, np.array([1, 0]), "ref") == [
        ["fast", 40.0, None, None, None, 0.5, None]]


def test_versus_table_renders_the_rows_with_their_key_columns():
    from lmboost.evaluation.speed import versus_table

    table = versus_table([[4, "ref", 10.0, None, None, None, 0.5, 0.5],
                          [4, "fast", 40.0, 0.25, 0.5, 2.0, 1.0, None]], "ref", keys=("shots",))
    lines = table.splitlines()
    assert lines[0] == ("| shots | method | ex/s | ref speed-up | agreement | max abs dlogp "
                        "| accuracy | peak share |")
    assert lines[3] == "| 4 | fast | 40.0 | 0.2x | 50.00% | 2.0e+00 | 1.000 | — |"
