"""lmboost.training on tiny random models: LoRA, merging, adversarial steps checked by hand on a
toy model, SFT masking, class weights, resume, the CLI and recipe errors."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import MeanPool, build_tokenizer
from safetensors.torch import load_file
from transformers import TrainerCallback

from lmboost.errors import LmboostError
from lmboost.tasks import register_task, task_from_file
from lmboost.training import RecipeError, build_config, load_recipe, parse_overrides, run_training
from lmboost.training.adversarial import FGM, PGD, SMART, FreeLB, PerturbedBatch, symmetric_kl
from lmboost.training.data import PadCollator, pack_blocks, tokenize_sft
from lmboost.training.models import class_weights, classification_loss

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    """A 24-row two-class CSV."""
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(24):
            text = "a great movie" if i % 2 else "boring and far too long"
            writer.writerow([f"{text} {i}", "pos" if i % 2 else "neg"])
    return path


def _config(model: str, out: Path, **values):
    base = {
        "recipe": "classify", "model": model, "out": str(out), "progress": False,
        "per_device_train_batch_size": 4, "max_steps": 2, "learning_rate": 1e-2,
    }
    return build_config({**base, **values})


class Snapshot(TrainerCallback):
    """Keeps the model and copies of its weights before and after training."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}
        self.model = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        self.before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = {k: v.detach().clone() for k, v in model.state_dict().items()}


