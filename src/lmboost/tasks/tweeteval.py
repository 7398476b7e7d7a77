"""TweetEval (Barbieri et al. 2020): sentiment, emotion, hate, irony, offensive.

Each split is a pair of line-aligned files, ``<split>_text.txt`` and ``<split>_labels.txt``.
Tweets with empty text (7 in hate/train, 1 in hate/val) are skipped.
"""

from __future__ import annotations

from functools import partial

from lmboost.errors import TaskError
from lmboost.tasks._io import data_file, read_lines, where
from lmboost.tasks.base import ClassificationTask, Example
from lmboost.tasks.registry import register_task


def _load(subtask: str, split: str, n_labels: int) -> list[Example]:
    text_path = data_file("tweeteval", subtask, f"{split}_text.txt")
    label_path = data_file("tweeteval", subtask, f"{split}_labels.txt")
    texts, labels = read_lines(text_path), read_lines(label_path)
    if len(texts) != len(labels):
        raise TaskError(
            f"{text_path} has {len(texts)} lines but {label_path} has {len(labels)}; the two "
            "files must be line-aligned."
        )
    allowed = [str(i) for i in range(n_labels)]
    examples = []
    for (number, text), (_, label) in zip(texts, labels):
        if label.strip() not in allowed:
            raise TaskError(
                f"{where(label_path, number)}: label {label!r} is not one of {allowed}."
            )
        text = " ".join(text.split())
        if text:
            uid = f"tweeteval/{subtask}/{split}:{number}"
            examples.append(Example({"text": text}, int(label), uid=uid))
    return examples


# name, labels (mapping.txt order), verbalizer, answer prefix, pool split, sizes (test, pool)
_SUBTASKS = [
    (
        "sentiment",
        ["negative", "neutral", "positive"],
        ["negative", "neutral", "positive"],
        "Sentiment:",
        "val",
        (12284, 2000),
    ),
    (
        "emotion",
        ["anger", "joy", "optimism", "sadness"],
        ["anger", "joy", "optimism", "sadness"],
        "Emotion:",
        "train",
        (1421, 3257),
    ),
    ("hate", ["not-hate", "hate"], ["no", "yes"], "Hate speech:", "train", (2970, 8993)),
    ("irony", ["non_irony", "irony"], ["no", "yes"], "Ironic:", "train", (784, 2862)),
    (
        "offensive",
        ["not-offensive", "offensive"],
        ["no", "yes"],
        "Offensive:",
        "train",
        (860, 11916),
    ),
]

for _sub, _labels, _words, _prefix, _pool, (_n_test, _n_pool) in _SUBTASKS:
    _note = (
        " The sentiment train text is not in the data folder, so demonstrations come from the "
        "validation split."
        if _sub == "sentiment"
        else ""
    )
    register_task(
        ClassificationTask(
            name=f"tweeteval-{_sub}",
            labels=_labels,
            verbalizer=_words,
            template="Tweet: {text}\n" + _prefix,
            eval_split=f"tweeteval/{_sub}/test_* ({_n_test})",
            eval_loader=partial(_load, _sub, "test", len(_labels)),
            pool_split=f"tweeteval/{_sub}/{_pool}_* ({_n_pool})",
            pool_loader=partial(_load, _sub, _pool, len(_labels)),
            description=f"TweetEval {_sub} (user mentions anonymised as @user); labels in "
            f"mapping.txt order.{_note}",
        )
    )
