"""lmboost.reasoning: tasks, prompts, the runner end to end on the tiny model, resume, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lmboost.backends.hf import HFBackend
from lmboost.cli import main
from lmboost.errors import LmboostError, TaskError
from lmboost.models import load_model
from lmboost.reasoning import (
    BBH_TASKS,
    MMLU_SUBJECTS,
    ReasoningConfig,
    answer_prompt,
    build_prompt,
    exemplars,
    extract,
    load_items,
    majority_vote,
    run_reasoning,
    task_names,
)
from lmboost.reasoning.prompts import answer_trigger, stop_strings

ITEM_KEYS = {
    "uid", "task", "question", "target", "chains", "answers", "vote", "share", "correct",
    "samples_used", "samples_saved", "seconds",
}



@pytest.fixture(scope="module")
def long_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model with an 8192-token window: few-shot CoT prompts are thousands of tokens
    long under its 300-token vocabulary (RoPE computes any position)."""
    path = tmp_path_factory.mktemp("tiny-long") / "model"
    shutil.copytree(tiny_model_dir, path)
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = 8192
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def long_model(long_model_dir):
    return load_model(long_model_dir, device="cpu")


def _config(model: str, out: Path, **kwargs) -> ReasoningConfig:
    settings = {"limit": 2, "max_new_tokens": 6, "batch_size": 2} | kwargs
    return ReasoningConfig(model=model, out=out, **settings)


# --------------------------------------------------------------------------- tasks and prompts


def test_task_names_and_errors():
    assert task_names("gsm8k") == ["gsm8k"]
    assert len(task_names("bbh")) == 27 == len(BBH_TASKS)
    assert len(task_names("mmlu")) == 57 == len(MMLU_SUBJECTS)
    assert task_names("bbh:navigate") == ["bbh:navigate"]
    with pytest.raises(TaskError, match="Unknown BBH task 'nope'.*boolean_expressions"):
        task_names("bbh:nope")
    with pytest.raises(TaskError, match="Unknown MMLU subject 'x'.*abstract_algebra"):
        task_names("mmlu:x")
    with pytest.raises(TaskError, match="Unknown reasoning task 'sst2'.*gsm8k"):
        task_names("sst2")


def test_load_items():
    gsm = load_items("gsm8k", limit=3)
    assert [i.target for i in gsm] == ["18", "3", "70000"]  # "#### 70000" in the test file
    assert len(load_items("gsm8k")) == 1319
    bbh = load_items("bbh", limit=1)
    assert len(bbh) == 27 and {i.task for i in bbh} == {f"bbh:{t}" for t in BBH_TASKS}
    mmlu = load_items("mmlu:anatomy", limit=2)
    assert mmlu[0].target in "ABCD" and len(mmlu[0].options) == 4
    assert len({i.uid for i in load_items("mmlu", limit=1)}) == 57
    with pytest.raises(TaskError, match="limit"):
        load_items("gsm8k", limit=0)


def test_exemplars():
    gsm = exemplars("gsm8k")
    assert len(gsm) == 8 and gsm[0].answer == "72"
    assert all("<<" not in s.rationale and "####" not in s.rationale for s in gsm)
    assert gsm[0].rationale.startswith("Natalia sold 48/2 = 24 clips in May.")
    bbh = exemplars("bbh:word_sorting")
    assert len(bbh) == 3 and bbh[0].answer == "costume counterpart oven"
    assert bbh[0].rationale.endswith("So the answer is costume counterpart oven.")
    assert len(exemplars("mmlu:anatomy")) == 5


def test_prompts():
    gsm = load_items("gsm8k", limit=1)[0]
    user, reply = build_prompt(gsm, "fs-cot")
    assert user.count("The answer is") == 8 and user.endswith(f"Q: {gsm.question}\nA:")
    assert "Natalia sold 48/2 = 24 clips in May." in user and reply == ""
    direct, _ = build_prompt(gsm, "direct")
    assert "= 24 clips" not in direct and "A: The answer is 72.\n\n" in direct
    assert build_prompt(gsm, "zs-cot") == (f"Q: {gsm.question}\nA:", " Let's think step by step.")
    second = answer_prompt(build_prompt(gsm, "zs-cot"), " 16 - 3 - 4 = 9. ", gsm)
    assert second[1] == (
        " Let's think step by step. 16 - 3 - 4 = 9.\nTherefore, the answer (arabic numerals) is"
    )

    date = load_items("bbh:date_understanding", limit=1)[0]
    assert answer_trigger(date) == "Therefore, among A through F, the answer is"
    user, reply = build_prompt(date, "fs-cot")
    assert user.startswith("Infer the date from context.\n\nQ: ")
    assert user.count("A: Let's think step by step.\n") == 3 and reply.strip() == (
        "Let's think step by step."
    )
    assert "BENCHMARK DATA" not in user  # the canary line is not part of the prompt
    assert build_prompt(date, "direct")[0].count("\nA: (") == 3

    mmlu = load_items("mmlu:anatomy", limit=1)[0]
    context, _ = build_prompt(mmlu, "direct")
    assert context.startswith("The following are multiple choice questions (with answers) about "
                              "anatomy.\n\n")
    assert context.count("\nAnswer:") == 6 and context.endswith("\nAnswer:")