class StopAt(TrainerCallback):
    """Ends training after ``step`` optimizer steps (a simulated kill)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


# --------------------------------------------------------------------------- LoRA


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, reviews, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    snap = Snapshot()
    config = _config(tiny_model_dir, out, data=str(reviews), labels=["neg", "pos"],
                     max_steps=3, lora={"enabled": True, "r": 4, "alpha": 8})
    record = run_training(config, callbacks=[snap])
    return record, snap, out


def test_lora_trains_only_adapters(lora_run):
    record, snap, _ = lora_run
    lora_keys = [k for k in snap.before if "lora_" in k]
    head_keys = [k for k in snap.before if "modules_to_save" in k]
    base_keys = [k for k in snap.before if k not in lora_keys and k not in head_keys]
    assert lora_keys and head_keys and base_keys
    adapted = {k.split(".lora_")[0].split(".")[-1] for k in lora_keys}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for key in base_keys:
        assert torch.equal(snap.before[key], snap.after[key]), key
    for key in lora_keys + head_keys:
        assert not torch.equal(snap.before[key], snap.after[key]), key
    peft_trainable, peft_total = snap.model.get_nb_trainable_parameters()
    assert record["parameters"]["trainable"] == peft_trainable
    assert record["parameters"]["total"] == peft_total
    assert (Path(record["saved"]["adapter"]) / "adapter_config.json").is_file()


def test_merge_and_save_gives_the_adapter_logits(lora_run, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmboost.training.lora import merge_and_save

    _, _, out = lora_run
    tokenizer = AutoTokenizer.from_pretrained(out / "adapter")
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    batch = tokenizer(["a great movie", "boring and far too long"], return_tensors="pt",
                      padding=True)
    with torch.no_grad():
        expected = adapted(**batch).logits
    merge_and_save(adapted, tokenizer, tmp_path / "merged")
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        got = merged(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_encoder_classify_with_lora_and_fgm(tmp_path, reviews):
    """The MiniLM path on a tiny random BERT: query/key/value/dense adapted, FGM on embeddings."""
    from transformers import BertConfig, BertModel

    tokenizer = build_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    snap = Snapshot()
    record = run_training(
        _config(str(tmp_path / "bert"), tmp_path / "out", data=str(reviews), labels=["neg", "pos"],
                max_steps=1, lora=True, adversarial={"method": "fgm", "epsilon": 0.5}),
        callbacks=[snap],
    )
    assert record["model"]["is_encoder"]
    adapted = {k.split(".lora_")[0].split(".")[-1] for k in snap.before if ".lora_A." in k}
    assert adapted == {"query", "key", "value", "dense"}
    assert record["train"]["global_step"] == 1


# --------------------------------------------------------------------------- adversarial, by hand


def _toy() -> MeanPool:
    """The shared mean-pooling toy with 7 tokens, 4 dimensions and 3 classes."""
    return MeanPool(vocab=7, hidden=4, classes=3)


IDS = torch.tensor([[1, 4, 2, 6, 3]])
LABEL = torch.tensor([2])


def _batch(model: MeanPool) -> PerturbedBatch:
    inputs = {"input_ids": IDS, "labels": LABEL, "attention_mask": torch.ones_like(IDS)}
    return PerturbedBatch(model, inputs, classification_loss, model.get_input_embeddings())


def _by_hand(model: MeanPool, delta: torch.Tensor):
    """(loss, d loss / d delta, d loss / d W) in closed form for one example."""
    with torch.no_grad():
        h = (model.embed(IDS) + delta).mean(dim=1)[0]  # H
        p = torch.softmax(model.head.weight @ h, dim=0)
        residual = p - F.one_hot(LABEL[0], 3).float()  # p - y
        loss = -torch.log(p[LABEL[0]])
        g_row = model.head.weight.T @ residual / IDS.shape[1]  # every position alike
        return loss, g_row.expand(1, IDS.shape[1], -1).clone(), torch.outer(residual, h)


def _unit(g: torch.Tensor) -> torch.Tensor:
    return g / g.norm()


def _run(method, model: MeanPool):
    model.zero_grad()
    return method.step(_batch(model), lambda loss: loss.backward())


def test_fgm_perturbation_and_gradient_by_hand():
    model = _toy()
    result = _run(FGM(epsilon=0.7), model)
    loss0, g0, grad_w0 = _by_hand(model, torch.zeros(1, 5, 4))
    r = 0.7 * _unit(g0)
    torch.testing.assert_close(result.delta, r)
    assert result.delta.norm().item() == pytest.approx(0.7, rel=1e-5)
    torch.testing.assert_close(result.loss, loss0)
    _, _, grad_w1 = _by_hand(model, r)
    torch.testing.assert_close(model.head.weight.grad, grad_w0 + grad_w1)


def test_pgd_steps_and_projection_by_hand():
    model = _toy()
    eps, alpha, steps = 0.5, 0.4, 3  # alpha * steps > eps: the projection must act
    result = _run(PGD(epsilon=eps, alpha=alpha, steps=steps), model)
    _, grad, grad_w0 = _by_hand(model, torch.zeros(1, 5, 4))
    delta = torch.zeros(1, 5, 4)
    for t in range(steps):
        delta = delta + alpha * _unit(grad)
        delta = delta * min(1.0, eps / delta.norm().item())
        if t < steps - 1:
            _, grad, _ = _by_hand(model, delta)
    torch.testing.assert_close(result.delta, delta)
    assert result.delta.norm().item() <= eps + 1e-6
    _, _, grad_w_adv = _by_hand(model, delta)
    torch.testing.assert_close(model.head.weight.grad, grad_w0 + grad_w_adv)


def test_freelb_gradient_is_the_average_over_steps():
    model = _toy()
    eps, alpha, steps = 0.6, 0.25, 4
    result = _run(FreeLB(epsilon=eps, alpha=alpha, steps=steps), model)
    delta = torch.zeros(1, 5, 4)
    grads, losses = [], []
    for t in range(steps):
        loss, g, grad_w = _by_hand(model, delta)
        grads.append(grad_w)
        losses.append(loss)
        if t < steps - 1:
            delta = delta + alpha * _unit(g)
            delta = delta * min(1.0, eps / delta.norm().item())
    torch.testing.assert_close(model.head.weight.grad, torch.stack(grads).mean(0))
    torch.testing.assert_close(result.loss, torch.stack(losses).mean())
    torch.testing.assert_close(result.delta, delta)


def test_perturbed_batch_reads_the_last_real_token_of_a_right_padded_batch(tiny_model_dir):
    """Regression: with a zero perturbation a causal-LM classifier gives exactly its plain
    logits on a right-padded batch (it must still see input_ids to find the last real token)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    model.config.pad_token_id = tok.pad_token_id
    inputs = dict(tok(["a great movie , far too long", "boring"], return_tensors="pt",
                      padding=True))
    with torch.no_grad():
        expected = model.eval()(**inputs).logits
        batch = PerturbedBatch(model, {**inputs, "labels": torch.tensor([0, 1])},
                               classification_loss, model.get_input_embeddings())
        _, logits = batch.forward(batch.zeros())
    torch.testing.assert_close(logits, expected)


