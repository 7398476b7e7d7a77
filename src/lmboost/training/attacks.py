"""Attacks on a trained text classifier, to measure robustness: one in embedding space, one on
the words.

``embedding_pgd_attack``
    PGD on the input embeddings (Madry et al. 2018), at evaluation time: from delta_0 = 0,
    ``steps`` ascent steps on the cross-entropy of the true class::

        delta_t = Proj_{||delta_i|| <= epsilon_i}(delta_{t-1} + alpha_i g_t / ||g_t||)

    with per-example L2 norms over all tokens and dimensions, zero on padding (the convention
    of :mod:`lmboost.training.adversarial`, so the radius can be the one a model was trained
    at). ``relative=True`` measures ``epsilon`` and ``alpha`` in units of the example's own
    embedding norm ||E[x_i]||, which compares across models whose embeddings differ in scale.
    An example is robust when the model classifies it correctly at delta_0 and at every
    iterate. No random start: the attack is deterministic.

    The perturbation is added by a forward hook on the input-embedding module (which must run
    once per forward, as in transformers' text models), so the model still receives
    ``input_ids`` and a causal LM's classification head still finds the last real token of a
    right-padded batch (given ``inputs_embeds``, transformers reads the last position, which is
    padding for all but the longest example).

``WordSubstitutionAttack``
    Greedy substitution of at most ``max_words`` words (in the style of TextFooler, Jin et al.
    2020, without its sentence-encoder filter). For an example the model gets right:

    1. rank the words that have candidates by importance, the drop in the true class's
       probability when the word is deleted (ties: leftmost first);
    2. for the ``max_words`` most important, in order: try every candidate in its place and
       keep the one that lowers the true class's probability most, if it lowers it at all;
    3. stop as soon as the prediction changes (the attack succeeded).

    Queries per example: 1 + (words with candidates) + max_words x (candidates per word), all
    batched. Everything is deterministic given the candidate table.

``embedding_neighbours`` builds such a table: for each word that is one whole-word token, its
nearest whole-word tokens by cosine similarity of the model's input embeddings. Embedding
neighbours are often near-synonyms ("film" / "movie") but just as often words of opposite
meaning ("good" / "bad"), and swapping those changes the label rather than attacking the
model. ``class_associations`` and ``same_association`` remove such swaps using the labelled
training data: a word is associated with class y when its smoothed lift
P(y | word in x) / P(y) is at least ``min_lift`` over at least ``min_count`` examples (else with
no class), and a substitute is kept only when its association equals the word's. What remains
is a heuristic, not a guarantee of label-preserving edits; any other mapping of words to
substitutes (a synonym dictionary) can be given instead. ``substitution_table`` chains the
three: neighbours (``4 k`` of them when filtering), then the same-association filter, ``k`` left.
``task_substitution_table`` builds it for a classification task: the words of its inputs,
associations from its training pool, neighbours in a model's input embeddings
(``base_embeddings``, the model as published).

``evaluate_robustness`` measures a trained classifier on a task's examples: accuracy clean,
under embedding PGD and under word substitution on the task's last template field (the text a
classification task's template ends with), with the attacks' costs and a few flipped examples.
``median_embedding_norm`` gives the typical ||E[x]|| of a task's inputs, the scale in which an
adversarial training radius can be set (``epsilon = 0.05 x median norm``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmboost.tasks.base import ClassificationTask, Example
from lmboost.training.adversarial.base import (
    added_to_embeddings,
    normalize,
    per_example_norm,
    project,
)

# Function words, negations and question words are never substituted nor substitutes: changing
# them changes what a sentence means (or, for TREC, which answer type a question asks for).
_STOPWORDS = """
    a an the and or but nor if then than so as of to in on at by for with from into onto about
    over under up down out off again is are was were be been being am do does did doing have
    has had having it its it's this that these those there here i me my mine we us our ours you
    your yours he him his she her hers they them their theirs one ones
    not no never none nothing nobody nowhere neither without n't cannot
    very too more most less least much many few some any all each every both only just
    what who whom whose which where when why how
