"""100-example subsets of MNLI, QQP and DBpedia-14 from the Lifelong-ICL benchmark (Xu et al.
2024): the full evaluation splits are not in the data folder.

Each subset folder ships ``test.jsonl`` (100, the eval set) and five small balanced demonstration
pools ``train_0..4.jsonl``; the pool here is their concatenation (checked disjoint from the test
set). Results on these subsets are NOT comparable with published full-split numbers; the ``-100``
suffix in every name says so.
"""

from __future__ import annotations

from functools import partial

from lmboost.tasks._io import jsonl_examples, label_index, sentence
from lmboost.tasks.base import ClassificationTask, Example
from lmboost.tasks.registry import register_task

FOLDER = "lifelong_icl_subsets"
POOL_FILES = [f"train_{i}.jsonl" for i in range(5)]

MNLI_LABELS = ["entailment", "neutral", "contradiction"]
QQP_LABELS = ["not duplicate", "duplicate"]
DBPEDIA_LABELS = [
    "company",
    "educational institution",
    "artist",
    "athlete",
    "office holder",
    "mean of transportation",
    "building",
    "natural place",
    "village",
    "animal",
    "plant",
    "album",
    "film",
    "written work",
]
# Zhao et al. 2021's DBpedia words and instruction.
DBPEDIA_WORDS = [
    "Company",
    "School",
    "Artist",
    "Athlete",
    "Politician",
    "Transportation",
    "Building",
    "Nature",
    "Village",
    "Animal",
    "Plant",
    "Album",
    "Film",
    "Book",
]


def _mnli(record: dict):
    fields = {
        "premise": " ".join(record["premise"].split()),
        "hypothesis": sentence(record["hypothesis"]),
    }
    return fields, label_index(record["label"], MNLI_LABELS), None


def _qqp(record: dict):
    fields = {
        "question1": " ".join(record["question1"].split()),
        "question2": " ".join(record["question2"].split()),
    }
    return fields, label_index(record["label"], QQP_LABELS), None


def _dbpedia(record: dict):
    fields = {"title": record["title"].strip(), "content": " ".join(record["content"].split())}
    return fields, label_index(record["label"], DBPEDIA_LABELS), None


def _eval(subset: str, convert) -> list[Example]:
    return jsonl_examples(f"{FOLDER}/{subset}", "test.jsonl", convert)


def _pool(subset: str, convert) -> list[Example]:
    return [ex for f in POOL_FILES for ex in jsonl_examples(f"{FOLDER}/{subset}", f, convert)]


_NOTE = (
    " 100-example Lifelong-ICL subsample of the HF split: not comparable with full-split "
    "results. Pool = train_0..train_4.jsonl concatenated."
)

register_task(
    ClassificationTask(
        name="mnli-100",
        labels=MNLI_LABELS,
        verbalizer=["True", "Neither", "False"],
        template="{premise}\nquestion: {hypothesis} True, False, or Neither?\nanswer:",
        eval_split="lifelong_icl_subsets/mnli/test.jsonl (100-example subset)",
        eval_loader=partial(_eval, "mnli", _mnli),
        pool_split="lifelong_icl_subsets/mnli/train_0..4.jsonl (300)",
        pool_loader=partial(_pool, "mnli", _mnli),
        description="MNLI 3-way NLI, same template as CB/ANLI." + _NOTE,
    )
)

register_task(
    ClassificationTask(
        name="qqp-100",
        labels=QQP_LABELS,
        verbalizer=["No", "Yes"],
        template="Question 1: {question1}\nQuestion 2: {question2}\nquestion: Do both questions "
        "ask the same thing? Yes or No?\nanswer:",
        eval_split="lifelong_icl_subsets/qqp/test.jsonl (100-example subset; 70 not duplicate)",
        eval_loader=partial(_eval, "qqp", _qqp),
        pool_split="lifelong_icl_subsets/qqp/train_0..4.jsonl (200)",
        pool_loader=partial(_pool, "qqp", _qqp),
        description="QQP duplicate-question detection." + _NOTE,
    )
)

register_task(
    ClassificationTask(
        name="dbpedia14-100",
        labels=DBPEDIA_LABELS,
        verbalizer=DBPEDIA_WORDS,
        template="Article: {content}\nAnswer:",
        instruction="Classify the documents based on whether they are about a Company, School, "
        "Artist, Athlete, Politician, Transportation, Building, Nature, Village, Animal, Plant, "
        "Album, Film, or Book.",
        eval_split="lifelong_icl_subsets/dbpedia_14/test.jsonl (100-example subset)",
        eval_loader=partial(_eval, "dbpedia_14", _dbpedia),
        pool_split="lifelong_icl_subsets/dbpedia_14/train_0..4.jsonl (1400)",
        pool_loader=partial(_pool, "dbpedia_14", _dbpedia),
        description="DBpedia-14 ontology classes (HF order); Zhao et al. 2021 instruction, "
        "template and one-word labels." + _NOTE,
    )
)
