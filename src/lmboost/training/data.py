"""Training data for the three recipes, tokenized and ready for :class:`PadCollator`.

- ``classify``: ``(text, label)`` pairs. From a registered task, training examples are its
  demonstration pool (``load_pool``) and evaluation examples its eval split; the text is the
  task's rendered input (``task.render``). From a data file (CSV/TSV/JSONL), rows are rendered
  with ``template`` and labelled from ``label_column`` against ``labels``.
- ``lm``: raw text for continued pretraining, tokenized per document (special tokens as the
  tokenizer adds them, EOS after each document), concatenated and cut into blocks of
  ``block_size`` tokens (the remainder is dropped). TAPT (``task``) uses the task's own inputs
  without labels: the pool for training, the eval split for evaluation; DAPT (``data``) a
  corpus file: ``.txt`` (each non-empty line a document) or ``.jsonl`` (``text_field``).
- ``sft``: prompt/completion pairs with the loss on completion tokens only (labels -100 on the
  prompt). With a chat template (and ``chat_template: true``) the prompt is the user turn plus
  the generation prompt and the completion the rest of the rendered conversation (the assistant
  text and its end-of-turn marker); otherwise the prompt is the plain text (with BOS if the
  tokenizer adds one) and the completion its text plus EOS. Prompt and completion are tokenized
  separately and concatenated, so the boundary is exact. From a task, the prompt is the rendered
  input and the completion the gold answer word; from a ``.jsonl`` file, ``prompt_field`` and
  ``completion_field``.

Without ``eval_data`` a data file's evaluation set is a seeded hold-out of ``eval_size``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmboost.errors import DataNotFoundError, TaskError
from lmboost.tasks import ClassificationTask, Example, get_task, task_from_file
from lmboost.tasks.datafiles import read_jsonl, read_text, where
from lmboost.training.recipes import RecipeError, TrainConfig

IGNORE_INDEX = -100


class TokenizedDataset(torch.utils.data.Dataset):
    """A list of tokenized examples (dicts of ``input_ids``, ``attention_mask``, ``labels``)."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


@dataclass
class TrainData:
    """Tokenized training and evaluation sets, the class names (classify) and their sources."""

    train: TokenizedDataset
    eval: TokenizedDataset
    labels: list[str] | None = None
    sources: dict[str, Any] = field(default_factory=dict)

    @property
    def train_labels(self) -> list[int]:
        """The class index of every training example (classify)."""
        return [int(f["labels"]) for f in self.train.features]

    @property
    def eval_labels(self) -> list[int]:
        """The class index of every evaluation example (classify)."""
        return [int(f["labels"]) for f in self.eval.features]


class PadCollator:
    """Pads a list of examples into a batch on the right: ``input_ids`` with the pad token,
    ``attention_mask`` and ``token_type_ids`` with 0, token ``labels`` with -100; class labels
    (one int per example) are stacked."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        width = max(len(f["input_ids"]) for f in features)
        fill = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}
        for key in features[0]:
            values = [f[key] for f in features]
            if isinstance(values[0], int):
                batch[key] = torch.tensor(values, dtype=torch.long)
                continue
            pad = fill.get(key, 0)
            batch[key] = torch.tensor(
                [list(v) + [pad] * (width - len(v)) for v in values], dtype=torch.long
            )
        return batch


def build_data(config: TrainConfig, tokenizer: Any) -> TrainData:
    """The tokenized data of ``config``'s recipe (see the module docstring)."""
    builders = {"classify": _classify_data, "lm": _lm_data, "sft": _sft_data}
    return builders[config.recipe](config, tokenizer)


# --------------------------------------------------------------------------- classify


def classification_examples(
    config: TrainConfig,
) -> tuple[ClassificationTask, list[Example], list[Example]]:
    """``(task, train examples, eval examples)`` for recipe classify (before subsetting)."""
    if config.task is not None:
        task = get_task(config.task)
        if task.per_example_choices:
            raise TaskError(
                f"Task {task.name!r} is multiple choice (each example has its own answers), which "
                "a classification head cannot learn; train it with recipe sft."
            )
        return task, task.load_pool(), task.load_eval()
    labels = list(config.labels or [])
    words = {label: label for label in labels}
    task = task_from_file(
        config.data, config.template, words, label_column=config.label_column, labels=labels
    )
    examples = task.load_eval()
    if config.eval_data is not None:
        eval_task = task_from_file(
            config.eval_data, config.template, words, label_column=config.label_column,
            labels=labels,
        )
        return task, examples, eval_task.load_eval()
    train, held_out = hold_out(examples, config.eval_size, config.seed)
    return task, train, held_out


