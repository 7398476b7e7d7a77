"""lmboost.training.attacks: embedding PGD checked by hand on a toy model and on a right-padded
causal-LM batch; greedy word substitution on a hand-built lexicon classifier; the neighbour
table and whole-word lookup."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import MeanPool, build_tokenizer

from lmboost.training.attacks import (
    STOPWORDS,
    WordSubstitutionAttack,
    class_associations,
    embedding_neighbours,
    embedding_pgd_attack,
    evaluate_robustness,
    predict_proba,
    same_association,
    substitution_table,
    whole_word_ids,
)

# --------------------------------------------------------------------------- embedding PGD


IDS = torch.tensor([[1, 2, 3, 4], [5, 2, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
LABELS = torch.tensor([1, 0])
BATCH = {"input_ids": IDS, "attention_mask": MASK, "labels": LABELS}


def _by_hand(model: MeanPool, delta: torch.Tensor):
    """(logits, d CE_sum / d delta) for the batch at ``delta``."""
    with torch.no_grad():
        m = MASK.unsqueeze(-1).float()
        n = m.sum(1, keepdim=True)
        logits = model.head(((model.embed(IDS) + delta) * m).sum(1) / n.squeeze(1))
        residual = torch.softmax(logits, -1) - F.one_hot(LABELS, 2).float()  # p - y
        grad = (residual @ model.head.weight)[:, None, :] * m / n
        return logits, grad


def _unit(g: torch.Tensor) -> torch.Tensor:
    return g / g.flatten(1).norm(dim=1).view(-1, 1, 1)


def test_one_pgd_step_by_hand():
    model = MeanPool()
    result = embedding_pgd_attack(model, BATCH, epsilon=0.5, steps=1, alpha=0.3)
    clean, grad = _by_hand(model, torch.zeros(2, 4, 3))
    delta = 0.3 * _unit(grad)  # alpha < epsilon: no projection
    torch.testing.assert_close(result.clean_logits, clean)
    torch.testing.assert_close(result.delta, delta)
    adversarial, _ = _by_hand(model, delta)
    torch.testing.assert_close(result.adversarial_logits, adversarial)
    assert result.delta[1, 2:].abs().max() == 0  # nothing on padding
    clean_loss = F.cross_entropy(clean, LABELS, reduction="none")
    adv_loss = F.cross_entropy(adversarial, LABELS, reduction="none")
    assert (adv_loss > clean_loss).all()


def test_pgd_stays_in_the_ball_and_is_deterministic():
    model = MeanPool()
    first = embedding_pgd_attack(model, BATCH, epsilon=0.4, steps=4)  # 2.5 eps / 4 per step
    again = embedding_pgd_attack(model, BATCH, epsilon=0.4, steps=4)
    torch.testing.assert_close(first.delta, again.delta)
    norms = first.delta.flatten(1).norm(dim=1)
    assert (norms <= 0.4 + 1e-6).all() and (norms > 0.4 - 1e-4).all()  # the ball's surface
    for training in (True, False):  # runs in eval mode, leaves the mode as it was
        model.train(training)
        embedding_pgd_attack(model, BATCH, epsilon=0.4, steps=1)
        assert model.training is training
    with pytest.raises(ValueError, match="epsilon"):
        embedding_pgd_attack(model, BATCH, epsilon=0.0)


def test_pgd_flips_a_close_call_but_not_with_a_tiny_budget():
    """A hand-built margin: robust below the radius that crosses it, fooled above."""
    model = MeanPool(vocab=3, hidden=2)
    with torch.no_grad():
        model.embed.weight.copy_(torch.tensor([[0.0, 0.0], [0.2, 0.0], [0.0, 0.0]]))
        model.head.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    batch = {"input_ids": torch.tensor([[1, 1]]), "attention_mask": torch.ones(1, 2,
             dtype=torch.long), "labels": torch.tensor([1])}
    # logit gap 0.4 = 2 * pooled x; pooled x drops by ||delta|| / sqrt(2) at best (delta spread
    # evenly over two tokens), so the prediction flips once ||delta|| > 0.2 sqrt(2) = 0.283.
    tiny = embedding_pgd_attack(model, batch, epsilon=0.25, steps=3)
    big = embedding_pgd_attack(model, batch, epsilon=0.35, steps=3)
    assert tiny.robust.tolist() == [True] and big.robust.tolist() == [False]
    assert big.clean_logits.argmax(-1).tolist() == [1]
    assert big.adversarial_logits.argmax(-1).tolist() == [0]


def test_relative_budget_scales_with_the_embedding_norm():
    model = MeanPool()
    result = embedding_pgd_attack(model, BATCH, epsilon=0.1, steps=2, relative=True)
    with torch.no_grad():
        norms = (model.embed(IDS) * MASK.unsqueeze(-1)).flatten(1).norm(dim=1)
    torch.testing.assert_close(result.embedding_norm, norms)
    torch.testing.assert_close(result.radius, 0.1 * norms)
    assert (result.delta.flatten(1).norm(dim=1) <= 0.1 * norms + 1e-6).all()


def test_pgd_reads_the_last_real_token_of_a_right_padded_batch(tiny_model_dir):
    """The perturbation goes in through a hook, so the causal LM's head still sees input_ids
    and pools the last real token, not the padding."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    model.config.pad_token_id = tok.pad_token_id
    batch = dict(tok(["a great movie , far too long", "boring"], return_tensors="pt",
                     padding=True))
    with torch.no_grad():
        expected = model.eval()(**batch).logits
    batch["labels"] = expected.argmin(-1)  # attack towards the class it does not predict
    result = embedding_pgd_attack(model, batch, epsilon=1.0, steps=3)
    torch.testing.assert_close(result.clean_logits, expected)
    clean_loss = F.cross_entropy(expected, batch["labels"], reduction="none")
    adv_loss = F.cross_entropy(result.adversarial_logits, batch["labels"], reduction="none")
    assert (adv_loss > clean_loss).all()
    assert all(p.grad is None for p in model.parameters())  # only delta is differentiated