"""
STOPWORDS = frozenset(_STOPWORDS.split())


# --------------------------------------------------------------------------- embedding space


@dataclass
class EmbeddingAttackResult:
    """What :func:`embedding_pgd_attack` found for one batch.

    Attributes:
        clean_logits: N x K logits without perturbation.
        adversarial_logits: N x K logits at the last iterate.
        robust: N booleans: correct without perturbation and at every iterate.
        radius: N perturbation budgets (absolute L2 norms) actually used.
        embedding_norm: N norms ||E[x_i]|| of the unperturbed input embeddings.
        delta: N x T x H, the last iterate (zero on padding).
    """

    clean_logits: torch.Tensor
    adversarial_logits: torch.Tensor
    robust: torch.Tensor
    radius: torch.Tensor
    embedding_norm: torch.Tensor
    delta: torch.Tensor


def embedding_pgd_attack(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    *,
    epsilon: float = 1.0,
    steps: int = 5,
    alpha: float | None = None,
    relative: bool = False,
) -> EmbeddingAttackResult:
    """PGD on the input embeddings of a classifier (see the module docstring).

    Args:
        model: a sequence classifier with ``get_input_embeddings()`` returning N x K logits
            (a transformers or PEFT model); it is run in eval mode and left as it was.
        batch: ``input_ids``, ``labels`` (N class indices) and optionally ``attention_mask`` and
            other model inputs, e.g. from :class:`lmboost.training.data.PadCollator`.
        epsilon: radius of the per-example L2 ball (relative: a fraction of ||E[x_i]||).
        steps: ascent steps (>= 1).
        alpha: step length; default 2.5 epsilon / steps (Madry et al.), in the same units.
    """
    if epsilon <= 0 or steps < 1:
        raise ValueError(f"epsilon must be > 0 and steps >= 1, got {epsilon} and {steps}.")
    alpha = 2.5 * epsilon / steps if alpha is None else alpha
    embeddings = model.get_input_embeddings()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch["labels"]
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask", torch.ones_like(ids)).unsqueeze(-1)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mask = mask.to(embeddings.weight.dtype)
            norm = per_example_norm(embeddings(ids) * mask)
        scale = norm if relative else torch.ones_like(norm)
        radius, step = epsilon * scale, alpha * scale
        delta = torch.zeros(*ids.shape, embeddings.weight.shape[-1], dtype=mask.dtype,
                            device=ids.device)
        robust = torch.ones_like(labels, dtype=torch.bool)
        clean = logits = None
        for t in range(steps + 1):
            delta = delta.detach().requires_grad_(t < steps)
            with torch.set_grad_enabled(t < steps), added_to_embeddings(embeddings, delta):
                logits = model(**inputs).logits
            robust &= logits.detach().argmax(-1) == labels
            if t == 0:
                clean = logits.detach()
            if t < steps:
                loss = F.cross_entropy(logits.float(), labels, reduction="sum")
                (grad,) = torch.autograd.grad(loss, delta)
                delta = project(delta.detach() + step * normalize(grad * mask) * mask, radius)
    finally:
        model.train(was_training)
    return EmbeddingAttackResult(
        clean_logits=clean,
        adversarial_logits=logits.detach(),
        robust=robust,
        radius=radius.flatten(),
        embedding_norm=norm.flatten(),
        delta=delta.detach(),
    )


# --------------------------------------------------------------------------- words


def whole_word_ids(tokenizer: Any, words: Iterable[str], exclude: Iterable[str] = STOPWORDS
                   ) -> dict[str, int]:
    """The words (lower-cased, alphabetic, two letters or more, not in ``exclude``) that the
    tokenizer writes as exactly one token after a space, other than its unknown token, with
    that token's id."""
    skip = set(exclude)
    unique = sorted({w.lower() for w in words if w.isalpha() and len(w) > 1} - skip)
    if not unique:
        return {}
    encoded = tokenizer([" " + w for w in unique], add_special_tokens=False)["input_ids"]
    unknown = getattr(tokenizer, "unk_token_id", None)
    return {w: ids[0] for w, ids in zip(unique, encoded) if len(ids) == 1 and ids[0] != unknown}


def embedding_neighbours(
    weight: torch.Tensor,
    word_ids: Mapping[str, int],
    k: int = 5,
    min_similarity: float = 0.0,
    chunk: int = 1024,
) -> dict[str, list[str]]:
    """For each word of ``word_ids``, up to ``k`` other words of ``word_ids`` ranked by cosine
    similarity of their rows of ``weight`` (V x H input embeddings), at least
    ``min_similarity``; ties go to the alphabetically first word. Words without such a
    neighbour are left out."""
    words = sorted(word_ids)
    if len(words) < 2:
        return {}
    rows = torch.tensor([word_ids[w] for w in words])
    vectors = F.normalize(weight.detach()[rows].float(), dim=-1)
    table: dict[str, list[str]] = {}
    take = min(k + 1, len(words))
    for start in range(0, len(words), chunk):
        sims = vectors[start:start + chunk] @ vectors.T
        index = torch.arange(sims.shape[0])
        sims[index, index + start] = -2.0  # never the word itself
        values, order = sims.topk(take, dim=-1)  # equal values keep the lower index first
        for i, (vals, idx) in enumerate(zip(values.tolist(), order.tolist())):
            near = [words[j] for v, j in zip(vals, idx) if v >= min_similarity and v > -2.0]
            if near[:k]:
                table[words[start + i]] = near[:k]
    return table


