"""lmboost.instruct.ablation: reusing a built mixture, evaluation rows from runner records, the
summary's held-out flags, McNemar tests and held-out means, and the report, with known answers."""

from __future__ import annotations

import pytest

from lmboost.evaluation.stats import paired_mcnemar
from lmboost.instruct import MixtureError, config_from_dict
from lmboost.instruct import ablation as ab


def test_a_built_mixture_is_reused_and_another_config_refused(tmp_path):
    config = config_from_dict({"sources": ["sst2", "trec"], "size": 10, "few_shot_k": 0})
    built, reused = ab.mixture_or_reuse(config, tmp_path)
    assert (built["n"], reused) == (10, False)
    text = (tmp_path / "mixture.jsonl").read_text()
    again, reused = ab.mixture_or_reuse(config, tmp_path)
    assert reused and again == built and (tmp_path / "mixture.jsonl").read_text() == text
    other = config_from_dict({"sources": ["sst2", "trec"], "size": 12, "few_shot_k": 0})
    with pytest.raises(MixtureError, match="built with other settings"):
        ab.mixture_or_reuse(other, tmp_path)


def test_rows_from_runner_records():
    icl = {"eval": {"n": 40}, "summary": [{"accuracy": {"mean": 0.625}}]}
    assert ab.icl_row("base", "wic", icl) == {
        "model": "base", "kind": "icl", "task": "wic", "mode": "zero-shot", "n": 40,
        "accuracy": 0.625}
    items = [{"uid": "a", "correct": True, "chains": ["one two three", ""]},
             {"uid": "b", "correct": False, "chains": ["four", "five six"]}]
    reasoning = {"n_items": 2, "accuracy": 0.5, "items": items}
    row = ab.reasoning_row("cot", "gsm8k", "zs-cot", reasoning)
    assert row["correct"] == {"a": True, "b": False}
    assert (row["chain_words"], row["empty_chains"]) == (1.5, 0.25)
    assert "chain_words" not in ab.reasoning_row("cot", "gsm8k", "direct", reasoning)


def test_sources_of_a_task():
    assert ab.sources_of("gsm8k") == ["cot:gsm8k", "gsm8k-train"]
    assert ab.sources_of("bbh:boolean_expressions") == [] and ab.sources_of("mmlu") == []
    assert ab.sources_of("wic") == ["wic"]
    assert ab.sources_of("no-such-task") == []


def _reason(model: str, correct: dict[str, bool]) -> dict:
    return {"model": model, "kind": "reason", "task": "gsm8k", "mode": "direct",
            "n": len(correct), "accuracy": sum(correct.values()) / len(correct),
            "correct": correct}


def test_summary_flags_held_out_rows_tests_pairs_and_averages():
    uids = [str(i) for i in range(6)]
    base = dict.fromkeys(uids, False)
    nocot = {u: u in ("0", "1") for u in uids}
    cot = {u: u in ("0", "1", "2", "3", "4") for u in uids}
    evals = [ab.icl_row(m, "wic", {"eval": {"n": 10}, "summary": [{"accuracy": {"mean": a}}]})
             for m, a in (("base", 0.5), ("nocot", 0.6), ("cot", 0.7))]
    evals += [ab.icl_row(m, "sst2", {"eval": {"n": 10}, "summary": [{"accuracy": {"mean": a}}]})
              for m, a in (("base", 0.9), ("cot", 0.95))]
    evals += [_reason("base", base), _reason("nocot", nocot), _reason("cot", cot)]
    summary = ab.summarise(evals, seen={"sst2", "trec", "cot:gsm8k"})
    rows = {row["task"]: row for row in summary["evals"]}
    assert rows["wic"]["held_out"] and not rows["sst2"]["held_out"]
    assert not rows["gsm8k"]["held_out"]  # cot:gsm8k was in a mixture
    paired = rows["gsm8k"]["paired"]
    assert set(paired) == {"base-nocot", "base-cot", "nocot-cot"}
    assert paired["base-cot"] == paired_mcnemar(base, cot).to_dict()
    assert (paired["nocot-cot"]["only_first"], paired["nocot-cot"]["only_second"]) == (0, 3)
    assert "correct" not in rows["gsm8k"]
    # held out: wic only (sst2 and gsm8k were seen)
    assert summary["mean_held_out"] == {"n_evaluations": 1, "accuracy": {
        "base": 0.5, "nocot": 0.6, "cot": 0.7}}
    both = ab.summarise(evals, seen={"sst2"})["mean_held_out"]
    assert both["n_evaluations"] == 2
    assert both["accuracy"]["cot"] == pytest.approx((0.7 + 5 / 6) / 2)
    assert ab.mean_held_out([]) == {"n_evaluations": 0, "accuracy": {}}


def test_render_writes_every_table():
    evals = [ab.icl_row(m, "wic", {"eval": {"n": 10}, "summary": [{"accuracy": {"mean": a}}]})
             for m, a in (("base", 0.5), ("nocot", 0.6), ("cot", 0.7))]
    items = [{"uid": "a", "correct": True, "chains": ["one two"]}]
    evals += [ab.reasoning_row(m, "bbh", "zs-cot", {"n_items": 1, "accuracy": 1.0,
                                                     "items": items}) for m in ab.MODELS]
    train = {"steps": 10, "train_loss": 1.23456, "dev_loss": 2.0, "seconds_per_step": 0.5}
    summary = {"model": "tiny", "held_out_groups": ["word_sense"],
               "mixtures": {"cot": {"n": 80, "per_source": {"sst2": 40, "cot:aqua": 40}}},
               "training": {"cot": train}, **ab.summarise(evals, seen=set())}
    text = ab.render(summary)
    assert "| wic | zero-shot | 10 | 50.0 | 60.0 | 70.0 |" in text
    assert "| **mean of the 2 held-out rows** |  |  | 75.0 | 80.0 | 85.0 |" in text
    assert "| bbh | zs-cot | 2.0 | 2.0 | 2.0 | 0.0 | 0.0 | 0.0 |" in text
    assert "| bbh | zs-cot | 0 / 0, p 1 | 0 / 0, p 1 | 0 / 0, p 1 |" in text
    assert "| cot | 80 | 2 | 10 | 1.235 | 2.000 | 0.50 |" in text