# --------------------------------------------------------------------------- word substitution

LEXICON = {"good": 2.0, "fine": 1.0, "nice": 0.5, "bad": -3.0, "okay": 0.0, "film": 0.0,
           "movie": 0.5}


def lexicon_predict(calls: list[int]):
    """P(positive) = sigmoid(sum of word scores); counts the texts it is asked about."""

    def predict(word_lists):
        calls.append(len(word_lists))
        scores = np.array([sum(LEXICON.get(w.lower(), 0.0) for w in ws) for ws in word_lists])
        p = 1 / (1 + np.exp(-scores))
        return np.stack([1 - p, p], axis=1)

    return predict


def test_greedy_substitution_flips_the_most_important_word_first():
    calls: list[int] = []
    attack = WordSubstitutionAttack({"good": ["okay", "bad"], "fine": ["okay"], "film": ["movie"]})
    result = attack.attack(["a", "good", "and", "fine", "film"], 1, lexicon_predict(calls))
    # deletions: good (-2) ranks above fine (-1) and film (0); at "good", "bad" lowers
    # P(positive) most (score 3 -> -2) and flips the prediction: done after one word.
    assert result.correct_before and not result.correct_after
    assert result.substitutions == [(1, "good", "bad")]
    assert result.words == ["a", "bad", "and", "fine", "film"]
    assert calls == [1, 3, 2] and result.queries == 6


def test_substitution_keeps_only_changes_that_help_and_respects_the_budget():
    calls: list[int] = []
    attack = WordSubstitutionAttack({"good": ["okay"], "fine": ["nice"], "film": ["movie"]},
                                    max_words=2)
    result = attack.attack(["Good", "fine", "film"], 1, lexicon_predict(calls))
    # good -> okay (score 3 -> 1), fine -> nice (1 -> 0.5): still positive; film, the third
    # word by importance, is beyond max_words = 2 (and movie would only help).
    assert result.correct_before and result.correct_after
    assert result.substitutions == [(0, "Good", "Okay"), (1, "fine", "nice")]
    assert result.queries == 1 + 3 + 1 + 1

    unhelpful = WordSubstitutionAttack({"film": ["movie"]}).attack(
        ["film", "fine"], 1, lexicon_predict([]))
    assert unhelpful.substitutions == [] and unhelpful.correct_after


