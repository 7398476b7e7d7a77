"""lmboost.instruct: templates rendered exactly, held-out groups, deterministic sampling, caps and
rates, stats, clear errors, the CLI, and a tiny-model SFT run on a built mixture."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from lmboost.cli import main
from lmboost.errors import DataNotFoundError, TaskError
from lmboost.instruct import (
    COT_TEMPLATES,
    HELD_OUT_GROUPS,
    TASK_TEMPLATES,
    MixtureConfig,
    MixtureError,
    allocate,
    build_mixture,
    config_from_dict,
    cot_completion,
    few_shot_prompt,
    get_source,
    list_sources,
    load_mixture_config,
    mixture_stats,
    options_block,
    write_mixture,
)
from lmboost.instruct.sources import read_flan_cot
from lmboost.training import load_recipe, run_training

REPO = Path(__file__).resolve().parents[1]
COT_YAML = REPO / "recipes" / "mixture-flan-cot.yaml"
NOCOT_YAML = REPO / "recipes" / "mixture-flan-nocot.yaml"


def _config(**values) -> MixtureConfig:
    base = {"sources": ["sst2", "trec", "rte", "cb", "cot:strategyqa"], "size": 40, "seed": 0}
    return config_from_dict({**base, **values})


# --------------------------------------------------------------------------- templates


def test_classification_template_with_and_without_options():
    template = TASK_TEMPLATES["sst2"].templates[0]
    fields = {"sentence": "a delight"}
    assert template.render(fields) == (
        "Review: a delight\nIs this movie review positive or negative?\nAnswer:"
    )
    assert template.render(fields, ["negative", "positive"]) == (
        "Review: a delight\nIs this movie review positive or negative?\n"
        "OPTIONS:\n- negative\n- positive\nAnswer:"
    )
    assert options_block(["yes", "no", "it is not possible to tell"]) == (
        "OPTIONS:\n- yes\n- no\n- it is not possible to tell"
    )
    nli = TASK_TEMPLATES["rte"].templates[1]
    assert nli.render({"premise": "It rains.", "hypothesis": "It is wet."}, ["yes", "no"]) == (
        "Premise: It rains.\nHypothesis: It is wet.\nDoes the premise entail the hypothesis?\n"
        "OPTIONS:\n- yes\n- no\nAnswer:"
    )


def test_cot_template_puts_the_rationale_before_the_answer():
    assert COT_TEMPLATES[0].render({"question": "What is 2 + 3?"}) == (
        "Q: What is 2 + 3?\nA: Let's think step by step."
    )
    assert cot_completion("2 plus 3 makes 5", "5") == " 2 plus 3 makes 5. So the answer is 5."
    assert cot_completion(" Yes, it can.\n", "yes.") == " Yes, it can. So the answer is yes."
    assert few_shot_prompt([("Q: a\nA:", " 1"), ("Q: b\nA:", " 2")], "Q: c\nA:") == (
        "Q: a\nA: 1\n\nQ: b\nA: 2\n\nQ: c\nA:"
    )


def test_every_template_renders_real_data_and_has_an_options_slot():
    for name, spec in TASK_TEMPLATES.items():
        item = get_source(name).load()[0]
        assert len(item.options) >= 2 and item.answer in item.options, name
        for template in spec.templates:
            assert "options" in template.fields, template.name
            with_options = template.render(item.fields, item.options)
            without = template.render(item.fields)
            assert "\nOPTIONS:\n" in with_options and "OPTIONS" not in without, template.name
            assert with_options.endswith("\nAnswer:") and without.endswith("\nAnswer:")
    distinct = {id(t): t for spec in TASK_TEMPLATES.values() for t in spec.templates}
    names = [t.name for t in [*distinct.values(), *COT_TEMPLATES]]
    assert len(set(names)) == len(names)  # shared families (NLI) keep one name per template


def test_every_source_is_in_exactly_one_group():
    members = Counter(s for group in HELD_OUT_GROUPS.values() for s in group)
    assert set(members) == set(list_sources())
    assert set(members.values()) == {1}
    assert {"rte", "cb", "anli-r1", "anli-r2", "anli-r3", "qnli", "mnli-100"} == set(
        HELD_OUT_GROUPS["nli"]
    )


def test_flan_cot_rows_are_read_with_real_newlines():
    items = read_flan_cot("aqua")
    assert len(items) == 2728
    first = items[0]
    assert first.answer == "(C)" and first.uid == "flan_cot/aqua_train.tsv:1"
    assert "\nOptions:\n(A) 300\n" in first.fields["question"] and "\\n" not in first.rationale
    gsm8k = get_source("gsm8k-train").load()[0]
    assert gsm8k.answer == "72" and "<<" not in gsm8k.rationale
    assert gsm8k.rationale.startswith("Natalia sold 48/2 = 24 clips in May.")


# --------------------------------------------------------------------------- mixtures


def test_records_render_formats_options_and_cot():
    records = build_mixture(_config(size=120, few_shot_fraction=0.5, options_fraction=0.5))
    assert {r["source"] for r in records} == {"sst2", "trec", "rte", "cb", "cot:strategyqa"}
    for r in records:
        assert set(r) == {"prompt", "completion", "source", "template", "format", "uid"}
        assert r["completion"].startswith(" ") and not r["completion"].startswith("  ")
        if r["source"] == "cot:strategyqa":
            assert r["format"] in ("cot", "cot-fs") and r["template"].startswith("cot-")
            assert r["completion"].endswith((" So the answer is yes.", " So the answer is no."))
            assert len(r["completion"]) > len(" So the answer is yes.")  # rationale first
            query = r["prompt"].split("\n\n")[-1] if r["format"] == "cot-fs" else r["prompt"]
            assert "So the answer is" not in query
        else:
            assert r["prompt"].endswith("\nAnswer:")
            assert ("\nOPTIONS:\n" in r["prompt"]) == r["format"].endswith("-opt")
    formats = Counter(r["format"] for r in records)
    assert {"zs", "zs-opt", "fs", "fs-opt", "cot", "cot-fs"} <= set(formats)
    few_shot = next(r for r in records if r["format"] == "fs")
    assert few_shot["prompt"].count("\nAnswer:") == 3  # two solved examples, then the query


def test_held_out_groups_are_excluded():
    config = _config(held_out=["nli"])
    records = build_mixture(config)
    assert {r["source"] for r in records} == {"sst2", "trec", "cot:strategyqa"}
    assert len(records) == 40
    stats = mixture_stats(records, config)
    assert stats["held_out"] == {"groups": ["nli"], "sources": ["rte", "cb"]}
    assert "nli" not in stats["per_group"]


def test_same_seed_same_file_other_seed_other_order(tmp_path):
    config = _config()
    write_mixture(build_mixture(config), tmp_path / "a", config)
    write_mixture(build_mixture(config), tmp_path / "b", config)
    first = (tmp_path / "a" / "mixture.jsonl").read_bytes()
    assert first == (tmp_path / "b" / "mixture.jsonl").read_bytes()
    other = build_mixture(_config(seed=1))
    assert [r["uid"] for r in other] != [json.loads(line)["uid"] for line in first.splitlines()]


def test_caps_and_rates_are_respected():
    rates = {"cot:strategyqa": 0.5, "trec": 0.2}
    config = _config(sources=["sst2", "trec", "cot:strategyqa"], size=100, rates=rates)
    counts = Counter(r["source"] for r in build_mixture(config))
    assert counts == {"cot:strategyqa": 50, "trec": 20, "sst2": 30}
    capped = _config(sources=["sst2", "trec", "cot:strategyqa"], size=100, rates=rates,
                     caps={"trec": 10})  # trec's 10 missing records go 5:3 to the others
    counts = Counter(r["source"] for r in build_mixture(capped))
    assert counts == {"cot:strategyqa": 56, "trec": 10, "sst2": 34}
    capped = build_mixture(_config(sources=["sst2", "trec"], size=100, cap=5,
                                   templates_per_example=2))
    assert Counter(r["source"] for r in capped) == {"sst2": 10, "trec": 10}
    by_uid: dict[tuple[str, str], list[str]] = {}
    for r in capped:
        by_uid.setdefault((r["source"], r["uid"]), []).append(r["template"])
    assert len(by_uid) == 10 and all(len(set(t)) == 2 for t in by_uid.values())
    everything = build_mixture(_config(sources=["copa", "wic"], size=None))
    assert len(everything) == 64  # both FewGLUE pools in full


def test_allocate_splits_whole_counts_and_passes_surplus_on():
    assert allocate(10, {"a": 0.5, "b": 0.5}, {"a": 2, "b": 100}) == {"a": 2, "b": 8}
    thirds = allocate(10, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, {"a": 9, "b": 9, "c": 9})
    assert sum(thirds.values()) == 10 and sorted(thirds.values()) == [3, 3, 4]
    assert allocate(50, {"a": 0.5, "b": 0.5}, {"a": 3, "b": 4}) == {"a": 3, "b": 4}
    assert allocate(None, {"a": 1.0}, {"a": 7}) == {"a": 7}


def test_stats_count_what_was_written(tmp_path):
    config = _config(size=30)
    records = build_mixture(config)
    stats = write_mixture(records, tmp_path, config)
    assert stats == json.loads((tmp_path / "stats.json").read_text())
    lines = (tmp_path / "mixture.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    assert stats["n"] == 30 and sum(stats["per_source"].values()) == 30
    assert stats["per_source"] == dict(Counter(r["source"] for r in records))
    assert stats["per_template"] == dict(Counter(r["template"] for r in records))
    assert stats["per_format"] == dict(Counter(r["format"] for r in records))
    assert math.isclose(sum(stats["share_per_source"].values()), 1.0)
    assert stats["config"]["seed"] == 0 and len(stats["sha256"]) == 64


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sources": ["sst3"]}, r"Unknown source 'sst3'\. Did you mean sst5, sst2\?"),
        ({"held_out": ["nlii"]}, r"Unknown held-out group 'nlii'\. Groups: nli"),
        ({"sources": ["cot:gsm8k", "gsm8k-train"]}, "hold the same questions"),
        ({"rates": {"sst2": 0.7, "trec": 0.6}}, "rates sum to 1.3"),
        ({"caps": {"qnli": 5}}, "caps names 'qnli', which is not in sources"),
        ({"size": 0}, "size must be a whole number >= 1"),
        ({"few_shot_fraction": 2}, r"few_shot_fraction must be a number in \[0, 1\]"),
        ({"templates": 2}, "unknown key 'templates'. Did you mean templates_per_example"),
    ],
)
def test_bad_configs_name_the_problem(values, message):
    with pytest.raises(MixtureError, match=message):
        _config(**values)


def test_errors_found_while_building():
    with pytest.raises(MixtureError, match="removes every source"):
        build_mixture(_config(sources=["rte", "cb"], held_out=["nli"]))
    with pytest.raises(MixtureError, match="templates_per_example is 5 but source 'sst2'"):
        build_mixture(_config(templates_per_example=5))


def test_missing_and_malformed_data_files(tmp_path, monkeypatch):
    monkeypatch.setenv("LMBOOST_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"flan_cot/aqua_train\.tsv.*LMBOOST_DATA"):
        build_mixture(config_from_dict({"sources": ["cot:aqua"]}))
    (tmp_path / "flan_cot").mkdir()
    (tmp_path / "flan_cot" / "aqua_train.tsv").write_text("Q?\t(A)\tbecause\nQ2?\t(B)\n")
    with pytest.raises(TaskError, match=r"aqua_train\.tsv, line 2: expected 3 tab-separated"):
        read_flan_cot("aqua")


def test_yaml_configs_and_overrides(tmp_path):
    cot = load_mixture_config(COT_YAML, {"held_out": ["nli"], "caps": {"sst2": 7}})
    nocot = load_mixture_config(NOCOT_YAML)
    assert cot.held_out == ["nli"] and cot.caps == {"sst2": 7}
    assert nocot.sources == [s for s in cot.sources if not s.startswith("cot:")]
    assert any(s.startswith("cot:") for s in cot.sources)
    sft = load_recipe(REPO / "recipes" / "sft-mixture.yaml", {"out": str(tmp_path)})
    assert sft.recipe == "sft" and sft.lora.enabled and sft.data.endswith("mixture.jsonl")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [sst2]\nheld-out: [nli]\n")
    with pytest.raises(MixtureError, match=r"bad\.yaml: unknown key 'held-out'"):
        load_mixture_config(bad)


# --------------------------------------------------------------------------- CLI and training


def test_cli_build_sources_and_errors(tmp_path, capsys):
    out = tmp_path / "mix"
    code = main(["instruct", "build", "--config", str(COT_YAML), "--out", str(out),
                 "--seed", "3", "--size", "40", "--cap", "5", "--cap", "sst2=2",
                 "--held-out", "nli,commonsense"])
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["n"] == 40 and stats["config"]["seed"] == 3
    assert (stats["config"]["cap"], stats["config"]["caps"]) == (5, {"sst2": 2})
    assert stats["per_source"]["sst2"] <= 2 and max(stats["per_source"].values()) <= 5
    assert not {"rte", "copa", "cot:ecqa"} & set(stats["per_source"])
    assert "mixture.jsonl" in capsys.readouterr().out
    assert main(["instruct", "build", "--config", str(COT_YAML), "--out", str(out),
                 "--held-out", "nlii"]) == 2
    assert "Unknown held-out group 'nlii'" in capsys.readouterr().err
    assert main(["instruct", "sources"]) == 0
    listing = capsys.readouterr().out
    assert "cot:gsm8k" in listing and "commonsense" in listing
    with pytest.raises(SystemExit):
        main(["instruct", "--help"])
    assert "OPTIONS:" in capsys.readouterr().out


def test_tiny_model_sft_on_a_built_mixture(tiny_model_dir, tmp_path):
    config = _config(sources=["sst2", "trec", "cot:strategyqa"], size=12, few_shot_k=0)
    write_mixture(build_mixture(config), tmp_path / "mix", config)
    record = run_training(load_recipe(REPO / "recipes" / "sft-mixture.yaml", {
        "model": tiny_model_dir, "data": str(tmp_path / "mix" / "mixture.jsonl"),
        "out": str(tmp_path / "sft"), "max_steps": 2, "max_length": 64, "eval_size": 4,
        "per_device_train_batch_size": 4, "lora": {"merge": False}, "progress": False,
    }))
    assert record["train"]["global_step"] == 2
    assert (record["data"]["n_train"], record["data"]["n_eval"]) == (8, 4)
    assert math.isfinite(record["eval"]["loss"]) and (tmp_path / "sft" / "adapter").is_dir()


def test_paired_mcnemar_between_two_reasoning_runs_of_a_tiny_model(tiny_model_dir, tmp_path):
    """What the instruction-tuning ablation compares, with the library alone: two reasoning runs
    on the same items (here the base model's zero-shot chains cut at 2 and at 6 tokens), paired
    per item by McNemar's test (lmboost.evaluation.stats), and the Markdown row the benchmark
    writes for it."""
    from lmboost.evaluation.report import markdown_table
    from lmboost.evaluation.stats import mcnemar, pairwise_mcnemar
    from lmboost.reasoning import ReasoningConfig, run_reasoning

    correct = {}
    for name, tokens in (("short", 2), ("long", 6)):
        results = run_reasoning(ReasoningConfig(
            task="bbh:boolean_expressions", out=tmp_path / name, model=tiny_model_dir,
            mode="zs-cot", limit=3, max_new_tokens=tokens, batch_size=4, chat=False,
        ))
        correct[name] = {item["uid"]: item["correct"] for item in results["items"]}
    assert correct["short"].keys() == correct["long"].keys() and len(correct["short"]) == 3
    test = pairwise_mcnemar(correct, [("short", "long"), ("short", "trained")])
    assert list(test) == ["short-long"]  # a pair naming a run that is not there is skipped
    t = test["short-long"]
    a, b = correct["short"], correct["long"]
    assert t.only_first == sum(a[u] and not b[u] for u in a)
    assert t.only_second == sum(b[u] and not a[u] for u in a)
    assert t.only_first + t.only_second + t.both + t.neither == 3
    assert t == mcnemar(t.only_first, t.only_second, both=t.both, neither=t.neither)
    cell = f"{t.only_first} / {t.only_second}, p {t.p:.2g}"
    assert markdown_table([["bbh:boolean_expressions", cell]], ["evaluation", "short vs long"]
                          ).splitlines()[2] == f"| bbh:boolean_expressions | {cell} |"
