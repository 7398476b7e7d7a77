"""Topic and question-type classification: AG News and TREC (Zhao et al. 2021 templates)."""

from __future__ import annotations

import html
import re
from functools import partial

from lmboost.errors import TaskError
from lmboost.tasks._io import data_file, read_lines, read_table, split_off, where
from lmboost.tasks.base import ClassificationTask, Example
from lmboost.tasks.registry import register_task

# ----------------------------------------------------------------------------- AG News
AGNEWS_POOL_PER_CLASS = 250
AGNEWS_SEED = 0
_ENTITY = re.compile(r" ?#(\d+);| ?(quot|amp|lt|gt);")


def _clean_agnews(text: str) -> str:
    """Undo AG News escaping: ``' #39;s'`` -> ``"'s"``, ``' quot;'`` -> ``'"'``, ``\\`` -> space."""
    text = _ENTITY.sub(
        lambda m: html.unescape(f"&#{m[1]};" if m[1] else f"&{m[2]};"), html.unescape(text)
    )
    return " ".join(text.replace("\\", " ").split())


def _read_agnews() -> list[Example]:
    path = data_file("agnews", "test.csv")
    examples = []
    for number, row in read_table(path, ","):
        index = row.get("Class Index", "")
        if index not in ("1", "2", "3", "4"):
            raise TaskError(f"{where(path, number)}: 'Class Index' must be 1-4, got {index!r}.")
        title, description = _clean_agnews(row["Title"]), _clean_agnews(row["Description"])
        joiner = " " if title[-1:] in ".?!" else ". "
        fields = {"text": title + joiner + description, "title": title, "description": description}
        examples.append(Example(fields, int(index) - 1, uid=f"test.csv:{number}"))
    return examples


def _agnews_split(part: int) -> list[Example]:
    """0: the demonstration pool (250 per class), 1: the remaining 6600 eval examples."""
    examples = _read_agnews()
    pool, rest = split_off(
        examples, AGNEWS_POOL_PER_CLASS, AGNEWS_SEED, strata=[ex.label for ex in examples]
    )
    return (pool, rest)[part]


register_task(
    ClassificationTask(
        name="agnews",
        labels=["World", "Sports", "Business", "Sci/Tech"],
        verbalizer=["World", "Sports", "Business", "Technology"],
        template="Article: {text}\nAnswer:",
        eval_split="agnews/test.csv minus the pool (6600 = 7600 - 4 x 250)",
        eval_loader=partial(_agnews_split, 1),
        pool_split="agnews/test.csv, 250 per class drawn with random.Random(0) (1000); "
        "AG News train is not in the data folder",
        pool_loader=partial(_agnews_split, 0),
        description="AG News topic (test.csv, 7600). The train split is unavailable, so the "
        "demonstration pool is a deterministic class-stratified draw of 250 examples per class "
        "from test.csv (seed 0) and the eval set is the other 6600; results are not comparable "
        "with full-test-set numbers. Text = title + '. ' + description with the HTML escapes "
        "undone. Template and label words of Zhao et al. 2021 ('Technology' for Sci/Tech).",
    )
)

# ----------------------------------------------------------------------------- TREC
# The usual coarse-label order (HF `trec` coarse_label): ABBR, ENTY, DESC, HUM, LOC, NUM.
TREC_CODES = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]


def _load_trec(filename: str) -> list[Example]:
    path = data_file("trec", filename)
    examples = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        tag, _, question = line.partition(" ")
        coarse, _, fine = tag.partition(":")
        if coarse not in TREC_CODES or not question.strip():
            raise TaskError(
                f"{where(path, number)}: expected 'COARSE:fine question' with COARSE in "
                f"{TREC_CODES}, found {line[:60]!r}."
            )
        fields = {"question": question.strip(), "fine_label": fine}
        examples.append(Example(fields, TREC_CODES.index(coarse), uid=f"{filename}:{number}"))
    return examples


register_task(
    ClassificationTask(
        name="trec",
        labels=TREC_CODES,
        verbalizer=["Abbreviation", "Entity", "Description", "Person", "Location", "Number"],
        template="Question: {question}\nAnswer Type:",
        eval_split="trec/test.txt (500)",
        eval_loader=partial(_load_trec, "test.txt"),
        pool_split="trec/train.txt (5452)",
        pool_loader=partial(_load_trec, "train.txt"),
        description="TREC question classification, 6 coarse classes in the HF coarse_label "
        "order. Template of Zhao et al. 2021 with full words (Zhao: 'Ab' for ABBR).",
    )
)
