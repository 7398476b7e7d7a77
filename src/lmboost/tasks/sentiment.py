"""Sentence classification: SST-2, SST-5 (sentiment) and Subj (subjectivity).

Templates follow Zhao et al. 2021 ("Review: ...\\nSentiment:") and Lu et al. 2022 for SST-5/Subj.
"""

from __future__ import annotations

from functools import partial

from lmboost.errors import TaskError
from lmboost.tasks._io import data_file, read_jsonl, read_lines, where
from lmboost.tasks.base import ClassificationTask, Example
from lmboost.tasks.registry import register_task


def _unquote(sentence: str) -> str:
    """Drop one pair of wrapping double quotes (a CSV-export artifact in the SST-5/Subj files)."""
    if len(sentence) >= 2 and sentence[0] == sentence[-1] == '"':
        return sentence[1:-1]
    return sentence


def _load_sst2(filename: str) -> list[Example]:
    """``stsa.binary.*``: ``<0|1> <sentence>`` per line."""
    path = data_file("sst2", filename)
    examples = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        label, _, sentence = line.partition(" ")
        if label not in ("0", "1") or not sentence.strip():
            raise TaskError(
                f"{where(path, number)}: expected '<0|1> <sentence>', found {line[:60]!r}."
            )
        examples.append(
            Example({"sentence": sentence.strip()}, int(label), uid=f"{filename}:{number}")
        )
    return examples


def _load_sentence_jsonl(folder: str, filename: str, n_labels: int) -> list[Example]:
    """``{"sentence": str, "label": "0".."K-1"}`` per line (ordered-prompt format)."""
    path = data_file(folder, filename)
    allowed = [str(i) for i in range(n_labels)]
    examples = []
    for number, record in read_jsonl(path):
        label = str(record.get("label"))
        if label not in allowed or not isinstance(record.get("sentence"), str):
            raise TaskError(
                f"{where(path, number)}: expected a 'sentence' string and a label in {allowed}."
            )
        fields = {"sentence": _unquote(record["sentence"].strip())}
        examples.append(Example(fields, int(label), uid=f"{filename}:{number}"))
    return examples


register_task(
    ClassificationTask(
        name="sst2",
        labels=["negative", "positive"],
        verbalizer=["negative", "positive"],
        template="Review: {sentence}\nSentiment:",
        eval_split="sst2/stsa.binary.dev (872; GLUE SST-2 validation size)",
        eval_loader=partial(_load_sst2, "stsa.binary.dev"),
        pool_split="sst2/stsa.binary.train (6920)",
        pool_loader=partial(_load_sst2, "stsa.binary.train"),
        description="SST-2 binary sentiment, lower-cased tokenized sentences (Zhao et al. 2021 "
        "copy). Template of Zhao et al. 2021 with lower-case label words.",
    )
)

register_task(
    ClassificationTask(
        name="sst5",
        labels=["very negative", "negative", "neutral", "positive", "very positive"],
        verbalizer=["terrible", "bad", "okay", "good", "great"],
        template="Review: {sentence}\nSentiment:",
        eval_split="sst5/test.jsonl (2210)",
        eval_loader=partial(_load_sentence_jsonl, "sst5", "test.jsonl", 5),
        pool_split="sst5/train.jsonl (8544)",
        pool_loader=partial(_load_sentence_jsonl, "sst5", "train.jsonl", 5),
        description="SST-5 fine-grained sentiment (standard 8544/1101/2210 splits, "
        "ordered-prompt copy); label words terrible/bad/okay/good/great as in Lu et al. 2022. "
        "One pair of wrapping double quotes (CSV artifact) is removed from sentences.",
    )
)

register_task(
    ClassificationTask(
        name="subj",
        labels=["subjective", "objective"],
        verbalizer=["subjective", "objective"],
        template="Input: {sentence}\nType:",
        eval_split="subj/test.jsonl (2000)",
        eval_loader=partial(_load_sentence_jsonl, "subj", "test.jsonl", 2),
        pool_split="subj/train.jsonl (8000)",
        pool_loader=partial(_load_sentence_jsonl, "subj", "train.jsonl", 2),
        description="Subjectivity (Pang & Lee 2004), the 8000/2000 split of LM-BFF; template as in "
        "Lu et al. 2022. One pair of wrapping double quotes is removed from sentences.",
    )
)
