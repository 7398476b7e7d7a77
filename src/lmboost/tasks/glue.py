"""GLUE tasks with full files here: QNLI and MRPC (RTE is in superglue.py; MNLI and QQP are only
available as 100-example subsets, see subsets.py)."""

from __future__ import annotations

import csv
from functools import partial

from lmboost.errors import TaskError
from lmboost.tasks._io import data_file, read_table, split_off, where
from lmboost.tasks.base import ClassificationTask, Example
from lmboost.tasks.registry import register_task

QNLI_LABELS = ["entailment", "not_entailment"]
QNLI_POOL_PER_CLASS = 250
QNLI_SEED = 0


def _read_tsv(folder: str, filename: str, convert) -> list[Example]:
    """Tab-separated file with header, no quoting (fields contain bare '"')."""
    path = data_file(folder, filename)
    examples = []
    for number, row in read_table(path, "\t", quoting=csv.QUOTE_NONE):
        try:
            fields, label = convert(row)
        except (KeyError, ValueError) as err:
            raise TaskError(f"{where(path, number)}: malformed row ({err}).") from None
        examples.append(Example(fields, label, uid=f"{folder}/{filename}:{number}"))
    return examples


def _qnli_row(row: dict[str, str]):
    fields = {"question": row["question"].strip(), "sentence": row["sentence"].strip()}
    return fields, QNLI_LABELS.index(row["label"].strip())


def _qnli_split(part: int) -> list[Example]:
    """0: pool (250 per class), 1: the other 4963 dev examples."""
    examples = _read_tsv("qnli", "dev.tsv", _qnli_row)
    pool, rest = split_off(
        examples, QNLI_POOL_PER_CLASS, QNLI_SEED, strata=[ex.label for ex in examples]
    )
    return (pool, rest)[part]


def _mrpc_row(row: dict[str, str]):
    fields = {"sentence1": row["#1 String"].strip(), "sentence2": row["#2 String"].strip()}
    return fields, ["0", "1"].index(row["Quality"].strip())


register_task(
    ClassificationTask(
        name="qnli",
        labels=QNLI_LABELS,
        verbalizer=["True", "False"],
        template='{sentence}\nquestion: This sentence answers "{question}" True or False?\nanswer:',
        eval_split="qnli/dev.tsv minus the pool (4963 = 5463 - 2 x 250)",
        eval_loader=partial(_qnli_split, 1),
        pool_split="qnli/dev.tsv, 250 per class drawn with random.Random(0) (500); "
        "QNLI train is not in the data folder",
        pool_loader=partial(_qnli_split, 0),
        description="QNLI (GLUE v2 dev, 5463). No train split is available, so the pool is a "
        "deterministic class-stratified draw of 250 per class from dev (seed 0) and the eval set "
        "is the remaining 4963. Zhao-style NLI layout: the context sentence, then the claim that "
        "it answers the question.",
    )
)

register_task(
    ClassificationTask(
        name="mrpc",
        labels=["not_equivalent", "equivalent"],
        verbalizer=["No", "Yes"],
        template="Sentence 1: {sentence1}\nSentence 2: {sentence2}\nquestion: Do both sentences "
        "mean the same thing? Yes or No?\nanswer:",
        eval_split="mrpc/dev.tsv (408; GLUE validation)",
        eval_loader=partial(_read_tsv, "mrpc", "dev.tsv", _mrpc_row),
        pool_split="mrpc/train.tsv (3668; GLUE train)",
        pool_loader=partial(_read_tsv, "mrpc", "train.tsv", _mrpc_row),
        description="MRPC paraphrase detection (Quality 1 = equivalent).",
    )
)