def class_associations(
    documents: Iterable[Iterable[str]],
    labels: Sequence[int],
    n_classes: int,
    *,
    min_count: int = 5,
    min_lift: float = 1.3,
) -> dict[str, int]:
    """Lower-cased word -> the class it is associated with in labelled ``documents`` (word
    sequences): argmax_y of the lift (n_wy + 1) / (n_w + K) / P(y), where n_w counts the
    documents holding the word and n_wy those of them labelled y; kept when n_w >= ``min_count``
    and the lift >= ``min_lift``. Words not in the mapping have no association."""
    total: Counter[str] = Counter()
    by_class: list[Counter[str]] = [Counter() for _ in range(n_classes)]
    prior = np.zeros(n_classes)
    for words, label in zip(documents, labels):
        unique = {w.lower() for w in words}
        total.update(unique)
        by_class[label].update(unique)
        prior[label] += 1
    prior = (prior + 1) / (prior.sum() + n_classes)
    out = {}
    for word, n in total.items():
        if n < min_count:
            continue
        lift = [(by_class[y][word] + 1) / (n + n_classes) / prior[y] for y in range(n_classes)]
        best = int(np.argmax(lift))
        if lift[best] >= min_lift:
            out[word] = best
    return out


def same_association(
    table: Mapping[str, Sequence[str]], associations: Mapping[str, int], k: int | None = None
) -> dict[str, list[str]]:
    """``table`` keeping only the substitutes whose class association (None when absent from
    ``associations``) equals their word's, at most ``k`` each; words left with none are
    dropped."""
    out = {}
    for word, options in table.items():
        kept = [o for o in options if associations.get(o) == associations.get(word)][:k]
        if kept:
            out[word] = kept
    return out


def substitution_table(
    weight: torch.Tensor,
    word_ids: Mapping[str, int],
    k: int = 5,
    *,
    min_similarity: float = 0.0,
    associations: Mapping[str, int] | None = None,
    pool_factor: int = 4,
) -> dict[str, list[str]]:
    """Word -> up to ``k`` substitutes: its :func:`embedding_neighbours` among ``word_ids``
    (rows of ``weight``, the input embeddings); with ``associations`` (from
    :func:`class_associations`), the ``pool_factor * k`` nearest filtered by
    :func:`same_association` down to ``k``."""
    if associations is None:
        return embedding_neighbours(weight, word_ids, k=k, min_similarity=min_similarity)
    table = embedding_neighbours(weight, word_ids, k=pool_factor * k,
                                 min_similarity=min_similarity)
    return same_association(table, associations, k=k)


def base_embeddings(spec: str) -> tuple[Any, torch.Tensor]:
    """The tokenizer and the detached V x H input-embedding matrix of the model ``spec`` (a
    catalog alias, folder or hub id) as published, before any training."""
    from transformers import AutoModel

    from lmboost.training.models import load_tokenizer, resolve_model

    source = resolve_model(spec)
    weight = AutoModel.from_pretrained(source.path).get_input_embeddings().weight.detach()
    return load_tokenizer(source), weight


def task_substitution_table(
    task: ClassificationTask,
    tokenizer: Any,
    weight: torch.Tensor,
    k: int = 5,
    *,
    min_similarity: float = 0.0,
    min_lift: float = 1.3,
    min_count: int = 5,
) -> dict[str, Any]:
    """The :func:`substitution_table` of a task: every word of its inputs (the template's last
    field, pool and eval split) that is one whole-word token, with up to ``k`` neighbours in
    ``weight`` that carry the same class association in the training pool
    (:func:`class_associations` at ``min_lift`` and ``min_count``; ``min_lift`` 0: no filter).

    Returns ``{"field": the attacked field, "words": how many words, "table": word ->
    substitutes}``."""
    field_name = task.template_fields[-1]
    pool = task.load_pool()
    documents = [ex.fields[field_name].split() for ex in pool + task.load_eval()]
    ids = whole_word_ids(tokenizer, [w for words in documents for w in words])
    associations = None
    if min_lift > 0:
        associations = class_associations(
            documents[:len(pool)], [ex.label for ex in pool], len(task.labels),
            min_count=min_count, min_lift=min_lift,
        )
    table = substitution_table(weight, ids, k, min_similarity=min_similarity,
                               associations=associations)
    return {"field": field_name, "words": len(ids), "table": table}