def test_symmetric_kl_by_hand():
    a = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    p, q = torch.softmax(a, -1), torch.softmax(b, -1)
    by_hand = ((p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)).mean()
    torch.testing.assert_close(symmetric_kl(a, b), by_hand)
    torch.testing.assert_close(symmetric_kl(a, a), torch.tensor(0.0))
    # B x T x V logits: averaged over the positions the mask keeps
    mask = torch.tensor([[[1.0], [0.0]]])
    per_pos = (p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)
    torch.testing.assert_close(symmetric_kl(a[None], b[None], mask), per_pos[0])


def test_smart_loss_and_ema_by_hand():
    model = _toy()
    method = SMART(weight=2.0, epsilon=0.05, step_size=0.01, noise_std=1e-3, mu=0.5, beta=0.9)
    method.prepare(model)
    with torch.no_grad():  # the model moves away from its EMA copy, as after some training
        model.head.weight.add_(0.3)
    seen = []
    model.zero_grad()
    result = method.step(_batch(model), lambda loss: (seen.append(loss.detach()), loss.backward()))
    assert result.delta.norm().item() <= 0.05 + 1e-6 and result.delta.norm().item() > 0
    with torch.no_grad():
        embeds = model.embed(IDS)
        clean = model.head(embeds.mean(1))
        noisy = model.head((embeds + result.delta).mean(1))
        ema = method.ema_.head(embeds.mean(1))
        expected = (F.cross_entropy(clean, LABEL) + 2.0 * symmetric_kl(noisy, clean)
                    + 0.5 * symmetric_kl(clean, ema))
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], expected)
    old_ema = method.ema_.head.weight.detach().clone()
    method.on_optimizer_step(model)
    torch.testing.assert_close(method.ema_.head.weight, 0.9 * old_ema + 0.1 * model.head.weight)


# --------------------------------------------------------------------------- data and losses


