"""Adversarial NLI rounds R1-R3 (Nie et al. 2020), same layout as CB."""

from __future__ import annotations

from functools import partial

from lmboost.tasks._io import jsonl_examples, sentence
from lmboost.tasks.base import ClassificationTask
from lmboost.tasks.registry import register_task

ANLI_LABELS = ["entailment", "neutral", "contradiction"]
_CODES = {"e": 0, "n": 1, "c": 2}
SIZES = {1: (1000, 1000), 2: (1000, 1000), 3: (1200, 1200)}  # (test, dev)


def _anli(record: dict):
    fields = {
        "premise": " ".join(record["context"].split()),
        "hypothesis": sentence(record["hypothesis"]),
    }
    if record["label"] not in _CODES:
        raise ValueError(f"label {record['label']!r} is not one of e/n/c.")
    return fields, _CODES[record["label"]], None


for _round, (_test, _dev) in SIZES.items():
    register_task(
        ClassificationTask(
            name=f"anli-r{_round}",
            labels=ANLI_LABELS,
            verbalizer=["True", "Neither", "False"],
            template="{premise}\nquestion: {hypothesis} True, False, or Neither?\nanswer:",
            eval_split=f"anli/R{_round}/test.jsonl ({_test})",
            eval_loader=partial(jsonl_examples, f"anli/R{_round}", "test.jsonl", _anli),
            pool_split=f"anli/R{_round}/dev.jsonl ({_dev}; ANLI train is not in the data folder)",
            pool_loader=partial(jsonl_examples, f"anli/R{_round}", "dev.jsonl", _anli),
            description=f"ANLI round {_round}, labels in the HF order entailment/neutral/"
            "contradiction. Eval on the labelled test set; demonstrations come from dev (the "
            "release asks users to tune on dev only). Hypotheses get a final period when they "
            "lack terminal punctuation.",
        )
    )