@dataclass
class SubstitutionResult:
    """What :class:`WordSubstitutionAttack` did to one example.

    Attributes:
        words: the words after the attack (the input words when nothing was changed).
        correct_before: the model was right on the input.
        correct_after: the model is right on ``words`` (False when it was wrong to begin with).
        substitutions: ``(position, old word, new word)``, in the order they were made.
        queries: model evaluations spent (texts classified).
    """

    words: list[str]
    correct_before: bool
    correct_after: bool
    substitutions: list[tuple[int, str, str]] = field(default_factory=list)
    queries: int = 0


Predict = Callable[[Sequence[Sequence[str]]], np.ndarray]


class WordSubstitutionAttack:
    """Greedy substitution of at most ``max_words`` words from ``candidates`` (lower-cased word
    -> substitutes, best first); see the module docstring."""

    def __init__(self, candidates: Mapping[str, Sequence[str]], max_words: int = 3) -> None:
        self.candidates = candidates
        self.max_words = max_words

    def substitutes(self, word: str) -> list[str]:
        """The candidates for ``word``, with its first letter's case."""
        options = list(self.candidates.get(word.lower(), ()))
        if word[:1].isupper():
            options = [o[:1].upper() + o[1:] for o in options]
        return [o for o in options if o != word]

    def attack(self, words: Sequence[str], label: int, predict: Predict) -> SubstitutionResult:
        """Attack one example: ``words`` with true class ``label``; ``predict`` maps a list of
        word sequences to their N x K class probabilities."""
        words = list(words)
        probs = np.asarray(predict([words]))[0]
        queries = 1
        if int(probs.argmax()) != label:
            return SubstitutionResult(words, False, False, queries=queries)
        score = float(probs[label])
        positions = [i for i, w in enumerate(words) if self.substitutes(w)]
        if positions:
            deleted = [words[:i] + words[i + 1:] for i in positions]
            drop = score - np.asarray(predict(deleted))[:, label]
            queries += len(deleted)
            ranked = sorted(range(len(positions)), key=lambda j: (-drop[j], positions[j]))
            positions = [positions[j] for j in ranked]
        current = list(words)
        substitutions: list[tuple[int, str, str]] = []
        for i in positions[: self.max_words]:
            options = self.substitutes(words[i])
            trials = [current[:i] + [o] + current[i + 1:] for o in options]
            probs = np.asarray(predict(trials))
            queries += len(trials)
            best = int(probs[:, label].argmin())
            if probs[best, label] >= score:
                continue
            current, score = trials[best], float(probs[best, label])
            substitutions.append((i, words[i], options[best]))
            if int(probs[best].argmax()) != label:
                return SubstitutionResult(current, True, False, substitutions, queries)
        return SubstitutionResult(current, True, True, substitutions, queries)