def test_stop_strings():
    # A direct answer is one line, chat or not: a chat model that repeats "The answer is 16."
    # paragraph after paragraph is cut at the first blank line, not at max_new_tokens.
    assert "\n\n" in stop_strings("direct", chat=True)
    assert "\n\n" in stop_strings("fs-cot", chat=False)
    assert stop_strings("fs-cot", chat=True) == ("\nQ:",)
    assert "\n\n" not in stop_strings("zs-cot", chat=False)


def test_extract_dispatches_on_the_task():
    gsm, = load_items("gsm8k", limit=1)
    assert extract(gsm, "So she makes $18 a day. The answer is 18.") == "18"
    boolean, = load_items("bbh:boolean_expressions", limit=1)
    assert extract(boolean, "So the answer is False.") == "False"
    mmlu, = load_items("mmlu:anatomy", limit=1)
    assert extract(mmlu, "The answer is (C).") == "C"


def test_a_family_is_one_declaration(monkeypatch):
    from lmboost.reasoning import tasks as reasoning_tasks
    from lmboost.reasoning.tasks import FAMILIES, Exemplar, Family, ReasoningItem, register_family

    monkeypatch.setattr(reasoning_tasks, "FAMILIES", dict(FAMILIES))
    register_family(Family(
        name="toy", title="Toy", extractor="number", answer_format="number",
        load=lambda root, sub: (ReasoningItem(f"toy/{sub}:1", f"toy:{sub}", "2+2?", "4"),),
        exemplars=lambda root, sub: (Exemplar("1+1?", "One and one.", "2"),),
        query="Q: {question}\nA:",
        demos={"direct": "Q: {question}\nA: {answer}\n\n",
               "fs-cot": "Q: {question}\nA: {rationale} So {answer}.\n\n"},
        sub_tasks=("sums",), sub_label="toy set", sub_hint="set", header="[{subject}]\n",
    ))
    item, = load_items("toy")
    assert item.task == "toy:sums" and task_names("toy:sums") == ["toy:sums"]
    assert build_prompt(item, "fs-cot") == (
        "[sums]\nQ: 1+1?\nA: One and one. So 2.\n\nQ: 2+2?\nA:", ""
    )
    assert build_prompt(item, "zs-cot") == ("Q: 2+2?\nA:", " Let's think step by step.")
    assert extract(item, "so it is 4") == "4"
    assert answer_trigger(item) == "Therefore, the answer (arabic numerals) is"
    with pytest.raises(TaskError, match="Unknown toy set 'x'"):
        task_names("toy:x")
    with pytest.raises(TaskError, match="or toy, toy:<set>"):
        task_names("nope")
    with pytest.raises(TaskError, match="unknown extractor"):
        register_family(Family(name="bad", title="Bad", extractor="nope", answer_format="number",
                               load=lambda r, s: (), exemplars=lambda r, s: (), query="",
                               demos={}))


# --------------------------------------------------------------------------- runs end to end


def _check_record(results: dict, n_samples: int, early_stop: bool = False) -> None:
    items = results["items"]
    assert results["n_items"] == len(items) > 0
    correct = [item["correct"] for item in items]
    assert results["n_correct"] == sum(correct)
    assert results["accuracy"] == pytest.approx(sum(correct) / len(items))
    assert results["seconds_per_item"] > 0
    for item in items:
        assert set(item) >= ITEM_KEYS
        assert item["correct"] == (item["vote"] == item["target"])
        assert (item["vote"], item["share"]) == pytest.approx(majority_vote(item["answers"]))
        assert item["samples_used"] + item["samples_saved"] == n_samples
        assert len(item["answers"]) == item["samples_used"]
        if not early_stop:
            assert item["samples_saved"] == 0
    assert results["samples_used"] == sum(item["samples_used"] for item in items)