def test_an_example_already_misclassified_is_not_attacked():
    calls: list[int] = []
    result = WordSubstitutionAttack({"good": ["bad"]}).attack(["bad"], 1, lexicon_predict(calls))
    assert not result.correct_before and not result.correct_after
    assert calls == [1] and result.substitutions == []


# --------------------------------------------------------------------------- candidate tables


def test_embedding_neighbours_by_cosine_similarity():
    weight = torch.tensor([
        [1.0, 0.0],    # 0 cat
        [0.9, 0.1],    # 1 dog
        [0.0, 1.0],    # 2 car
        [0.1, 0.9],    # 3 truck
        [1.0, 0.05],   # 4 kitten
        [-1.0, 0.0],   # 5 (not a word here)
    ])
    ids = {"cat": 0, "dog": 1, "car": 2, "truck": 3, "kitten": 4}
    table = embedding_neighbours(weight, ids, k=2, chunk=2)
    assert table["cat"] == ["kitten", "dog"]
    assert table["car"] == ["truck", "dog"]
    strict = embedding_neighbours(weight, ids, k=3, min_similarity=0.9)
    assert strict["car"] == ["truck"]
    assert strict["cat"] == ["kitten", "dog"]


def test_class_associations_and_the_same_association_filter():
    docs = [["Great", "film"]] * 3 + [["awful", "film"]] * 3
    labels = [1, 1, 1, 0, 0, 0]
    # great: (3 + 1) / (3 + 2) / P(pos) with P(pos) = (3 + 1) / (6 + 2): lift 1.6
    # film: (3 + 1) / (6 + 2) / 0.5 = 1.0 for either class: no association
    assert class_associations(docs, labels, 2) == {}  # min_count 5: too rare
    assert class_associations(docs, labels, 2, min_count=3) == {"great": 1, "awful": 0}
    assert class_associations(docs, labels, 2, min_count=3, min_lift=1.7) == {}
    table = {"great": ["awful", "superb", "film", "grand"], "film": ["movie", "awful"],
             "awful": ["great"]}
    kept = same_association(table, {"great": 1, "awful": 0, "superb": 1, "grand": 1}, k=1)
    assert kept == {"great": ["superb"], "film": ["movie"]}  # awful loses its only option


def test_whole_word_ids_are_single_known_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "great": 1, "movie": 2, "boring": 3, "the": 4}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
    ids = whole_word_ids(tok, ["The", "great", "Movie", "boring", "42", "unseen", "a", "x-ray"])
    # the, a: function words; 42, x-ray: not alphabetic; unseen: the unknown token
    assert ids == {"great": 1, "movie": 2, "boring": 3}
    assert "the" in STOPWORDS
    assert whole_word_ids(build_tokenizer(), ["great", "movie"]) == {}  # byte-level pieces