def predict_proba(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int = 256,
    batch_size: int = 32,
) -> np.ndarray:
    """N x K class probabilities of a sequence classifier for ``texts`` (right-padded batches,
    cut at ``max_length`` tokens, eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(
                    list(texts[start:start + batch_size]), truncation=True,
                    max_length=max_length, padding=True, return_tensors="pt",
                )
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
                out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0))


# --------------------------------------------------------------------------- both, on a task


def median_embedding_norm(
    tokenizer: Any, weight: torch.Tensor, texts: Sequence[str], max_length: int = 256
) -> float:
    """The median over ``texts`` of the L2 norm ||E[x]|| of their input embeddings (rows of
    ``weight`` for the tokens of each, cut at ``max_length`` as the classify recipe cuts
    them), over all tokens and dimensions: the norm the adversarial methods perturb."""
    if not texts:
        raise ValueError("median_embedding_norm needs at least one text")
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return float(np.median([float(weight[torch.tensor(row)].norm()) for row in ids]))


def evaluate_robustness(
    model: nn.Module,
    tokenizer: Any,
    task: ClassificationTask,
    examples: Sequence[Example],
    *,
    candidates: Mapping[str, Sequence[str]] | None = None,
    field_name: str | None = None,
    epsilon: float = 0.05,
    steps: int = 5,
    relative: bool = True,
    max_words: int = 3,
    max_length: int = 256,
    batch_size: int = 32,
    n_shown: int = 5,
) -> dict[str, Any]:
    """Accuracy of a trained sequence classifier on ``examples`` of ``task``, clean and under
    each attack (an example is robust when it is right before and throughout the attack).

    Embedding PGD (:func:`embedding_pgd_attack`, radius ``epsilon``, ``steps`` steps, relative
    to each example's embedding norm unless ``relative=False``) runs on the rendered inputs in
    right-padded batches of ``batch_size``, cut at ``max_length`` tokens. Word substitution
    (:class:`WordSubstitutionAttack` with ``candidates``, at most ``max_words`` words) attacks
    the white-space separated words of the field ``field_name`` (default: the template's last
    field), the example re-rendered with the task's template; it is skipped when
    ``candidates`` is None.

    Returns a JSON-ready dict: ``n``, ``clean_accuracy``, ``embedding_pgd`` (``epsilon``,
    ``relative``, ``steps``, ``accuracy``, ``median_radius_over_embedding_norm``,
    ``seconds``) and, with candidates, ``word_substitution`` (``max_words``, ``accuracy``,
    ``clean_accuracy``, ``mean_words_changed_when_flipped`` (None when none flipped),
    ``mean_queries``, ``examples``: up to ``n_shown`` flipped inputs before / after,
    ``seconds``). Deterministic: neither attack draws anything at random.
    """
    from lmboost.training.data import PadCollator, tokenize_classification

    if not examples:
        raise ValueError("evaluate_robustness needs at least one example")
    labels = [ex.label for ex in examples]
    device = next(model.parameters()).device
    features = tokenize_classification([task.render(ex) for ex in examples], labels, tokenizer,
                                       max_length)
    collate = PadCollator(tokenizer.pad_token_id)
    clean, robust, ratio = [], [], []
    start = time.perf_counter()
    for i in range(0, len(features), batch_size):
        batch = {k: v.to(device) for k, v in collate(features[i:i + batch_size]).items()}
        found = embedding_pgd_attack(model, batch, epsilon=epsilon, steps=steps,
                                     relative=relative)
        clean += (found.clean_logits.argmax(-1) == batch["labels"]).tolist()
        robust += found.robust.tolist()
        ratio += (found.radius / found.embedding_norm).tolist()
    result: dict[str, Any] = {
        "n": len(examples),
        "clean_accuracy": float(np.mean(clean)),
        "embedding_pgd": {
            "epsilon": epsilon, "relative": relative, "steps": steps,
            "accuracy": float(np.mean(robust)),
            "median_radius_over_embedding_norm": float(np.median(ratio)),
            "seconds": round(time.perf_counter() - start, 1),
        },
    }
    if candidates is None:
        return result
    attacked = field_name or task.template_fields[-1]
    substitution = WordSubstitutionAttack(candidates, max_words=max_words)
    outcomes, shown = [], []
    start = time.perf_counter()
    for ex in examples:
        def predict(word_lists: Sequence[Sequence[str]], ex: Example = ex) -> np.ndarray:
            texts = [task.render(Example({**ex.fields, attacked: " ".join(ws)}, ex.label,
                                         ex.choices, ex.uid)) for ws in word_lists]
            return predict_proba(model, tokenizer, texts, max_length=max_length,
                                 batch_size=batch_size)

        outcome = substitution.attack(ex.fields[attacked].split(), ex.label, predict)
        outcomes.append(outcome)
        if outcome.correct_before and not outcome.correct_after and len(shown) < n_shown:
            shown.append({"before": ex.fields[attacked], "after": " ".join(outcome.words)})
    flipped = [o for o in outcomes if o.correct_before and not o.correct_after]
    result["word_substitution"] = {
        "max_words": max_words,
        "accuracy": float(np.mean([o.correct_after for o in outcomes])),
        "clean_accuracy": float(np.mean([o.correct_before for o in outcomes])),
        "mean_words_changed_when_flipped": (
            float(np.mean([len(o.substitutions) for o in flipped])) if flipped else None
        ),
        "mean_queries": float(np.mean([o.queries for o in outcomes])),
        "examples": shown,
        "seconds": round(time.perf_counter() - start, 1),
    }
    return result
