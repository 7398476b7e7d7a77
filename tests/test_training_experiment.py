"""lmboost.training.experiment (the training comparison's stage folders, stored tables, records
and report), the KeepModel callback, the task-level attack helpers and the report's cell
formatters, with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lmboost.evaluation.records import read_json, write_json
from lmboost.evaluation.report import points, short_count
from lmboost.tasks import ClassificationTask, Example
from lmboost.training import KeepModel, build_config, run_training
from lmboost.training import experiment as ex
from lmboost.training.attacks import median_embedding_norm, task_substitution_table


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    """16 labelled rows alternating between two classes."""
    rows = [f"{'a fine film' if i % 2 else 'dull and slow'} {i},{'pos' if i % 2 else 'neg'}"
            for i in range(16)]
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    path.write_text("\n".join(["text,label", *rows]) + "\n")
    return path


def _classify(model: str, out: Path, reviews: Path, **values):
    return build_config({
        "recipe": "classify", "model": model, "out": str(out), "data": str(reviews),
        "labels": ["neg", "pos"], "progress": False, "per_device_train_batch_size": 4,
        "max_steps": 2, "max_length": 16, "device": "cpu", **values,
    })


def _word_level_tokenizer(vocab: dict[str, int]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")


def test_cell_formatters():
    assert (points(0.8), points(0.0), points(None), points(None, "")) == (
        "80.0", "0.0", "—", "")
    assert (short_count(124_645_632), short_count(35_840), short_count(1_000_000)) == (
        "124.6M", "36k", "1.0M")


def test_stage_folders_and_what_is_pending(tmp_path):
    assert ex.stage_dir(tmp_path, "tapt-lm") == tmp_path / "tapt" / "lm"
    assert ex.stage_dir(tmp_path, "lora") == tmp_path / "lora"
    bench = {"seed": 0, "tapt_epochs": 1}
    assert ex.pending(tmp_path, "lora", bench) == ["lora"]
    assert ex.pending(tmp_path, "tapt", bench) == ["tapt-lm", "tapt"]
    lm = tmp_path / "tapt" / "lm"
    write_json(lm / "results.json", {})
    assert ex.pending(tmp_path, "tapt", bench) == ["tapt-lm", "tapt"]  # no weights yet
    (lm / "model").mkdir()
    assert ex.pending(tmp_path, "tapt", bench) == ["tapt-lm", "tapt"]  # settings unrecorded
    ex.mark_lm_stage(tmp_path, bench)
    assert ex.pending(tmp_path, "tapt", bench) == ["tapt"]
    # LM weights trained with other settings are trained again
    assert ex.pending(tmp_path, "tapt", {**bench, "tapt_epochs": 3}) == ["tapt-lm", "tapt"]
    write_json(tmp_path / "tapt" / "result.json", {"bench": {"seed": 0, "set": ("a=1",)}})
    assert ex.done(tmp_path, "tapt") and ex.pending(tmp_path, "tapt", bench) == []
    assert not ex.stale(tmp_path, "tapt", {"seed": 0, "set": ["a=1"]})
    assert ex.stale(tmp_path, "tapt", {"seed": 1, "set": ["a=1"]})


def test_stored_or_made_remakes_only_for_other_settings(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return {"value": len(calls)}

    path = tmp_path / "table.json"
    assert ex.stored_or_made(path, {"k": 5}, make) == {"value": 1, "settings": {"k": 5}}
    assert ex.stored_or_made(path, {"k": 5}, make)["value"] == 1 and len(calls) == 1
    assert ex.stored_or_made(path, {"k": 3}, make)["value"] == 2
    assert read_json(path) == {"value": 2, "settings": {"k": 3}}


def test_adversarial_params_scale_with_the_embedding_norm():
    assert ex.adversarial_params("fgm", 0.05, 6.0) == {"epsilon": pytest.approx(0.3)}
    pgd = ex.adversarial_params("pgd", 0.05, 6.0)
    assert pgd == {"epsilon": pytest.approx(0.3), "alpha": pytest.approx(0.09)}
    assert ex.adversarial_params("freelb", 0.1, 2.0)["alpha"] == pytest.approx(0.02)
    assert ex.adversarial_params("smart", 0.05, 6.0) == {}
    assert ex.adversarial_params("pgd", 0.0, 6.0) == {}


def test_median_embedding_norm_by_hand():
    tok = _word_level_tokenizer({"[UNK]": 0, "great": 1, "movie": 2, "boring": 3})
    weight = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 0.0]])
    texts = ["great movie", "boring", "great great movie"]
    # norms over all tokens and dimensions: sqrt(9 + 16) = 5, 1, sqrt(9 + 9 + 16)
    assert median_embedding_norm(tok, weight, texts) == pytest.approx(5.0)
    assert median_embedding_norm(tok, weight, texts, max_length=1) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="at least one text"):
        median_embedding_norm(tok, weight, [])


def test_task_substitution_table_keeps_same_association_neighbours():
    vocab = {"[UNK]": 0, "great": 1, "superb": 2, "awful": 3, "film": 4, "movie": 5}
    tok = _word_level_tokenizer(vocab)
    # great's nearest is awful, then superb; film and movie are each other's nearest
    weight = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.8, 0.3, 0.0],
                           [0.95, 0.1, 0.0], [0.0, 0.0, 1.0], [0.0, 0.1, 1.0]])
    pool = ([Example({"text": "great film"}, 1)] * 3 + [Example({"text": "superb movie"}, 1)] * 3
            + [Example({"text": "awful film"}, 0)] * 3 + [Example({"text": "awful movie"}, 0)] * 3)
    task = ClassificationTask(name="tiny", labels=["neg", "pos"], verbalizer=["neg", "pos"],
                              template="Review: {text}", eval_split="made up",
                              eval_loader=lambda: [Example({"text": "superb film"}, 1)],
                              pool_loader=lambda: pool)
    found = task_substitution_table(task, tok, weight, k=1, min_count=3)
    assert (found["field"], found["words"]) == ("text", 5)
    assert found["table"] == {"great": ["superb"], "superb": ["great"], "film": ["movie"],
                              "movie": ["film"]}  # awful's neighbours all carry the other class
    plain = task_substitution_table(task, tok, weight, k=1, min_lift=0)
    assert plain["table"]["great"] == ["awful"]


def test_keep_model_hands_back_the_model_and_skips_checkpoints(tiny_model_dir, tmp_path,
                                                                reviews):
    from safetensors.torch import load_file

    keeper = KeepModel()
    record = run_training(_classify(tiny_model_dir, tmp_path / "kept", reviews, eval_steps=1,
                             save_steps=1, load_best_model_at_end=False),
                   callbacks=[keeper])
    assert record["train"]["global_step"] == 2
    assert not list((tmp_path / "kept" / "checkpoints").glob("checkpoint-*"))
    saved = load_file(tmp_path / "kept" / "model" / "model.safetensors")
    state = keeper.model.state_dict()
    for name, value in saved.items():
        torch.testing.assert_close(state[name], value)
    run_training(_classify(tiny_model_dir, tmp_path / "plain", reviews, eval_steps=1, save_steps=1,
                    load_best_model_at_end=False))
    assert list((tmp_path / "plain" / "checkpoints").glob("checkpoint-*"))


def test_write_scale_is_the_median_norm_of_the_training_subset(tiny_model_dir, tmp_path,
                                                               reviews):
    from transformers import AutoModel, AutoTokenizer

    config = _classify(tiny_model_dir, tmp_path / "run", reviews, max_train_examples=6)
    stored = ex.write_scale(tmp_path / "scale.json", config)
    from lmboost.training.data import classification_examples, subset

    task, pool, _ = classification_examples(config)
    texts = [task.render(e) for e in subset(pool, 6, 0)]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    weight = AutoModel.from_pretrained(tiny_model_dir).get_input_embeddings().weight.detach()
    norms = [float(weight[torch.tensor(ids)].norm())
             for ids in tok(texts, truncation=True, max_length=16)["input_ids"]]
    assert stored["examples"] == 6
    assert stored["median_norm"] == pytest.approx(float(np.median(norms)), rel=1e-6)
    assert stored["settings"] == {"train_size": 6, "seed": 0, "max_length": 16}
    assert read_json(tmp_path / "scale.json") == stored


def _result(accuracy: float, trainable: int, seconds: float, **extra):
    record = {"eval": {"accuracy": accuracy, "macro_f1": accuracy - 0.1, "n": 8},
              "parameters": {"trainable": trainable, "total": 2_000_000,
                             "trainable_fraction": trainable / 2_000_000},
              "train": {"global_step": 4, "train_loss": 0.5, "seconds_per_step": seconds,
                        "train_runtime_s": 4 * seconds, "epoch": 1.0},
              "memory": {"peak_mb": 512.0}, "config": {"max_train_examples": 64}}
    return {**ex.run_result(record, model="m", task="t"), "wall_time_s": 60.0, **extra}


def test_records_collect_and_render(tmp_path):
    lm = {"train": {"global_step": 3, "seconds_per_step": 0.5, "train_runtime_s": 1.5},
          "data": {"train_blocks": 12}, "eval": {"perplexity": 9.0},
          "memory": {"peak_mb": 400.0}, "wall_time_s": 30.0}
    attacks = {"clean_accuracy": 0.75, "embedding_pgd": {
        "accuracy": 0.5, "median_radius_over_embedding_norm": 0.05},
        "word_substitution": {"accuracy": 0.25}}
    runs = {"full": _result(0.8, 2_000_000, 1.0, attacks=attacks),
            "lora": _result(0.7, 35_840, 0.5),
            "tapt": _result(0.85, 2_000_000, 1.0, tapt=ex.tapt_facts(lm)),
            "fgm": _result(0.75, 2_000_000, 2.0, attacks=attacks)}
    assert runs["full"]["status"] == "ok" and runs["full"]["peak_rss_mb"] == 512.0
    assert runs["tapt"]["tapt"]["eval_perplexity"] == 9.0
    for config, run in runs.items():
        write_json(tmp_path / "m" / "t" / config / "result.json", run)
    collected = ex.collect(tmp_path, ["m"], ["t"])
    assert sorted(collected) == ["m/t/fgm", "m/t/full", "m/t/lora", "m/t/tapt"]
    settings = {"max_steps": -1, "epochs": 1.0, "train_size": 64, "batch_size": 16,
                "max_length": 64, "seed": 0, "adv_radius": 0.05, "eval_size": 8,
                "attack_size": 4, "attack_epsilon": 0.05, "attack_relative": True,
                "attack_steps": 5, "sub_words": 3, "sub_candidates": 5, "sub_min_lift": 1.3}
    text = ex.render({"settings": settings, "models": ["m"], "tasks": ["t"],
                      "encoders": {"m": False}, "runs": collected, "failed": ["m/t/pgd"]})
    assert "| m | t | lora | 64 / 4 | 70.0 | 60.0 | 36k (1.79%) | 0.50 | 512 | 2 |" in text
    assert "| m | t | tapt | 64 / 4 | 85.0 | 75.0 | 2.0M (100.00%) | 1.00 | 512 | 6 |" in text
    assert "| m | t | fgm | 75.0 | 75.0 | 50.0 | 25.0 | 2.00 (2.0x) |" in text
    assert "| m | t | pgd | not run |" in text
    assert "m t: 80.0 -> 70.0 (2.0M -> 36k trainable)" in text
    assert "m t 5%" in text and "Failed in the last call: m/t/pgd." in text
    assert "Wall time of the stored runs (training, scoring, attacks): 4.5 min." in text


def test_classify_values_pick_the_learning_rate_lora_and_the_adversarial_radius(tmp_path):
    scale = tmp_path / "scale.json"
    scale.write_text('{"median_norm": 6.0}')
    none = {"full": None, "lora": None}
    assert ex.classify_values("lora", "minilm-l6-v2", learning_rates=none, radius=0.05,
                              scale=scale) == {"learning_rate": 1e-3, "lora": {"enabled": True}}
    full = ex.classify_values("full", "other-model", learning_rates={"full": 2e-5, "lora": None},
                              radius=0.05, scale=tmp_path / "absent.json")
    assert full == {"learning_rate": 2e-5, "lora": {"enabled": False}}
    pgd = ex.classify_values("pgd", "minilm-l6-v2", learning_rates=none, radius=0.05, scale=scale)
    assert pgd["learning_rate"] == 1e-4
    assert pgd["adversarial"] == {"method": "pgd", "epsilon": pytest.approx(0.3),
                                  "alpha": pytest.approx(0.09)}
    smart = ex.classify_values("smart", "m", learning_rates=none, radius=0.05, scale=tmp_path)
    assert smart["adversarial"] == {"method": "smart"}  # its own defaults, no scale read
