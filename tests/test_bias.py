"""WEAT/SEAT: the statistics on hand-made vectors, the SEAT files, the encoders' pooling and
batching on tiny random models, and a whole run through the Python API and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lmboost.bias import (
    BiasConfig,
    available_tests,
    effect_size,
    encode,
    load_test,
    p_value,
    resolve_tests,
    run_bias,
    weat,
)
from lmboost.cli import main
from lmboost.errors import DataNotFoundError, LmboostError, TaskError
from lmboost.evaluation.records import read_json
from lmboost.models.loading import LoadedModel


def _have_data() -> bool:
    try:
        available_tests()
    except DataNotFoundError:
        return False
    return True


needs_data = pytest.mark.skipif(not _have_data(), reason="shared/data/seat not found")

# --------------------------------------------------------------------------- statistics

# A = {(1,0), (2,0)}, B = {(0,1), (0,3)}: for w = (p, q), s(w) = (p - q) / |w| exactly; the
# doubled/tripled attribute vectors check that lengths do not matter.
A = np.array([[1.0, 0.0], [2.0, 0.0]])
B = np.array([[0.0, 1.0], [0.0, 3.0]])
# s(X) = 1, 1/5, -1/5 and s(Y) = 0, -1, 7/13 (3-4-5 and 5-12-13 triangles).
X = np.array([[1.0, 0.0], [4.0, 3.0], [3.0, 4.0]])
Y = np.array([[1.0, 1.0], [0.0, 1.0], [12.0, 5.0]])


def test_hand_made_vectors_give_the_effect_size_and_p_value_worked_out_by_hand():
    result = weat(X, Y, A, B, permutations=100)
    np.testing.assert_allclose(result.s_x, [1.0, 0.2, -0.2], atol=1e-15)
    np.testing.assert_allclose(result.s_y, [0.0, -1.0, 7 / 13], atol=1e-15)
    # S = (1 + 1/5 - 1/5) - (0 - 1 + 7/13) = 19/13
    assert result.statistic == pytest.approx(1.4615384615384615, abs=1e-14)
    # d = (1/3 - (-2/13)) / std = (19/39) / sqrt(58853/126750), std with ddof=1 over all six
    assert result.effect_size == pytest.approx(0.7149549462857657, abs=1e-12)
    # C(6,3) = 20 partitions, all enumerated. Those whose X-sum is >= 1 (the observed one,
    # {1, 1/5, -1/5}, included): {1, 7/13, 1/5}, {1, 7/13, 0}, {1, 7/13, -1/5}, {1, 1/5, 0},
    # {1, 1/5, -1/5}; so p = 5/20.
    assert result.exact and result.permutations == 20
    assert result.p_value == 0.25


def test_effect_size_uses_the_sample_standard_deviation():
    s_x, s_y = np.array([1.0, 0.0]), np.array([0.0, -1.0])
    # means 1/2 and -1/2; values 1, 0, 0, -1 have sample variance 2/3
    assert effect_size(s_x, s_y) == pytest.approx(1 / math.sqrt(2 / 3))
    assert math.isnan(effect_size(np.array([0.5, 0.5]), np.array([0.5])))


def test_perfect_separation_gives_the_smallest_p():
    # Exact: only the observed partition reaches the observed statistic, p = 1 / C(n, k).
    assert p_value(np.array([1.0, 0.2, 0.7]), np.array([0.0, -1.0, 0.1]))[0] == 1 / 20
    s_x, s_y = np.linspace(1, 2, 8), np.linspace(-2, -1, 8)
    p, exact, evaluated = p_value(s_x, s_y, permutations=20_000)
    assert exact and evaluated == math.comb(16, 8) and p == 1 / 12870
    # Sampled: no random partition reaches it, p = 1 / (1 + permutations).
    s_x, s_y = np.linspace(1, 2, 20), np.linspace(-2, -1, 20)
    assert p_value(s_x, s_y, permutations=2000) == (1 / 2001, False, 2000)
    # Reversed roles: every partition is at least as extreme, p = 1.
    assert p_value(s_y, s_x, permutations=2000)[0] == 1.0


def _moderate_scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.normal(0.2, 1.0, 7), rng.normal(0.0, 1.0, 7)


def test_exact_and_sampled_p_values_agree_within_sampling_error():
    s_x, s_y = _moderate_scores()
    exact, is_exact, total = p_value(s_x, s_y, permutations=5000)
    assert is_exact and total == math.comb(14, 7) == 3432
    assert 0.05 < exact < 0.95
    sampled, is_exact, drawn = p_value(s_x, s_y, permutations=3000, seed=3)
    assert not is_exact and drawn == 3000
    assert abs(sampled - exact) < 4 * math.sqrt(exact * (1 - exact) / 3000) + 1 / 3000


def test_sampled_p_value_is_seeded():
    s_x, s_y = _moderate_scores()
    first = p_value(s_x, s_y, permutations=3000, seed=0)
    assert p_value(s_x, s_y, permutations=3000, seed=0) == first
    assert p_value(s_x, s_y, permutations=3000, seed=1) != first


def test_statistics_reject_bad_input():
    with pytest.raises(ValueError, match="zero vector"):
        weat(np.zeros((2, 2)), Y, A, B)
    with pytest.raises(ValueError, match="dimension"):
        weat(X, Y, A, np.ones((2, 3)))
    with pytest.raises(ValueError, match="permutations"):
        p_value(np.ones(2), np.zeros(2), permutations=0)


# --------------------------------------------------------------------------- SEAT files


@needs_data
def test_seat_loader_reads_the_real_files():
    names = available_tests()
    assert len(names) == 46
    assert names.index("weat2") < names.index("weat10")
    test = load_test("weat1")
    assert [c.category for c in test.concepts().values()] == [
        "Flowers", "Insects", "Pleasant", "Unpleasant"
    ]
    assert [len(c.examples) for c in test.concepts().values()] == [25, 25, 25, 25]
    assert "aster" in test.targ1.examples and len(test.texts()) == 100
    sent = load_test("sent-weat1")
    assert [len(c.examples) for c in sent.concepts().values()] == [350, 350, 215, 250]
    assert resolve_tests("all") == names
    assert resolve_tests("weat1, sent-weat1,weat1") == ["weat1", "sent-weat1"]


@needs_data
def test_unknown_test_name_lists_the_valid_ones():
    for load in (load_test, resolve_tests):
        with pytest.raises(TaskError, match="Unknown SEAT test 'weat99'") as err:
            load("weat99")
        assert "sent-weat1" in str(err.value) and "all" in str(err.value)


def _write_test(path, sizes=(3, 3, 2, 2), **override) -> str:
    obj = {
        key: {"category": key.title(), "examples": [f"{key} word {i}" for i in range(n)]}
        for key, n in zip(("targ1", "targ2", "attr1", "attr2"), sizes)
    }
    obj.update(override)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return str(path)


def test_malformed_test_files_are_named_in_the_error(tmp_path):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{\n  "targ1": {"category": "X",\n  oops\n}', encoding="utf-8")
    with pytest.raises(TaskError, match=rf"{bad_json}, line 3: not valid JSON"):
        load_test(str(bad_json))
    cases = {
        "missing.jsonl": ({"attr2": None}, "attr2 needs a string 'category'"),
        "empty.jsonl": ({"targ2": {"category": "Y", "examples": []}}, "targ2.examples must be"),
        "number.jsonl": (
            {"attr1": {"category": "A", "examples": ["good", 5]}}, r"attr1.examples\[1\]"
        ),
    }
    for name, (override, message) in cases.items():
        path = _write_test(tmp_path / name, **override)
        with pytest.raises(TaskError, match=message) as err:
            load_test(path)
        assert str(err.value).startswith(path)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(TaskError, match="expected one JSON object, found list"):
        load_test(str(listed))
    with pytest.raises(TaskError, match="not found"):
        load_test(str(tmp_path / "absent.jsonl"))


def test_a_test_file_path_is_a_test(tmp_path):
    path = _write_test(tmp_path / "mine.jsonl")
    test = load_test(path)
    assert test.name == "mine" and test.targ1.category == "Targ1"
    assert len(test.texts()) == 10


# --------------------------------------------------------------------------- encoders

TEXTS = [
    "a great movie",
    "boring",
    "markets fell as stocks slid and the world watched",
    "who wrote hamlet ?",
    "great",
]


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model) -> LoadedModel:
    """A tiny random BERT (bidirectional) marked as a sentence encoder, on the tiny tokenizer."""
    from transformers import BertConfig, BertModel

    tokenizer = tiny_model.tokenizer
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = BertModel(config).eval()
    return LoadedModel(model, tokenizer, "tiny-bert", None, is_encoder=True)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_causal_batching_does_not_change_vectors(tiny_model, pooling):
    together = encode(tiny_model, TEXTS, pooling=pooling, batch_size=len(TEXTS))
    one_by_one = encode(tiny_model, TEXTS, pooling=pooling, batch_size=1)
    assert together.shape == (len(TEXTS), 32) and together.dtype == np.float32
    np.testing.assert_allclose(together, one_by_one, atol=1e-5, rtol=0)
    reversed_order = encode(tiny_model, TEXTS[::-1], pooling=pooling, batch_size=2)
    np.testing.assert_allclose(reversed_order[::-1], together, atol=1e-5, rtol=0)


def test_causal_pooling_by_hand(tiny_model):
    text = TEXTS[2]
    ids = tiny_model.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = tiny_model.model(ids, output_hidden_states=True).hidden_states[-1][0]
    mean, last = (encode(tiny_model, [text], pooling=p)[0] for p in ("mean", "last"))
    np.testing.assert_allclose(mean, hidden.mean(dim=0).numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(last, hidden[-1].numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_encoder_batching_does_not_change_vectors(tiny_encoder, pooling):
    together = encode(tiny_encoder, TEXTS, pooling=pooling, batch_size=len(TEXTS))
    one_by_one = encode(tiny_encoder, TEXTS, pooling=pooling, batch_size=1)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5, rtol=0)
    ids = tiny_encoder.tokenizer(TEXTS[2], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = tiny_encoder.model(ids).last_hidden_state[0]
    expected = hidden.mean(dim=0) if pooling == "mean" else hidden[0]
    np.testing.assert_allclose(together[2], expected.numpy(), atol=1e-5, rtol=0)


def test_pooling_must_suit_the_model(tiny_model, tiny_encoder):
    with pytest.raises(LmboostError, match="'first' is for sentence encoders.*use mean or last"):
        encode(tiny_model, TEXTS, pooling="first")
    with pytest.raises(LmboostError, match="'last' is for causal LMs.*tiny-bert"):
        encode(tiny_encoder, TEXTS, pooling="last")
    with pytest.raises(LmboostError, match="Unknown pooling 'max'"):
        encode(tiny_model, TEXTS, pooling="max")
    with pytest.raises(LmboostError, match="at least one text"):
        encode(tiny_model, [])


# --------------------------------------------------------------------------- runner and CLI


@needs_data
def test_run_bias_end_to_end(tiny_model, tiny_model_dir, tmp_path):
    custom = _write_test(tmp_path / "mine.jsonl")
    config = BiasConfig(
        model=tiny_model_dir, out=tmp_path / "run", tests=["weat10", custom], permutations=500
    )
    results = run_bias(config, progress=False)
    assert read_json(tmp_path / "run" / "results.json") == results
    weat10, mine = results["tests"]
    assert weat10["test"] == "weat10" and weat10["p_method"] == "sampled"
    assert weat10["permutations"] == 500 and len(weat10["s_x"]) == 8
    assert weat10["sets"]["targ1"] == {"category": "YoungPeoplesNames", "size": 8}
    assert mine["p_method"] == "exact" and mine["permutations"] == 20  # C(6, 3)
    # The recorded numbers are those of weat() on the model's vectors.
    test = load_test(custom)
    sets = [encode(tiny_model, list(c.examples)) for c in test.concepts().values()]
    direct = weat(*sets, permutations=500)
    assert mine["effect_size"] == pytest.approx(direct.effect_size, abs=1e-6)
    assert mine["p_value"] == direct.p_value
    assert results["model"]["kind"] == "causal LM" and results["texts_encoded"] == 32 + 10
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "| test | targets (X vs Y) | attributes (A vs B) | effect size | p-value |" in report
    assert "| weat10 | YoungPeoplesNames vs OldPeoplesNames | Pleasant vs Unpleasant |" in report
    assert "| 500 samples | 8/8/8/8 |" in report and "| exact (20) | 3/3/2/2 |" in report
    png = (tmp_path / "run" / "effect_sizes.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_cli_bias_runs_and_prints_the_table(tiny_model_dir, tmp_path, capsys):
    custom = _write_test(tmp_path / "mine.jsonl")
    out = tmp_path / "cli"
    code = main(["bias", "--model", tiny_model_dir, "--tests", custom, "--permutations", "50",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| mine | Targ1 vs Targ2 | Attr1 vs Attr2 |" in printed
    assert (out / "report.md").is_file() and (out / "results.json").is_file()


def test_cli_bias_errors_are_clear(tiny_model_dir, tmp_path, capsys):
    custom = _write_test(tmp_path / "mine.jsonl")
    args = ["bias", "--model", tiny_model_dir, "--out", str(tmp_path / "x"), "--tests"]
    assert main([*args, custom, "--pooling", "first"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmboost: error: pooling 'first' is for sentence encoders")
    assert main([*args, custom, "--permutations", "0"]) == 2
    assert "permutations must be an integer >= 1" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "absent.jsonl")]) == 2
    assert "SEAT test file not found" in capsys.readouterr().err
    if _have_data():
        assert main([*args, "weat1,weat99"]) == 2
        assert "Unknown SEAT test 'weat99'" in capsys.readouterr().err


def test_config_validation():
    for bad, message in (
        ({"tests": []}, "tests is empty"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"dtype": "int8"}, "Unknown dtype 'int8'. Choose one of"),
    ):
        with pytest.raises(LmboostError, match=message):
            BiasConfig(model="m", out="o", **bad).validate()