@pytest.mark.parametrize("task", ["gsm8k", "bbh:date_understanding", "mmlu:anatomy"])
@pytest.mark.parametrize("mode", ["direct", "zs-cot", "fs-cot"])
def test_run_each_task_and_mode(long_model_dir, tmp_path, task, mode):
    n = 1 if (task.startswith("mmlu") and mode == "direct") else 3
    config = _config(long_model_dir, tmp_path / "run", task=task, mode=mode, self_consistency=n)
    results = run_reasoning(config)
    _check_record(results, n)
    assert results["n_items"] == 2 and results["mode"] == mode
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    assert stored["items"] == results["items"] and stored["config"]["task"] == task
    item = results["items"][0]
    if task.startswith("mmlu") and mode == "direct":
        assert len(item["scores"]) == 4 and item["chains"] == []
    else:
        assert len(item["chains"]) == n
    if mode == "zs-cot":
        assert all(t.startswith("Therefore, ") for t in item["answer_texts"])
    lines = (tmp_path / "run" / "items.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_run_with_early_stop_on_the_tiny_model(long_model, tmp_path):
    config = _config(
        "tiny", tmp_path / "run", task="bbh:boolean_expressions", mode="direct",
        self_consistency=5, early_stop=True, temperature=0.1,
    )
    _check_record(run_reasoning(config, loaded=long_model), 5, early_stop=True)


def _fake_generate(answer_for, calls: list):
    """A stand-in for the backend's ``generate`` that answers from the prompt text and counts
    its calls."""

    def fake(backend, prompts, config=None, *, n=1, chat=None, batch_size=None):
        calls.append((len(prompts), n))
        return [[answer_for(prompt)] * n for prompt in prompts]

    return fake


def test_early_stop_saves_samples_and_scores_correctly(monkeypatch, long_model, tmp_path):
    calls: list = []
    monkeypatch.setattr(
        HFBackend, "generate", _fake_generate(lambda p: " She makes 9 * 2 = 18. The "
                                                  "answer is 18.", calls)
    )
    config = _config("tiny", tmp_path / "run", task="gsm8k", limit=1, self_consistency=5,
                     early_stop=True)
    results = run_reasoning(config, loaded=long_model)
    item, = results["items"]
    assert calls == [(1, 3)]  # ceil(5/2) agreeing samples decide the vote at once
    assert (item["vote"], item["share"], item["correct"]) == ("18", 1.0, True)
    assert (item["samples_used"], item["samples_saved"]) == (3, 2)
    assert results["accuracy"] == 1.0 and results["samples_saved"] == 2


def test_resume_skips_finished_items(monkeypatch, long_model, tmp_path):
    calls: list = []
    monkeypatch.setattr(HFBackend, "generate", _fake_generate(lambda p: " (A)", calls))
    out = tmp_path / "run"
    config = _config("tiny", out, task="bbh:date_understanding", mode="direct", batch_size=1)
    first = run_reasoning(config, loaded=long_model)
    assert len(calls) == 2 and first["n_items"] == 2

    calls.clear()
    monkeypatch.setattr("lmboost.evaluation.store.load_backend",
                        lambda *a, **k: pytest.fail("loaded"))
    again = run_reasoning(config, loaded=long_model)  # everything done: no generation
    assert calls == [] and again["items"] == first["items"]

    # A crash in the middle of writing a line leaves a partial last line: dropped on resume.
    log = out / "items.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + lines[1][:25])
    calls.clear()
    with pytest.warns(UserWarning, match="dropped its last line, a record cut short"):
        resumed = run_reasoning(config, loaded=long_model)
    assert calls == [(1, 1)] and resumed["n_items"] == 2
    assert [i["uid"] for i in resumed["items"]] == [i["uid"] for i in first["items"]]
    assert log.read_bytes().count(b"\n") == 2 and all(
        json.loads(line) for line in log.read_bytes().splitlines()
    )

    # A larger limit extends the run by the new items only.
    calls.clear()
    extended = run_reasoning(_config("tiny", out, task="bbh:date_understanding", mode="direct",
                                     batch_size=1, limit=3), loaded=long_model)
    assert calls == [(1, 1)] and extended["n_items"] == 3


def test_corrupt_line_and_changed_settings_are_errors(monkeypatch, long_model, tmp_path):
    monkeypatch.setattr(HFBackend, "generate", _fake_generate(lambda p: " (A)", []))
    out = tmp_path / "run"
    config = _config("tiny", out, task="bbh:date_understanding", mode="direct")
    run_reasoning(config, loaded=long_model)
    with pytest.raises(LmboostError, match="other settings.*mode: 'direct' -> 'fs-cot'"):
        run_reasoning(_config("tiny", out, task="bbh:date_understanding", mode="fs-cot"),
                      loaded=long_model)
    log = out / "items.jsonl"
    log.write_text("not json\n" + log.read_text())
    with pytest.raises(LmboostError, match="line 1 is not an item record"):
        run_reasoning(config, loaded=long_model)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "cot"}, "Unknown mode 'cot'"),
        ({"self_consistency": 0}, "self_consistency must be at least 1"),
        ({"limit": 0}, "limit must be at least 1"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"self_consistency": 3, "temperature": 0.0}, "temperature"),
        ({"task": "mmlu:anatomy", "mode": "direct", "self_consistency": 3}, "self-consistency"),
        ({"task": "bbh:nope"}, "Unknown BBH task"),
        ({"dtype": "int8"}, "Unknown dtype"),
    ],
)
def test_bad_settings(tmp_path, settings, message):
    config = _config("tiny", tmp_path / "run", **({"task": "gsm8k"} | settings))
    with pytest.raises(LmboostError, match=message):
        run_reasoning(config)


def test_cli(long_model_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main([
        "reason", "--model", long_model_dir, "--task", "bbh:sports_understanding",
        "--mode", "direct", "--limit", "2", "--max-new-tokens", "4", "--out", str(out),
    ])
    assert code == 0
    assert "accuracy" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["n_items"] == 2 and results["config"]["chat"] is None

    assert main(["reason", "--task", "bbh:nope", "--out", str(out)]) == 2
    assert "Unknown BBH task 'nope'" in capsys.readouterr().err