def tokenize_classification(
    texts: Sequence[str], labels: Sequence[int], tokenizer: Any, max_length: int
) -> list[dict[str, Any]]:
    """One feature dict per text: its token ids (cut at ``max_length``) and class label."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    features = []
    for i, label in enumerate(labels):
        feature = {key: list(encoded[key][i]) for key in encoded}
        feature["labels"] = int(label)
        features.append(feature)
    return features


def _classify_data(config: TrainConfig, tokenizer: Any) -> TrainData:
    task, train, evaluation = classification_examples(config)
    train = subset(train, config.max_train_examples, config.seed)
    evaluation = subset(evaluation, config.max_eval_examples, config.seed)

    def features(examples: list[Example]) -> TokenizedDataset:
        texts = [task.render(ex) for ex in examples]
        return TokenizedDataset(
            tokenize_classification(texts, [ex.label for ex in examples], tokenizer,
                                    config.max_length)
        )

    return TrainData(
        train=features(train),
        eval=features(evaluation),
        labels=list(task.labels),
        sources=_sources(config, task, len(train), len(evaluation)),
    )


# --------------------------------------------------------------------------- lm


def task_inputs(task: ClassificationTask, examples: Sequence[Example]) -> list[str]:
    """The raw input text of each example (its template fields joined by newlines, no labels)."""
    return ["\n".join(str(ex.fields[name]) for name in task.template_fields) for ex in examples]


def read_corpus(path: str | Path, text_field: str = "text") -> list[str]:
    """The documents of a corpus file: non-empty lines of a ``.txt``, or ``text_field`` of each
    record of a ``.jsonl``."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"Corpus file {path} does not exist.")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        texts = [str(record[text_field]) for record in _jsonl(path, (text_field,))]
    else:
        texts = [line.strip() for line in read_text(path).split("\n") if line.strip()]
    if not texts:
        raise TaskError(f"Corpus file {path} holds no text: give a file with some.")
    return texts


def pack_blocks(texts: Sequence[str], tokenizer: Any, block_size: int) -> list[dict[str, Any]]:
    """Tokenize each text (plus EOS), concatenate and cut into ``block_size``-token blocks whose
    labels are their own ids (the model shifts them); the remainder is dropped."""
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for tokens in tokenizer(list(texts))["input_ids"]:
        ids.extend(tokens)
        if eos is not None:
            ids.append(eos)
    n = len(ids) // block_size
    if n == 0:
        raise TaskError(
            f"The text holds {len(ids)} tokens, fewer than one block of block_size={block_size}; "
            "give more text or a smaller block_size."
        )
    blocks = [ids[i * block_size : (i + 1) * block_size] for i in range(n)]
    return [{"input_ids": b, "attention_mask": [1] * block_size, "labels": list(b)} for b in blocks]


def _lm_data(config: TrainConfig, tokenizer: Any) -> TrainData:
    task = None
    if config.task is not None:
        task = get_task(config.task)
        train_texts = task_inputs(task, task.load_pool())
        eval_texts = task_inputs(task, task.load_eval())
    else:
        train_texts = read_corpus(config.data, config.text_field)
        if config.eval_data is not None:
            eval_texts = read_corpus(config.eval_data, config.text_field)
        else:
            train_texts, eval_texts = hold_out(train_texts, config.eval_size, config.seed)
    train_texts = subset(train_texts, config.max_train_examples, config.seed)
    eval_texts = subset(eval_texts, config.max_eval_examples, config.seed)
    train = pack_blocks(train_texts, tokenizer, config.block_size)
    evaluation = pack_blocks(eval_texts, tokenizer, config.block_size)
    sources = _sources(config, task, len(train_texts), len(eval_texts))
    sources.update(unit="documents", train_blocks=len(train), eval_blocks=len(evaluation))
    return TrainData(TokenizedDataset(train), TokenizedDataset(evaluation), sources=sources)


# --------------------------------------------------------------------------- sft


