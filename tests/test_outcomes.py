"""Judging RAIN's outcomes (lmboost.decoding.outcomes): the judgement store, the judge's checks,
the vanilla-vs-RAIN rows and the report, on hand-made records and judgements with known
answers; the judge itself on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from lmboost.decoding import GOALS, GoalJudge, RainConfig
from lmboost.decoding.outcomes import (
    Comparison,
    Judgements,
    compare,
    judge_checks,
    judge_inputs,
    judgement_key,
    outcome_report,
    run_judge,
    sentiment_texts,
    summarise_outcomes,
    unbatched_check,
)
from lmboost.generation import GenerationConfig, generate
from lmboost.scoring import Scorer
from lmboost.tasks import Example, PromptItem, PromptSet, get_task

JUDGE = "judge-x"


def store(tmp_path, sst2=(), harmless=()) -> Judgements:
    """A store holding SST-2 scores {text: (neg, pos)} and P(harmless) {(prompt, response): ps}."""
    judgements = Judgements(tmp_path / "judgements.jsonl", JUDGE)
    for text, scores in dict(sst2).items():
        judgements.add({"key": judgement_key(JUDGE, "sst2", text), "scores": list(scores)})
    for pair, probs in dict(harmless).items():
        judgements.add({"key": judgement_key(JUDGE, "harmless", *pair), "p_harmless": list(probs)})
    return judgements


def step(stop: str = "budget", rewinds: int = 0) -> dict:
    return {"iterations": 2, "rewinds": rewinds, "stop": stop, "committed": "x",
            "children": [{"visits": 2, "value": 0.5}]}


def rain_record(prompt: str, text: str, seconds: float = 4.0, **tags) -> dict:
    return {"prompt": prompt, "text": text, "seconds": seconds, "tokens": 3, "iterations": 4,
            "steps": 2, "trace": [step(), step("thresholds", rewinds=1)], "method": "rain",
            **tags}


def test_sentiment_texts_and_the_judge_inputs():
    record = {"prompt": "the film was", "text": "  truly\n fine ", "goal": "positive",
              "method": "vanilla"}
    assert sentiment_texts(record) == {"full": "the film was truly fine",
                                       "continuation": "truly fine"}
    harmful = {"prompt": "how?", "text": " no. ", "goal": "harmless", "method": "rain"}
    unbatched = {**harmful, "method": "rain_unbatched", "text": "other"}
    pair = PromptItem("hh:1", "q", {"chosen": "c", "rejected": "r"})
    texts, pairs = judge_inputs([record, harmful, unbatched],
                                [Example({"sentence": "a review"}, 1)], [pair])
    assert texts == ["a review", "the film was truly fine", "truly fine"]
    assert pairs == [("q", "c"), ("q", "r"), ("how?", " no. ")]  # stripped when judged


def test_the_store_reads_back_what_it_wrote_and_strips_responses(tmp_path):
    store(tmp_path, sst2={"good": (-2.0, -1.0)}, harmless={("p", "r"): (0.9, 0.7)})
    again = Judgements(tmp_path / "judgements.jsonl", JUDGE)
    assert again.sst2_scores("good").tolist() == [-2.0, -1.0]
    assert again.p_harmless("p", "  r\n").tolist() == [0.9, 0.7]
    assert again.sst2_scores("unseen") is None
    assert Judgements(tmp_path / "judgements.jsonl", "another judge").sst2_scores("good") is None
    assert judgement_key(JUDGE, "sst2", "good") in again


def test_judge_checks_known_answers(tmp_path):
    sample = [Example({"sentence": f"s{i}"}, label) for i, label in enumerate([0, 0, 1, 1])]
    # Uncalibrated: always positive (accuracy 1/2); the positive score is 1.05 higher on
    # average, and BC's prior removes that: s1 (1.1) turns positive, the rest right -> 3/4.
    scores = {"s0": (0.0, 0.5), "s1": (0.0, 1.1), "s2": (0.0, 1.2), "s3": (0.0, 1.4)}
    pairs = [PromptItem(f"hh:{i}", f"q{i}", {"chosen": f"c{i}", "rejected": f"r{i}"})
             for i in range(3)]
    harmless = {("q0", "c0"): (0.9, 0.8), ("q0", "r0"): (0.2, 0.3),  # agrees
                ("q1", "c1"): (0.4, 0.4), ("q1", "r1"): (0.4, 0.4),  # tie: half
                ("q2", "c2"): (0.1, 0.6), ("q2", "r2"): (0.7, 0.7)}  # disagrees
    checks, bc = judge_checks(store(tmp_path, scores, harmless), sample, pairs)
    assert checks["sst2"]["accuracy"] == 0.5 and checks["sst2"]["predicted_positive"] == 1.0
    assert checks["sst2"]["accuracy_bc"] == 0.75
    assert bc is not None and np.allclose(bc.mean_[1] - bc.mean_[0], 1.05)
    assert checks["hh"] == {"n": 3, "agreement": 0.5, "chosen_harmless": 1 / 3,
                            "rejected_harmless": 1 / 3, "order_consistent": 5 / 6}


def test_judge_checks_before_anything_is_judged(tmp_path):
    sample = [Example({"sentence": "s"}, 0)]
    assert judge_checks(store(tmp_path), sample, []) == ({}, None)


def test_compare_harmless_counts_what_rain_fixed_and_broke(tmp_path):
    vanilla = [{"prompt": f"q{i}", "text": f"v{i}", "seconds": 1.0, "tokens": 5} for i in range(3)]
    rain = [rain_record(f"q{i}", f"r{i}") for i in range(3)]
    p = {("q0", "v0"): (0.2, 0.2), ("q0", "r0"): (0.9, 0.9),  # fixed
         ("q1", "v1"): (0.8, 0.8), ("q1", "r1"): (0.1, 0.3),  # broke
         ("q2", "v2"): (0.8, 0.6), ("q2", "r2"): (0.7, 0.7)}  # harmless both ways
    row = compare("harmless", list(zip(vanilla, rain)), store(tmp_path, harmless=p), None)
    assert row["vanilla"]["harmless"] == pytest.approx(2 / 3)
    assert row["rain"]["harmless"] == pytest.approx(2 / 3)
    assert (row["rain_fixed"], row["rain_broke"]) == (1, 1)
    assert row["rain"]["p_harmless"] == pytest.approx((0.9 + 0.2 + 0.7) / 3)
    assert row["time"]["ratio"] == 4.0 and row["time"]["vanilla_tokens"] == 5
    assert row["search"] == {"iterations_per_prompt": 4, "rewinds_per_prompt": 1,
                             "steps_per_prompt": 2, "early_commit_share": 0.5}


def test_compare_positive_with_and_without_bc(tmp_path):
    vanilla = [{"prompt": "bad film", "text": " and dull", "seconds": 2.0, "tokens": 2}]
    rain = [rain_record("bad film", " but fun")]
    scores = {"bad film and dull": (0.0, -1.0), "and dull": (0.0, 0.5),
              "bad film but fun": (0.0, 1.0), "but fun": (0.0, 2.0)}
    judgements = store(tmp_path, sst2=scores)
    assert "rain" not in compare("positive", list(zip(vanilla, rain)), store(tmp_path / "x"),
                                 None)  # not judged yet: time and search only
    bc = type("BC", (), {"predict": lambda self, s: (s[:, 1] - s[:, 0] > 0.75).astype(int)})()
    row = compare("positive", list(zip(vanilla, rain)), judgements, bc)
    assert row["vanilla"] == {"positive_full": 0.0, "positive_full_bc": 0.0,
                              "positive_continuation": 1.0, "positive_continuation_bc": 0.0}
    assert row["rain"] == {"positive_full": 1.0, "positive_full_bc": 1.0,
                           "positive_continuation": 1.0, "positive_continuation_bc": 1.0}


def test_unbatched_check_and_the_summary(tmp_path):
    tags = {"policy": "m", "set": "hh", "goal": "harmless"}
    vanilla = {"prompt": "q", "text": "abc def", "seconds": 1.0, "method": "vanilla",
               "uid": "hh:1", **tags}
    batched = rain_record("q", "x", uid="hh:1", **tags)
    same = {**batched, "method": "rain_unbatched", "seconds": 6.0}
    other = {**same, "uid": "hh:2", "text": "y", "trace": [step("thresholds")]}
    records = [vanilla, batched, same, {**batched, "uid": "hh:2"}, other]
    assert unbatched_check(records) == [
        {"policy": "m", "set": "hh", "uid": "hh:1", "same_text": True, "same_trace": True,
         "seconds": 4.0, "seconds_unbatched": 6.0},
        {"policy": "m", "set": "hh", "uid": "hh:2", "same_text": False, "same_trace": False,
         "seconds": 4.0, "seconds_unbatched": 6.0},
    ]
    judgements = store(tmp_path, harmless={("q", "abc def"): (0.2, 0.4), ("q", "x"): (1, 1)})
    summary = summarise_outcomes(records, judgements, [], [],
                                 tokens=lambda policy, text: len(text.split()))
    (row,) = summary["results"]  # hh:2 has no vanilla record: left out
    assert (row["policy"], row["set"], row["goal"], row["n"]) == ("m", "hh", "harmless", 1)
    assert row["time"]["vanilla_tokens"] == 2 and (row["rain_fixed"], row["rain_broke"]) == (1, 0)
    summary["settings"] = {"policies": ["m"], "judge": JUDGE, "prompts_per_set": 1,
                           "vanilla": {"max_new_tokens": 4},
                           "rain": {"min_new_iterations": 2, "max_iterations": 3,
                                    "num_candidates": 2, "simulation_tokens": 8, "min_visits": 2,
                                    "value_threshold": 0.7, "parallel": 1, "calibrate": False}}
    summary["machine"] = {"cpu": "a CPU", "load_average": [1.0, 0.5, 0.25], "cores": 2,
                          "torch_threads": 1}
    report = outcome_report(summary, {"harmless": [("paper row", "82% -> 97%")]}, "A note.")
    assert "| m | hh | 1 | 0% | 100% | +100 pts | 1 / 0 | 0.30 -> 1.00 |" in report
    assert "| paper: paper row |" in report and "| 82% -> 97% |" in report
    assert "- 2 prompts: identical text for 1, identical trace" in report
    assert "RAIN T = 3 (at least 2 new searches per step)" in report
    assert report.endswith("\n\nA note.\n")


def test_run_judge_scores_what_is_left_with_the_judge_model(tmp_path, tiny_model_dir,
                                                            tiny_model):
    judgements = Judgements(tmp_path / "j.jsonl", tiny_model_dir)
    records = [{"prompt": "the film", "text": " was", "goal": "positive", "method": "rain"},
               {"prompt": "how?", "text": " no ", "goal": "harmless", "method": "vanilla"}]
    lines: list[str] = []
    run_judge(judgements, records, [], [], device="cpu", batch_size=2, log=lines.append)
    assert lines[0].endswith(": 2 texts for sentiment, 1 for harmlessness")
    task = get_task("sst2")
    expected = Scorer(tiny_model, batch_size=2).score_choices(
        [task.render(Example({"sentence": t}, 0)) for t in ("the film was", "was")],
        [" " + w for w in task.verbalizer])
    assert np.allclose(judgements.sst2_scores("the film was"), expected[0])
    assert np.allclose(judgements.sst2_scores("was"), expected[1])
    good = GoalJudge(tiny_model, GOALS["harmless"]).p_good([("how?", "no")])[0]
    assert np.allclose(judgements.p_harmless("how?", " no "), good)
    lines.clear()
    again = Judgements(tmp_path / "j.jsonl", tiny_model_dir)
    run_judge(again, records, [], [], log=lines.append)  # all judged: no model loaded
    assert lines == []


def test_a_comparison_decodes_each_method_once_and_tags_its_records(tmp_path, tiny_model_dir,
                                                                    tiny_model):
    items = [PromptItem(f"s:{i}", p) for i, p in enumerate(["the film was", "a long day"])]
    sets = {"s": PromptSet("s", lambda: items, chat=False, goal="positive")}
    rain = RainConfig(max_new_tokens=3, max_iterations=2, num_candidates=2, simulation_tokens=3)
    runs = Comparison(tmp_path, sets, {"s": items}, rain, check_unbatched=1)
    lines: list[str] = []
    runs.decode(tiny_model_dir, device="cpu", log=lines.append)
    assert lines[0] == f"== {tiny_model_dir}: 3 (set, method) runs to do"
    records = runs.records([tiny_model_dir])
    assert sorted((r["method"], r["uid"]) for r in records) == [
        ("rain", "s:0"), ("rain", "s:1"), ("rain_unbatched", "s:0"), ("vanilla", "s:0"),
        ("vanilla", "s:1")]
    assert {(r["policy"], r["set"], r["goal"]) for r in records} == {
        (tiny_model_dir, "s", "positive")}
    greedy = generate(tiny_model, [i.prompt for i in items], GenerationConfig(max_new_tokens=3),
                      chat=False)
    assert [r["text"] for r in records if r["method"] == "vanilla"] == [g[0] for g in greedy]
    by_method = {r["method"]: r for r in records if r["uid"] == "s:0"}
    assert by_method["rain_unbatched"]["text"] == by_method["rain"]["text"]  # same search
    lines.clear()
    runs.decode(tiny_model_dir, device="cpu", log=lines.append)
    assert lines == []  # all done: the model is not even loaded
    longer = Comparison(tmp_path, sets, {"s": items}, RainConfig(max_new_tokens=4))
    assert longer.run_dir("m", "s", "rain") != runs.run_dir("m", "s", "rain")
    assert longer.records([tiny_model_dir]) == []  # other settings: other folders
    assert runs.settings()["rain_unbatched"]["batched"] is False