def test_predict_proba_does_not_depend_on_padding(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    model.config.pad_token_id = tok.pad_token_id
    texts = ["a great movie , far too long", "boring", "markets fell as stocks slid"]
    together = predict_proba(model, tok, texts, batch_size=3)
    alone = np.concatenate([predict_proba(model, tok, [t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(together.sum(1), 1.0, atol=1e-6)


# --------------------------------------------------------------------------- on a task


def test_substitution_table_filters_neighbours_by_association():
    weight = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0]])
    ids = {"good": 0, "fine": 1, "bad": 2, "plot": 3}
    plain = substitution_table(weight, ids, k=1)
    assert plain == embedding_neighbours(weight, ids, k=1)
    assert plain["good"] == ["fine"]
    kept = substitution_table(weight, ids, k=1, associations={"good": 1, "fine": 1, "bad": 0})
    assert kept["good"] == ["fine"] and kept["fine"] == ["good"]
    assert "bad" not in kept  # its neighbours carry another class (or none)


def _robustness_setup(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmboost.tasks import ClassificationTask, Example

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    model.config.pad_token_id = tok.pad_token_id
    sentences = ["a great movie", "boring and far too long", "markets fell as stocks slid",
                 "who wrote hamlet", "a great film"]
    task = ClassificationTask(name="tiny-sentiment", labels=["negative", "positive"],
                              verbalizer=["negative", "positive"], template="Review: {sentence}",
                              eval_split="made up", eval_loader=lambda: [])
    predicted = predict_proba(model, tok, [f"Review: {s}" for s in sentences]).argmax(1)
    # gold: the model's own prediction for the first three, the other class for the rest
    labels = [int(p) if i < 3 else 1 - int(p) for i, p in enumerate(predicted)]
    examples = [Example({"sentence": s}, y, uid=str(i))
                for i, (s, y) in enumerate(zip(sentences, labels))]
    return model, tok, task, examples


def test_evaluate_robustness_on_the_tiny_model(tiny_model_dir):
    """Known answers: clean accuracy 3/5 by construction; a radius of 1e-6 of the embedding
    norm changes nothing, and the radius is that share of every example's norm; with no
    candidates substitution queries each example once and keeps clean accuracy; with a table
    it matches WordSubstitutionAttack run by hand, and a second run gives the same result."""
    model, tok, task, examples = _robustness_setup(tiny_model_dir)
    calm = evaluate_robustness(model, tok, task, examples, candidates={}, epsilon=1e-6,
                               steps=2, batch_size=2)
    assert calm["n"] == 5 and calm["clean_accuracy"] == pytest.approx(0.6)
    pgd = calm["embedding_pgd"]
    assert pgd["accuracy"] == pytest.approx(0.6) and pgd["steps"] == 2 and pgd["relative"]
    assert pgd["median_radius_over_embedding_norm"] == pytest.approx(1e-6, rel=1e-4)
    sub = calm["word_substitution"]
    assert (sub["accuracy"], sub["clean_accuracy"], sub["mean_queries"]) == (
        pytest.approx(0.6), pytest.approx(0.6), 1.0)
    assert sub["mean_words_changed_when_flipped"] is None and sub["examples"] == []
    assert "word_substitution" not in evaluate_robustness(model, tok, task, examples[:1],
                                                          epsilon=1e-6, steps=1)

    table = {"great": ["boring", "long"], "movie": ["film", "stocks"], "film": ["movie"],
             "boring": ["great"], "long": ["short"], "markets": ["stocks"]}
    strong = evaluate_robustness(model, tok, task, examples, candidates=table, epsilon=5.0,
                                 steps=3, max_words=2)
    assert strong["embedding_pgd"]["accuracy"] <= strong["clean_accuracy"]
    attack = WordSubstitutionAttack(table, max_words=2)
    by_hand = [
        attack.attack(ex.fields["sentence"].split(), ex.label,
                      lambda ws: predict_proba(model, tok, [f"Review: {' '.join(w)}" for w in ws]))
        for ex in examples
    ]
    sub = strong["word_substitution"]
    assert sub["accuracy"] == pytest.approx(np.mean([o.correct_after for o in by_hand]))
    assert sub["mean_queries"] == pytest.approx(np.mean([o.queries for o in by_hand]))
    flipped = [o for o in by_hand if o.correct_before and not o.correct_after]
    assert len(sub["examples"]) == len(flipped)
    again = evaluate_robustness(model, tok, task, examples, candidates=table, epsilon=5.0,
                                steps=3, max_words=2)
    for key in ("embedding_pgd", "word_substitution"):
        again[key].pop("seconds"), strong[key].pop("seconds")
    assert again == strong
