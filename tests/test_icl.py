"""The ICL + calibration runner on the tiny random model and a tiny CSV task."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from lmboost.calibration import DEFAULT_METHODS
from lmboost.calibration.domain import domain_context_strings
from lmboost.errors import LmboostError
from lmboost.evaluation.records import (
    RunTimer,
    atomic_file,
    load_arrays,
    read_json,
    save_arrays,
    write_json,
)
from lmboost.evaluation.report import write_report
from lmboost.generation import GenerationConfig
from lmboost.icl import (
    CONTENT_FREE_INPUTS,
    ICLConfig,
    ScoreSet,
    build_contexts,
    build_prefix,
    content_free_example,
    run_icl,
    score_run,
    select_demonstrations,
)
from lmboost.icl.posthoc import calibrate_run
from lmboost.icl.prompts import pseudo_context, pseudo_input_prompt
from lmboost.scoring import Scorer
from lmboost.tasks import ClassificationTask, Example, get_task, register_task

TEMPLATE = "Review: {text}\\nSentiment:"
POSITIVE = ["a great movie", "great", "a great film", "great and long"]
NEGATIVE = ["boring", "far too long", "too boring", "boring and long"]


def _write_task(folder: Path, template: str = TEMPLATE) -> Path:
    """A two-class CSV task: 12 eval rows, a pool of 60, declared in a YAML file."""
    folder.mkdir(parents=True, exist_ok=True)

    def rows(n: int, start: int) -> str:
        lines = ["text,label"]
        for i in range(start, start + n):
            words, label = (POSITIVE, "pos") if i % 2 else (NEGATIVE, "neg")
            lines.append(f"{words[i % 4]} {i},{label}")
        return "\n".join(lines) + "\n"

    (folder / "eval.csv").write_text(rows(12, 0))
    (folder / "pool.csv").write_text(rows(60, 100))
    spec = folder / "task.yaml"
    spec.write_text(
        f'name: tiny-reviews\npath: eval.csv\npool: pool.csv\ntemplate: "{template}"\n'
        "label_words: {neg: negative, pos: positive}\n"
    )
    return spec


def _config(tiny_model_dir: str, task: Path, out: Path, **changes) -> ICLConfig:
    base = ICLConfig(
        model=tiny_model_dir,
        task=str(task),
        out=out,
        shots=[0, 2],
        seeds=2,
        labelled_size=8,
        n_domain=4,
        batch_size=8,
    )
    return replace(base, **changes)



@pytest.fixture(scope="module")
def first_run(tiny_model_dir, tmp_path_factory):
    """One full run (every method) whose output folder the tests read or copy."""
    root = tmp_path_factory.mktemp("icl")
    spec = _write_task(root / "task")
    config = _config(tiny_model_dir, spec, root / "out")
    return config, run_icl(config, progress=False)


def _copy_out(config: ICLConfig, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(config.out, out)
    return out


def _no_model(*args, **kwargs):
    raise AssertionError("the model must not be loaded: every ScoreSet is cached")


# --------------------------------------------------------------------------- scores


def test_stored_scores_equal_hand_built_contexts(first_run, tiny_model):
    config, _ = first_run
    task = get_task(config.task)
    eval_examples, pool = task.load_eval(), task.load_pool()
    stored = ScoreSet.load(Path(config.out) / "scores" / "shots2-seed1.npz")

    # The labelled set is held out of the pool; demonstrations come from the rest.
    labelled = [ex for ex in pool if ex.uid in set(stored.labelled_uids)]
    rest = [ex for ex in pool if ex.uid not in set(stored.labelled_uids)]
    assert len(labelled) == 8 and sorted(ex.label for ex in labelled) == [0] * 4 + [1] * 4
    demos = select_demonstrations(rest, 2, 1)
    assert [d.uid for d in demos] == stored.demo_uids

    scorer = Scorer(tiny_model, batch_size=4)
    prefix = build_prefix(task, demos)
    options = task.answer_options(eval_examples[0])

    def by_hand(examples):
        return scorer.score_choices(build_contexts(task, prefix, examples), options)

    np.testing.assert_allclose(stored.eval, by_hand(eval_examples), atol=1e-5, rtol=0)
    cf = [content_free_example(eval_examples[0], t) for t in CONTENT_FREE_INPUTS]
    np.testing.assert_allclose(stored.content_free, by_hand(cf), atol=1e-5, rtol=0)
    texts = [ex.fields["text"] for ex in eval_examples]
    assert stored.domain_strings == domain_context_strings(texts, n=4, seed=1)
    domain = [content_free_example(eval_examples[0], s) for s in stored.domain_strings]
    np.testing.assert_allclose(stored.domain, by_hand(domain), atol=1e-5, rtol=0)
    np.testing.assert_allclose(stored.labelled, by_hand(labelled), atol=1e-5, rtol=0)
    assert stored.labelled_labels.tolist() == [ex.label for ex in labelled]


def test_zero_shot_prefix_is_the_instruction_only(tiny_model, tmp_path):
    spec = _write_task(tmp_path / "task")
    task = get_task(str(spec))
    task.instruction = "Classify the review."
    eval_examples, pool = task.load_eval(), task.load_pool()
    config = _config("unused", spec, tmp_path / "out", shots=[0], labelled_size=0)
    scores = score_run(Scorer(tiny_model), task, eval_examples, pool, 0, 0, config)
    contexts = build_contexts(task, "Classify the review.\n\n", eval_examples)
    expected = Scorer(tiny_model).score_choices(contexts, task.answer_options(eval_examples[0]))
    np.testing.assert_allclose(scores.eval, expected, atol=1e-5, rtol=0)
    assert scores.demo_uids == [] and scores.labelled.shape == (0, 2)


# --------------------------------------------------------------------------- cache


def test_rerun_with_other_calibrators_needs_no_model(first_run, tmp_path, monkeypatch):
    config, first = first_run
    out = _copy_out(config, tmp_path)
    monkeypatch.setattr("lmboost.evaluation.store.load_backend", _no_model)
    results = run_icl(replace(config, out=out, calibration=["bc", "pc"]), progress=False)
    assert all(run["scores_from_cache"] for run in results["runs"])
    assert list(results["methods"]) == ["bc", "pc"]
    for new, old in zip(results["runs"], first["runs"]):
        assert new["scores"] == old["scores"]
        assert new["metrics"]["bc"] == old["metrics"]["bc"]


def test_changed_demonstrations_or_template_are_refused_or_rescored_on_restart(
    first_run, tmp_path, monkeypatch
):
    config, first = first_run
    out = _copy_out(config, tmp_path)
    with pytest.raises(LmboostError, match="other settings \\(demo_strategy: 'random' -> "
                       "'balanced'\\).*--restart"):
        run_icl(replace(config, out=out, demo_strategy="balanced"), progress=False)
    assert read_json(out / "results.json") == first  # refused: nothing changed

    balanced = run_icl(replace(config, out=out, demo_strategy="balanced", restart=True),
                       progress=False)
    (aside,) = tmp_path.glob("out.old-*")
    assert read_json(aside / "results.json") == first  # the earlier run, moved aside whole
    assert len(list((aside / "scores").glob("*.npz"))) == 4
    rescored = 0
    for new, old in zip(balanced["runs"], first["runs"]):
        same_demos = new["demo_uids"] == old["demo_uids"]
        assert not new["scores_from_cache"]
        assert (new["fingerprint"] == old["fingerprint"]) == same_demos
        rescored += not same_demos
    assert rescored >= 1  # the 0-shot prompts are the same, some 2-shot ones are not

    spec = _write_task(tmp_path / "task2", template="Text: {text}\\nSentiment:")
    with pytest.raises(LmboostError, match="template: 'Review: \\{text\\}"):
        run_icl(replace(config, out=out, task=str(spec)), progress=False)
    templated = run_icl(replace(config, out=out, task=str(spec), restart=True), progress=False)
    assert not any(run["scores_from_cache"] for run in templated["runs"])

    monkeypatch.setattr("lmboost.evaluation.store.load_backend", _no_model)
    again = run_icl(replace(config, out=out, task=str(spec)), progress=False)
    assert all(run["scores_from_cache"] for run in again["runs"])


# --------------------------------------------------------------------------- records


def test_results_hold_per_seed_metrics_and_summary(first_run):
    config, results = first_run
    stored = read_json(Path(config.out) / "results.json")
    assert stored == results
    assert stored["eval"]["n"] == 12 and stored["eval"]["sample"] is None
    assert len(stored["eval"]["uids"]) == 12 and len(stored["eval"]["labels"]) == 12
    assert [(r["shots"], r["seed"]) for r in stored["runs"]] == [(0, 0), (0, 1), (2, 0), (2, 1)]
    for run in stored["runs"]:
        assert np.array(run["scores"]["eval"]).shape == (12, 2)
        assert np.array(run["scores"]["content_free"]).shape == (3, 2)
        assert np.array(run["scores"]["domain"]).shape == (4, 2)
        assert set(run["metrics"]) == set(DEFAULT_METHODS)
        for metrics in run["metrics"].values():
            assert metrics["status"] == "ok"
            assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["ece"] <= 1
            assert abs(sum(metrics["label_distribution"]) - 1) < 1e-9
        assert isinstance(run["metrics"]["bcl"]["gamma"], float)
    rows = {(r["method"], r["shots"]): r for r in stored["summary"]}
    assert set(rows) == {(m, k) for m in DEFAULT_METHODS for k in (0, 2)}
    accs = [run["metrics"]["bc"]["accuracy"] for run in stored["runs"] if run["shots"] == 2]
    assert rows[("bc", 2)]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert rows[("bc", 2)]["accuracy"]["std"] == pytest.approx(np.std(accs))
    assert rows[("bcl", 0)]["gamma"] == [r["metrics"]["bcl"]["gamma"] for r in stored["runs"][:2]]


def test_report_and_plots_are_written(first_run):
    config, _ = first_run
    out = Path(config.out)
    report = (out / "report.md").read_text()
    assert "tiny-reviews" in report and "| bcl |" in report
    assert "![accuracy by method and shots](accuracy.png)" in report
    assert "(reliability.png)" in report and "gamma" in report
    for png in ("accuracy.png", "reliability.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.rglob("*.tmp"))


def test_limit_takes_a_recorded_stratified_sample(first_run, tmp_path, tiny_model_dir):
    config, _ = first_run
    limited = replace(config, out=tmp_path / "out", limit=6, shots=[0], seeds=1,
                      calibration=["none"])
    results = run_icl(limited, progress=False)
    assert results["eval"]["n"] == 6 and results["eval"]["total"] == 12
    assert "sample" in results["eval"]["sample"]
    assert sorted(results["eval"]["labels"]) == [0, 0, 0, 1, 1, 1]
    assert "sample" in (tmp_path / "out" / "report.md").read_text()


def test_per_example_choices_cc_dc_gc_not_applicable_pmi_per_premise(
    tiny_model_dir, tiny_model, tmp_path
):
    def examples(n: int, start: int) -> list[Example]:
        return [
            Example({"text": f"great {i}", "connector": ("so", "because")[i % 2]}, i % 2,
                    (f"movie {i % 3}", "film"), uid=f"copa:{i}")
            for i in range(start, start + n)
        ]

    task = ClassificationTask(
        name="tiny-choices",
        labels=["0", "1"],
        verbalizer=["first", "second"],
        template="Review: {text} {connector}",
        eval_split="6 made-up rows",
        eval_loader=lambda: examples(6, 0),
        pool_loader=lambda: examples(10, 100),
        per_example_choices=True,
        domain_premise="{connector}",
    )
    register_task(task, overwrite=True)
    methods = [*DEFAULT_METHODS, "pmi", "gc", "hidden"]
    config = ICLConfig(model=tiny_model_dir, task="tiny-choices", out=tmp_path / "out",
                       shots=[1], seeds=1, labelled_size=4, calibration=methods)
    results = run_icl(config, progress=False)
    (run,) = results["runs"]
    metrics = run["metrics"]
    assert metrics["cc"]["status"] == metrics["dc"]["status"] == metrics["gc"]["status"] == "n/a"
    assert "answer options" in metrics["cc"]["reason"]
    assert "sampled pseudo-input has no options" in metrics["gc"]["reason"]
    assert all(metrics[m]["status"] == "ok" for m in ("none", "pc", "bc", "bcl", "pmi", "hidden"))
    assert run["scores"]["content_free"] is None and run["computed"] == [
        "scores", "premise", "hidden",
    ]
    assert "Not applicable" in (tmp_path / "out" / "report.md").read_text()
    # PMI's premise: each example's own connector after the prefix, its own choices scored.
    assert run["premise_texts"] == ["so", "because"]
    eval_examples, pool = task.load_eval(), task.load_pool()
    prefix = build_prefix(task, [ex for ex in pool if ex.uid in run["demo_uids"]])
    by_hand = Scorer(tiny_model).score_choices(
        [prefix + ex.fields["connector"] for ex in eval_examples],
        [task.answer_options(ex) for ex in eval_examples],
    )
    np.testing.assert_allclose(run["scores"]["premise"], by_hand, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- model-output methods

NEW_METHODS = ["hidden", "knn", "pmi", "gc"]
PARTS = ["hidden", "next_token", "premise", "generated"]
OLD_KEYS = {"shots", "seed", "fingerprint", "eval", "labelled", "labelled_labels", "demo_uids",
            "labelled_uids", "domain_strings", "content_free", "domain"}


def test_hidden_knn_pmi_gc_store_their_outputs_and_reuse_them(
    tiny_model_dir, tiny_model, tmp_path, monkeypatch
):
    spec = _write_task(tmp_path / "task")
    out = tmp_path / "out"
    config = _config(tiny_model_dir, spec, out, shots=[0, 1], seeds=1, n_gc=3,
                     calibration=["none", "bc"])
    first = run_icl(config, progress=False)
    path = out / "scores" / "shots1-seed0.npz"
    assert set(load_arrays(path)) == OLD_KEYS  # label scores only: the earlier format
    shutil.copytree(out, tmp_path / "before")

    methods = ["none", *NEW_METHODS]
    second = run_icl(replace(config, calibration=methods), progress=False)
    for new, old in zip(second["runs"], first["runs"]):
        assert new["scores_from_cache"] and new["computed"] == PARTS
        assert new["fingerprint"] == old["fingerprint"]
        assert new["scores"]["eval"] == old["scores"]["eval"]
        assert all(new["metrics"][m]["status"] == "ok" for m in methods)
        assert new["metrics"]["hidden"]["n_labelled"] == new["metrics"]["knn"]["n_labelled"] == 8
        assert new["premise_texts"] == ["Sentiment:"] and len(new["generated_inputs"]) == 3

    # The stored parts are what the model gives on the hand-built prompts.
    task = get_task(str(spec))
    eval_examples, pool = task.load_eval(), task.load_pool()
    stored = ScoreSet.load(path)
    labelled = [ex for ex in pool if ex.uid in set(stored.labelled_uids)]
    prefix = build_prefix(task, [ex for ex in pool if ex.uid in stored.demo_uids])
    scorer = Scorer(tiny_model)
    states = scorer.prompt_states(build_contexts(task, prefix, eval_examples + labelled))
    np.testing.assert_allclose(np.concatenate([stored.hidden_eval, stored.hidden_labelled]),
                               states.hidden.numpy(), atol=1e-5, rtol=0)
    assert stored.next_token_eval.dtype == np.float16
    np.testing.assert_allclose(
        np.concatenate([stored.next_token_eval, stored.next_token_labelled]).astype(np.float32),
        states.logprobs.numpy(), atol=0.05, rtol=2e-3,
    )
    options = task.answer_options(eval_examples[0])
    premise = scorer.score_choices([prefix + "Sentiment:"] * 12, options)
    np.testing.assert_allclose(stored.premise, premise, atol=1e-5, rtol=0)
    prompt = pseudo_input_prompt(task, prefix)
    assert prompt == prefix + "Review:"
    sampling = GenerationConfig(max_new_tokens=max(
        len(tiny_model.tokenizer(task.render(ex), add_special_tokens=False)["input_ids"])
        for ex in eval_examples), do_sample=True, stop=("Sentiment:", "\n\n"), seed=0)
    (samples,) = scorer.generate([prompt], sampling, n=3, chat=False)
    assert stored.generated_inputs == samples
    generated = scorer.score_choices([pseudo_context(task, prefix, t) for t in samples], options)
    np.testing.assert_allclose(stored.generated, generated, atol=1e-5, rtol=0)

    # Rerun: everything is stored, no model is loaded, the same metrics come back.
    monkeypatch.setattr("lmboost.evaluation.store.load_backend", _no_model)
    third = run_icl(replace(config, calibration=methods), progress=False)
    assert [run["computed"] for run in third["runs"]] == [[], []]
    assert [r["metrics"] for r in third["runs"]] == [r["metrics"] for r in second["runs"]]
    assert calibrate_run(out, ["knn", "gc"])["summary"][0]["status"] == "ok"
    # GC's samples depend on n_gc: a new count is a new part, and needs the model.
    with pytest.raises(AssertionError, match="must not be loaded"):
        run_icl(replace(config, calibration=["gc"], n_gc=2), progress=False)
    # lmboost calibrate on the folder from before says which outputs the file lacks.
    with pytest.raises(LmboostError, match="lacks model outputs: knn needs the next-token "
                       "distributions.*pmi needs the choice scores.*--calibration none,knn,pmi"):
        calibrate_run(tmp_path / "before", ["none", "knn", "pmi"])


def test_gc_with_nothing_to_sample_after_is_not_applicable(tiny_model_dir, tmp_path):
    spec = _write_task(tmp_path / "task", template="{text}\\nSentiment:")
    config = _config(tiny_model_dir, spec, tmp_path / "out", shots=[0], seeds=1,
                     labelled_size=0, calibration=["gc", "pmi", "hidden"])
    (run,) = run_icl(config, progress=False)["runs"]
    assert run["metrics"]["gc"] == {
        "status": "n/a",
        "reason": "not applicable: nothing to sample pseudo-inputs after (no instruction, no "
        "demonstrations, and the template starts with an input field)",
    }
    assert "no labelled set" in run["metrics"]["hidden"]["reason"]
    assert run["metrics"]["pmi"]["status"] == "ok"
    assert run["computed"] == ["scores", "generated", "premise"]  # in the order of the methods
    assert run["generated_inputs"] == [] and run["scores"]["generated"] == []


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"calibration": ["none", "platt"]}, "known methods: none, cc, dc, pc, bc, bcl"),
        ({"shots": []}, "shots is empty"),
        ({"shots": [0, -1]}, "non-negative"),
        ({"shots": [0, 0]}, "twice"),
        ({"seeds": 0}, "seeds"),
        ({"demo_strategy": "nearest"}, "random, balanced"),
        ({"shots": [61]}, "pool holds 60 examples: lower shots"),
    ],
)
def test_bad_input_is_a_clear_error(first_run, tmp_path, monkeypatch, changes, message):
    config, _ = first_run
    monkeypatch.setattr("lmboost.evaluation.store.load_backend", _no_model)
    with pytest.raises(LmboostError, match=message):
        run_icl(replace(config, out=tmp_path / "out", **changes), progress=False)
    assert not (tmp_path / "out").exists()


def test_labelled_set_shrinks_to_leave_demonstrations(first_run, tmp_path):
    config, _ = first_run
    with pytest.warns(UserWarning, match="shrinks from 8 to 3"):
        results = run_icl(
            replace(config, out=tmp_path / "out", shots=[57], seeds=1, truncation="left"),
            progress=False,
        )
    (run,) = results["runs"]
    assert len(run["labelled_uids"]) == 3 and len(run["demo_uids"]) == 57
    assert not set(run["labelled_uids"]) & set(run["demo_uids"])


def test_unknown_task_uses_the_registry_error(tmp_path):
    with pytest.raises(LmboostError, match="Unknown task 'sst-3'"):
        run_icl(ICLConfig(task="sst-3", out=tmp_path), progress=False)


# --------------------------------------------------------------------------- CLI


def test_cli_runs_end_to_end(tiny_model_dir, tmp_path, capsys):
    from lmboost.cli import main

    spec = _write_task(tmp_path / "task")
    out = tmp_path / "out"
    argv = ["icl", "--model", tiny_model_dir, "--task", str(spec), "--shots", "0,1",
            "--seeds", "1", "--calibration", "none,BC,gc", "--labelled-size", "4",
            "--n-domain", "3", "--n-gc", "2", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| bc |" in printed and "| gc |" in printed
    assert f"report: {out / 'report.md'}" in printed
    results = read_json(out / "results.json")
    assert results["config"]["calibration"] == ["none", "bc", "gc"]
    assert results["config"]["n_gc"] == 2
    assert [len(run["generated_inputs"]) for run in results["runs"]] == [2, 2]
    assert "- gc: 2 pseudo-inputs sampled per prompt" in (out / "report.md").read_text()


def test_cli_bc_on_a_users_csv_in_one_command(tiny_model_dir, tmp_path, capsys):
    from lmboost.cli import main

    data = _write_task(tmp_path / "task").parent / "pool.csv"
    out = tmp_path / "out"
    argv = ["icl", "--model", tiny_model_dir, "--task", str(data),
            "--template", "Review: {text}\\nSentiment:",
            "--label-words", "neg=negative,pos=positive",
            "--pool-size", "20", "--shots", "2", "--seeds", "1", "--calibration", "none,bc",
            "--out", str(out)]
    assert main(argv) == 0
    results = read_json(out / "results.json")
    assert results["task"]["name"] == "pool"
    assert results["task"]["template"] == "Review: {text}\nSentiment:"
    assert results["eval"]["n"] == 40 and results["pool_size"] == 20
    assert results["summary"][1]["method"] == "bc" and results["summary"][1]["status"] == "ok"
    assert "| bc |" in capsys.readouterr().out


def test_cli_data_file_needs_template_and_words(tmp_path, capsys):
    from lmboost.cli import main

    data = _write_task(tmp_path / "task").parent / "eval.csv"
    assert main(["icl", "--task", str(data), "--out", str(tmp_path / "out")]) == 2
    assert "also give --template" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--calibration", "none,foo", "known methods: none, cc, dc, pc, bc, bcl"),
        ("--shots", "0,x", "comma-separated integers"),
        ("--shots", "0,,1", "without empty items"),
        ("--shots", "0,-4", "non-negative"),
        ("--shots", "500", "pool holds 60"),
    ],
)
def test_cli_bad_input_returns_2(tmp_path, capsys, flag, value, message):
    from lmboost.cli import main

    spec = _write_task(tmp_path / "task")
    argv = ["icl", "--task", str(spec), "--out", str(tmp_path / "out"), f"{flag}={value}"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- atomic writes


def test_atomic_writes_leave_old_file_or_new_file(tmp_path):
    path = tmp_path / "r" / "results.json"
    write_json(path, {"acc": np.float64(0.5), "bins": np.array([np.nan, 1.0]), "p": tmp_path})
    assert json.loads(path.read_text()) == {"acc": 0.5, "bins": [None, 1.0], "p": str(tmp_path)}
    with pytest.raises(RuntimeError), atomic_file(path, "w") as f:
        f.write('{"half": ')
        raise RuntimeError("interrupted")
    assert read_json(path)["acc"] == 0.5
    save_arrays(tmp_path / "r" / "s.npz", x=np.eye(2), names=np.array(["a", "b"]))
    arrays = load_arrays(tmp_path / "r" / "s.npz")
    assert arrays["names"].tolist() == ["a", "b"] and arrays["x"].shape == (2, 2)
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json", "s.npz"]


def test_run_timer_fields_are_utc_iso_times_and_seconds():
    timer = RunTimer()
    fields = timer.fields()
    started = datetime.fromisoformat(fields["started"])
    assert started.utcoffset() == timedelta(0) and fields["started"] == started.isoformat()
    assert fields["started"] <= fields["finished"] and 0 <= fields["wall_time_s"] < 5


# --------------------------------------------------------------------------- report details


def test_zero_shot_cells_say_the_seeds_repeat_one_measurement(first_run):
    config, results = first_run
    rows = {(r["method"], r["shots"]): r for r in results["summary"]}
    # At 0 shots every seed has the same prompt: none/cc/pc/bc see the same scores; DC's domain
    # strings and the labelled set of BCL/LinC still change with the seed.
    assert all(rows[(m, 0)]["same_every_seed"] for m in ("none", "cc", "pc", "bc"))
    assert not any(rows[(m, 0)]["same_every_seed"] for m in ("dc", "bcl", "linc"))
    assert not any(rows[(m, 2)]["same_every_seed"] for m in DEFAULT_METHODS)
    report = (Path(config.out) / "report.md").read_text()
    none_row = next(line for line in report.splitlines() if line.startswith("| none |"))
    zero, two = none_row.strip("|").split("|")[1:3]
    assert "±" not in zero and "±" in two
    assert "Cells without ± (none, cc, pc, bc at 0 shots) are one value" in report


def test_report_names_labels_by_their_words_and_the_labelled_budget(first_run, tmp_path):
    config, results = first_run
    report = (Path(config.out) / "report.md").read_text()
    assert "labels neg = 'negative', pos = 'positive'" in report
    assert "| shots | method | negative | positive |" in report
    assert "- labelled examples spent per fit: bcl 8, linc 8" in report
    assert results["summary"][-1]["n_labelled"] == [8, 8]
    # Integer labels (a CSV holding 0/1) show their words too.
    numeric = {**results, "task": {**results["task"], "labels": ["0", "1"]}}
    text = write_report(numeric, tmp_path).read_text()
    assert "| shots | method | negative | positive |" in text
    assert "labels 0 = 'negative', 1 = 'positive'" in text


# --------------------------------------------------------------------------- lmboost calibrate


def test_calibrate_a_run_folder_equals_an_icl_rerun(first_run, tmp_path, monkeypatch):
    config, _ = first_run
    monkeypatch.setattr("lmboost.evaluation.store.load_backend", _no_model)
    methods = ["none", "bc", "linc"]
    rerun = run_icl(replace(config, out=_copy_out(config, tmp_path), calibration=methods),
                    progress=False)
    recalibrated = calibrate_run(config.out, methods, out=tmp_path / "posthoc")
    assert recalibrated["source"] == {"kind": "stored scores", "path": str(config.out)}
    for key in ("summary", "methods", "eval", "task", "model"):
        assert recalibrated[key] == rerun[key]
    assert [r["metrics"] for r in recalibrated["runs"]] == [r["metrics"] for r in rerun["runs"]]
    assert "stored in" in (tmp_path / "posthoc" / "report.md").read_text()
    # The new folder holds the scores too, so it can be recalibrated in turn, here in place.
    again = calibrate_run(tmp_path / "posthoc", ["pc"])
    assert again["summary"][0]["method"] == "pc"
    assert read_json(tmp_path / "posthoc" / "results.json")["config"]["calibration"] == ["pc"]


def test_calibrate_cli_on_a_run_folder_and_its_errors(first_run, tmp_path, capsys):
    from lmboost.cli import main

    config, _ = first_run
    out = _copy_out(config, tmp_path)
    assert main(["calibrate", str(out), "--calibration", "none,BC"]) == 0
    printed = capsys.readouterr().out
    assert "| bc |" in printed and f"report: {out / 'report.md'}" in printed
    assert read_json(out / "results.json")["config"]["calibration"] == ["none", "bc"]

    shutil.copyfile(out / "scores" / "shots2-seed0.npz", out / "scores" / "shots2-seed1.npz")
    assert main(["calibrate", str(out), "--calibration", "bc"]) == 2
    assert "fingerprints differ" in capsys.readouterr().err
    (out / "results.json").unlink()
    assert main(["calibrate", str(out), "--calibration", "bc"]) == 2
    assert "--out DIR" in capsys.readouterr().err  # no results.json: not a run folder
    with pytest.raises(LmboostError, match="not an lmboost icl run folder"):
        calibrate_run(out, ["bc"])
    assert main(["calibrate", str(tmp_path / "nothing"), "--calibration", "bc"]) == 2
    assert "does not exist" in capsys.readouterr().err