def test_sft_masks_prompt_tokens_exactly():
    tok = build_tokenizer()
    prompt, completion = "Review: a great movie\nSentiment:", " positive"
    feature = tokenize_sft(prompt, completion, tok, max_length=64)
    prompt_ids = tok(prompt)["input_ids"]
    completion_ids = [*tok(completion, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    assert feature["input_ids"] == prompt_ids + completion_ids
    assert feature["labels"] == [-100] * len(prompt_ids) + completion_ids

    tok.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    feature = tokenize_sft(prompt, "positive", tok, max_length=128)
    head = tok(f"<s>user\n{prompt}</s>\n<s>assistant\n", add_special_tokens=False)["input_ids"]
    tail = tok("positive</s>\n", add_special_tokens=False)["input_ids"]
    assert feature["input_ids"] == head + tail
    assert feature["labels"] == [-100] * len(head) + tail
    short = tokenize_sft(prompt, "positive", tok, max_length=len(tail) + 2)
    assert short["input_ids"] == head[-2:] + tail  # the prompt loses tokens from the left

    batch = PadCollator(tok.pad_token_id)([short, feature])
    assert batch["labels"][0, len(short["labels"]):].eq(-100).all()
    assert batch["input_ids"][0, len(short["labels"]):].eq(tok.pad_token_id).all()


def test_pack_blocks_concatenates_documents():
    tok = build_tokenizer()
    texts = ["a great movie", "boring and far too long", "markets fell"]
    ids = []
    for text in texts:
        ids += [*tok(text)["input_ids"], tok.eos_token_id]
    blocks = pack_blocks(texts, tok, block_size=4)
    expected = [ids[i:i + 4] for i in range(0, len(ids) // 4 * 4, 4)]
    assert [b["input_ids"] for b in blocks] == expected
    assert all(b["labels"] == b["input_ids"] for b in blocks)
    with pytest.raises(LmboostError, match="block_size"):
        pack_blocks(texts, tok, block_size=10_000)


def test_class_weights_change_the_loss_as_by_hand(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from lmboost.training import LmboostTrainer

    assert class_weights([0, 0, 0, 1], 2, "balanced").tolist() == pytest.approx([4 / 6, 2.0])
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    batch = dict(tok(["a great movie", "boring", "far too long"], return_tensors="pt",
                     padding=True))
    batch["labels"] = torch.tensor([1, 0, 1])
    weights = torch.tensor([1.0, 3.0])
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    weighted = LmboostTrainer(model=model, args=args, class_weights=weights)
    plain = LmboostTrainer(model=model, args=args)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        ce = F.cross_entropy(logits, batch["labels"], reduction="none")
        w = weights[batch["labels"]]
        by_hand = (w * ce).sum() / w.sum()
        got = weighted.compute_loss(model, dict(batch))
        unweighted = plain.compute_loss(model, dict(batch))
    torch.testing.assert_close(got, by_hand)
    torch.testing.assert_close(unweighted, ce.mean())
    assert not torch.isclose(got, unweighted)


# --------------------------------------------------------------------------- runs


def test_resume_gives_the_same_weights(tiny_model_dir, reviews, tmp_path):
    """Resuming after a kill gives the straight run's weights; a checkpoint the kill left
    half-written (no trainer_state.json) is skipped; train_loss is the resumed steps' mean."""
    settings = dict(data=str(reviews), labels=["neg", "pos"], max_steps=4, eval_steps=2,
                    save_steps=2, learning_rate=1e-3, load_best_model_at_end=False,
                    logging_steps=1)
    whole = run_training(_config(tiny_model_dir, tmp_path / "a", **settings))
    run_training(_config(tiny_model_dir, tmp_path / "b", **settings), callbacks=[StopAt(2)])
    straight = load_file(tmp_path / "a" / "model" / "model.safetensors")
    halfway = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert any((halfway[k] - straight[k]).abs().max() > 1e-4 for k in straight)
    with pytest.raises(LmboostError, match="resume"):
        run_training(_config(tiny_model_dir, tmp_path / "b", **settings))
    cut = tmp_path / "b" / "checkpoints" / "checkpoint-3"
    shutil.copytree(tmp_path / "b" / "checkpoints" / "checkpoint-2", cut)
    (cut / "trainer_state.json").unlink()
    with pytest.raises(LmboostError, match=r"other settings .*learning_rate: 0.001 -> 0.002"):
        run_training(_config(tiny_model_dir, tmp_path / "b", resume=True,
                             **{**settings, "learning_rate": 2e-3}))
    with pytest.warns(UserWarning, match="checkpoint-3 .* was not finished"):
        record = run_training(_config(tiny_model_dir, tmp_path / "b", resume=True, **settings))
    assert record["train"]["resumed_from"].endswith("checkpoint-2")
    assert record["train"]["global_step"] == 4
    last_two = [e["loss"] for e in whole["train"]["log"] if e["step"] > 2]
    assert record["train"]["train_loss"] == pytest.approx(sum(last_two) / 2, rel=1e-4)
    resumed = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], atol=1e-6, rtol=0)


def test_gradient_accumulation_matches_the_whole_batch(tiny_model_dir, reviews, tmp_path):
    """Batch 4 x 2 accumulation steps = batch 8: the same logged losses and gradient norms
    (regression: the classifier's mean loss was not divided by the accumulation steps), and the
    record's global batch."""
    settings = dict(data=str(reviews), labels=["neg", "pos"], max_steps=2, logging_steps=1)
    whole = run_training(_config(tiny_model_dir, tmp_path / "whole", **settings,
                                 per_device_train_batch_size=8))
    split = run_training(_config(tiny_model_dir, tmp_path / "split", **settings,
                                 gradient_accumulation_steps=2))
    assert whole["distributed"]["global_train_batch_size"] == 8
    assert split["distributed"] == {**whole["distributed"], "per_device_train_batch_size": 4,
                                    "train_batch_size_per_process": 4,
                                    "gradient_accumulation_steps": 2}
    assert split["distributed"]["world_size"] == 1
    for key in ("loss", "grad_norm"):
        torch.testing.assert_close(
            torch.tensor([e[key] for e in split["train"]["log"]]),
            torch.tensor([e[key] for e in whole["train"]["log"]]), rtol=1e-4, atol=0,
        )


def test_early_stopping_keeps_the_best_checkpoint(tiny_model_dir, reviews, tmp_path):
    """A learning rate too small to move the dev accuracy: the second eval is no better."""
    record = run_training(_config(tiny_model_dir, tmp_path, data=str(reviews),
                                  labels=["neg", "pos"], learning_rate=1e-12, max_steps=10,
                                  eval_steps=1, early_stopping_patience=1))
    assert record["train"]["global_step"] == 2
    assert record["train"]["best_checkpoint"].endswith("checkpoint-1")


def test_missing_reporter_package_is_a_clear_error(
    tiny_model_dir, reviews, tmp_path, monkeypatch
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in (
        "tensorboard", "tensorboardX") else find_spec(name, *a))
    config = _config(tiny_model_dir, tmp_path, data=str(reviews), labels=["neg", "pos"],
                     report_to="tensorboard")
    with pytest.raises(LmboostError, match="pip install tensorboard"):
        run_training(config)


def test_tensorboard_event_files_hold_the_training_loss(tiny_model_dir, reviews, tmp_path):
    """report_to tensorboard: event files appear in the run folder and hold one train/loss
    scalar per logged step, equal to the losses in the run record."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = run_training(_config(tiny_model_dir, tmp_path, data=str(reviews),
                                  labels=["neg", "pos"], report_to="tensorboard", max_steps=4,
                                  logging_steps=1))
    events = sorted(tmp_path.rglob("events.out.tfevents.*"))
    assert events, f"no event files under {tmp_path}"
    losses = []
    for path in events:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        if "train/loss" in accumulator.Tags()["scalars"]:
            losses += [(e.step, e.value) for e in accumulator.Scalars("train/loss")]
    logged = [(e["step"], e["loss"]) for e in record["train"]["log"] if "loss" in e]
    assert [step for step, _ in losses] == [step for step, _ in logged] == [1, 2, 3, 4]
    assert [v for _, v in losses] == pytest.approx([v for _, v in logged], rel=1e-5)


def test_lm_and_sft_recipes_with_adversaries(tiny_model_dir, reviews, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"review {i}: a great movie, far too long" for i in range(40)))
    lm = run_training(_config(tiny_model_dir, tmp_path / "lm", recipe="lm", data=str(corpus),
                              block_size=16, max_steps=1, adversarial="freelb"))
    assert lm["eval"]["perplexity"] > 1 and lm["data"]["train_blocks"] > 0
    task = task_from_file(reviews, "Review: {text}\nSentiment:", {"neg": "negative",
                          "pos": "positive"}, name="tiny-reviews", pool_size=16)
    register_task(task, overwrite=True)
    tapt = run_training(_config(tiny_model_dir, tmp_path / "tapt", recipe="lm", task="tiny-reviews",
                                block_size=8, max_steps=1))
    assert (tapt["data"]["task"], tapt["data"]["n_train"]) == ("tiny-reviews", 16)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(
        json.dumps({"prompt": f"Review: movie {i}\nSentiment:", "completion": " positive"})
        for i in range(12)
    ))
    sft = run_training(_config(tiny_model_dir, tmp_path / "sft", recipe="sft", data=str(pairs),
                               max_steps=1, lora=True, adversarial={"method": "pgd", "steps": 2}))
    assert sft["eval"]["loss"] > 0 and (tmp_path / "sft" / "adapter").is_dir()
    smart = run_training(_config(tiny_model_dir, tmp_path / "smart", data=str(reviews),
                                 labels=["neg", "pos"], class_weights="balanced",
                                 adversarial={"method": "smart", "mu": 1.0}))
    assert len(smart["class_weights"]) == 2
    assert 0 <= smart["eval"]["accuracy"] <= 1


def test_cli_train_classify_end_to_end(tiny_model_dir, reviews, tmp_path, capsys):
    from lmboost.cli import main

    out = tmp_path / "run"
    code = main(["train", "classify", "--model", tiny_model_dir, "--data", str(reviews),
                 "--set", "labels=neg,pos", "--set", "per_device_train_batch_size=4",
                 "--max-steps", "2", "--no-progress", "--out", str(out)])
    assert code == 0
    record = json.loads((out / "results.json").read_text())
    assert record["train"]["global_step"] == 2
    assert set(record["eval"]) >= {"accuracy", "macro_f1"}
    assert record["parameters"]["trainable"] == record["parameters"]["total"]
    assert record["train"]["seconds_per_step"] > 0 and record["memory"]["peak_mb"] > 0
    assert (out / "model" / "model.safetensors").is_file()
    assert "results:" in capsys.readouterr().out
    code = main(["train", "lm", "--recipe", str(REPO / "recipes" / "sft-example.yaml"),
                 "--out", str(tmp_path / "x")])
    assert code == 2 and "sft recipe" in capsys.readouterr().err


# --------------------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"lerning_rate": 1e-3}, "learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"lora": {"r": 0}}, "lora.r"),
        ({"lora": {"rank": 4}}, "lora.rank"),
        ({"adversarial": {"method": "fgm", "epsilon": -1}}, "adversarial.epsilon"),
        ({"adversarial": {"method": "pgd", "eps": 1}}, "adversarial.eps"),
        ({"adversarial": {"method": "vat"}}, "vat"),
        ({"recipe": "rl"}, "recipe"),
        ({"report_to": "wandb"}, "report_to"),
        ({"class_weights": "some"}, "class_weights"),
        ({"data": "x.csv", "task": None}, "labels"),
    ],
)
def test_bad_recipe_values_name_the_key(values, named):
    data = {"recipe": "classify", "task": "sst2", "out": "out", **values}
    with pytest.raises(RecipeError, match=named):
        build_config(data)


def test_recipe_files_and_overrides(tmp_path):
    overrides = parse_overrides(["lora.r=16", "learning_rate=1e-4", "labels=neg,pos",
                                 "adversarial.method=pgd", "adversarial.steps=5"])
    assert overrides["lora"] == {"r": 16}
    config = load_recipe(REPO / "recipes" / "classify-sst2-lora.yaml",
                         {**overrides, "out": str(tmp_path)})
    assert config.lora.enabled and config.lora.r == 16 and config.learning_rate == 1e-4
    assert config.adversarial.method == "pgd" and config.adversarial.params == {"steps": 5}
    for name in ("tapt-sst2.yaml", "sft-example.yaml"):
        assert load_recipe(REPO / "recipes" / name, {"out": str(tmp_path)}).task == "sst2"
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: classify\ntask: sst2\nbatch_size: 8\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml.*batch_size"):
        load_recipe(bad, {"out": str(tmp_path)})


def test_old_output_dir_key_still_loads_with_a_warning(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(f"recipe: classify\ntask: sst2\noutput_dir: {tmp_path / 'run'}\n")
    with pytest.warns(FutureWarning, match="`output_dir` is deprecated.*call it `out`"):
        config = load_recipe(old)
    assert config.out == str(tmp_path / "run") and "output_dir" not in config.to_dict()
    with pytest.warns(FutureWarning), pytest.raises(RecipeError, match="give only out"):
        load_recipe(old, {"output_dir": "a", "out": "b"})
    with pytest.warns(FutureWarning):  # a later layer's out replaces the file's old key
        assert load_recipe(old, {"out": "b"}).out == "b"
    with pytest.warns(DeprecationWarning):
        assert config.output_dir == config.out