def tokenize_sft(
    prompt: str, completion: str, tokenizer: Any, max_length: int, chat_template: bool = True
) -> dict[str, Any]:
    """Token ids of ``prompt + completion`` with labels -100 on every prompt token.

    Uses the tokenizer's chat template when it has one and ``chat_template`` is true (see the
    module docstring). Too long a pair loses prompt tokens from the left first, then completion
    tokens from the right.
    """
    if chat_template and getattr(tokenizer, "chat_template", None):
        user = [{"role": "user", "content": prompt}]
        head = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": completion}], tokenize=False
        )
        tail = full[len(head):] if full.startswith(head) else completion + tokenizer.eos_token
        prompt_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    else:
        prompt_ids = tokenizer(prompt)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        completion_ids = [*completion_ids, tokenizer.eos_token_id]
    completion_ids = completion_ids[:max_length]
    keep = max_length - len(completion_ids)
    prompt_ids = prompt_ids[len(prompt_ids) - keep:] if keep > 0 else []
    ids = [*prompt_ids, *completion_ids]
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    }


def sft_pairs(config: TrainConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(train, eval)`` prompt/completion pairs from the task or the ``.jsonl`` data file."""
    if config.task is not None:
        task = get_task(config.task)

        def pairs(examples: list[Example]) -> list[tuple[str, str]]:
            return [(task.prompt(ex), task.answer_text(ex)) for ex in examples]

        return pairs(task.load_pool()), pairs(task.load_eval())
    fields = (config.prompt_field, config.completion_field)

    def read(path: str) -> list[tuple[str, str]]:
        return [(str(r[fields[0]]), str(r[fields[1]])) for r in _jsonl(Path(path), fields)]

    if Path(config.data).suffix.lower() not in (".jsonl", ".ndjson"):
        raise RecipeError(f"sft data must be a .jsonl file of {fields} records: {config.data}.")
    train = read(config.data)
    if config.eval_data is not None:
        return train, read(config.eval_data)
    return hold_out(train, config.eval_size, config.seed)


def _sft_data(config: TrainConfig, tokenizer: Any) -> TrainData:
    train, evaluation = sft_pairs(config)
    train = subset(train, config.max_train_examples, config.seed)
    evaluation = subset(evaluation, config.max_eval_examples, config.seed)

    def features(pairs: list[tuple[str, str]]) -> TokenizedDataset:
        return TokenizedDataset([
            tokenize_sft(p, c, tokenizer, config.max_length, config.chat_template)
            for p, c in pairs
        ])

    task = get_task(config.task) if config.task is not None else None
    uses_template = bool(config.chat_template and getattr(tokenizer, "chat_template", None))
    sources = _sources(config, task, len(train), len(evaluation))
    sources["chat_template"] = uses_template
    return TrainData(features(train), features(evaluation), sources=sources)


# --------------------------------------------------------------------------- helpers


def hold_out(items: Sequence[Any], size: float, seed: int) -> tuple[list[Any], list[Any]]:
    """``(rest, held_out)`` in original order: ``size`` items (a fraction if below 1, at least
    one) chosen by a ``random.Random(seed)`` shuffle."""
    n = len(items)
    k = max(1, round(size * n)) if size < 1 else int(size)
    if not 0 < k < n:
        raise TaskError(
            f"Cannot hold out {k} of {n} examples for evaluation: give eval_data, or an eval_size "
            "that leaves both parts non-empty."
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    chosen = set(order[:k])
    return [x for i, x in enumerate(items) if i not in chosen], [items[i] for i in sorted(chosen)]


def subset(items: Sequence[Any], limit: int | None, seed: int) -> list[Any]:
    """At most ``limit`` items, a ``random.Random(seed)`` choice kept in original order."""
    if limit is None or limit >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def _jsonl(path: Path, required: Sequence[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataNotFoundError(f"Data file {path} does not exist.")
    records = []
    for number, record in read_jsonl(path):
        missing = [k for k in required if k not in record]
        if missing:
            raise TaskError(f"{where(path, number)}: missing field(s) {missing}.")
        records.append(record)
    if not records:
        raise TaskError(f"{path} holds no records.")
    return records


def _sources(
    config: TrainConfig, task: ClassificationTask | None, n_train: int, n_eval: int
) -> dict[str, Any]:
    sources: dict[str, Any] = {"n_train": n_train, "n_eval": n_eval, "unit": "examples"}
    if task is not None and config.task is not None:
        sources.update(task=task.name, train_split=task.pool_split, eval_split=task.eval_split)
    else:
        sources.update(data=config.data, eval_data=config.eval_data or f"hold-out of "
                       f"{config.eval_size} (seed {config.seed})")
    return sources
