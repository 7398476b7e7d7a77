"""SuperGLUE tasks: RTE, CB, BoolQ, COPA, WiC.

NLI templates follow Zhao et al. 2021 (``{premise}\\nquestion: {hypothesis} True or False?\\n
answer:``). BoolQ, COPA and WiC have only the 32-example FewGLUE train set as demonstration pool.
"""

from __future__ import annotations

from functools import partial

from lmboost.tasks._io import jsonl_examples, label_index, sentence
from lmboost.tasks.base import ClassificationTask
from lmboost.tasks.registry import register_task

RTE_LABELS = ["entailment", "not_entailment"]
CB_LABELS = ["entailment", "contradiction", "neutral"]
BOOL_LABELS = ["false", "true"]
NLI_NOTE = " Hypotheses get a final period when they lack terminal punctuation."


def _nli(labels: list[str], record: dict):
    fields = {
        "premise": " ".join(record["premise"].split()),
        "hypothesis": sentence(record["hypothesis"]),
    }
    return fields, label_index(record["label"], labels), None


def _boolq(record: dict):
    question = " ".join(record["question"].split()).rstrip("?")
    fields = {"passage": " ".join(record["passage"].split()), "question": question + "?"}
    return fields, label_index(record["label"], BOOL_LABELS), None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _copa(record: dict):
    """lm-eval-harness style: "<premise without period> because|therefore" + " <choice>"."""
    premise = " ".join(record["premise"].split())
    connector = {"cause": "because", "effect": "therefore"}[record["question"]]
    fields = {
        "premise": premise,
        "premise_stem": premise.rstrip(".!?"),
        "connector": connector,
        "question": record["question"],
        "choice1": record["choice1"],
        "choice2": record["choice2"],
    }
    choices = (_lower_first(record["choice1"]), _lower_first(record["choice2"]))
    label = int(record["label"])
    if label not in (0, 1):
        raise ValueError(f"label {label} is not 0 or 1.")
    return fields, label, choices


def _wic(record: dict):
    fields = {
        "word": record["word"],
        "sentence1": " ".join(record["sentence1"].split()),
        "sentence2": " ".join(record["sentence2"].split()),
    }
    return fields, label_index(record["label"], BOOL_LABELS), None


register_task(
    ClassificationTask(
        name="rte",
        labels=RTE_LABELS,
        verbalizer=["True", "False"],
        template="{premise}\nquestion: {hypothesis} True or False?\nanswer:",
        eval_split="rte/val.jsonl (277; GLUE/SuperGLUE validation)",
        eval_loader=partial(jsonl_examples, "rte", "val.jsonl", partial(_nli, RTE_LABELS)),
        pool_split="rte/train.jsonl (2490)",
        pool_loader=partial(jsonl_examples, "rte", "train.jsonl", partial(_nli, RTE_LABELS)),
        description="RTE textual entailment; template and words of Zhao et al. 2021." + NLI_NOTE,
    )
)

register_task(
    ClassificationTask(
        name="cb",
        labels=CB_LABELS,
        verbalizer=["True", "False", "Neither"],
        template="{premise}\nquestion: {hypothesis} True, False, or Neither?\nanswer:",
        eval_split="cb/val.jsonl (56; SuperGLUE validation)",
        eval_loader=partial(jsonl_examples, "cb", "val.jsonl", partial(_nli, CB_LABELS)),
        pool_split="cb/train.jsonl (250)",
        pool_loader=partial(jsonl_examples, "cb", "train.jsonl", partial(_nli, CB_LABELS)),
        description="CommitmentBank 3-way NLI; Zhao et al. 2021 template with "
        "True/False/Neither." + NLI_NOTE,
    )
)

register_task(
    ClassificationTask(
        name="boolq",
        labels=BOOL_LABELS,
        verbalizer=["no", "yes"],
        template="{passage}\nquestion: {question}\nanswer:",
        eval_split="boolq/val.jsonl (3270; SuperGLUE validation)",
        eval_loader=partial(jsonl_examples, "boolq", "val.jsonl", _boolq),
        pool_split="boolq/train_fewglue32.jsonl (32; FewGLUE train, not the full train set)",
        pool_loader=partial(jsonl_examples, "boolq", "train_fewglue32.jsonl", _boolq),
        description="BoolQ yes/no questions over a Wikipedia passage (GPT-3 style prompt); "
        "questions are lower-case in the data and get a '?'. Passages are long: few demos fit "
        "a small model's context.",
    )
)

register_task(
    ClassificationTask(
        name="copa",
        labels=["choice1", "choice2"],
        verbalizer=["choice1", "choice2"],
        template="{premise_stem} {connector}",
        eval_split="copa/val.jsonl (100; SuperGLUE validation)",
        eval_loader=partial(jsonl_examples, "copa", "val.jsonl", _copa),
        pool_split="copa/train_fewglue32.jsonl (32; FewGLUE train)",
        pool_loader=partial(jsonl_examples, "copa", "train_fewglue32.jsonl", _copa),
        per_example_choices=True,
        domain_premise="{connector}",
        description="COPA two-choice causal reasoning as classification with per-example "
        "choices (lm-eval-harness style): the prompt is the premise without its final period "
        "plus 'because' (question=cause) or 'therefore' (effect); the two candidate "
        "continuations are the alternatives with a lower-cased first letter. The verbalizer "
        "only names the options; Example.choices holds the words scored.",
    )
)

register_task(
    ClassificationTask(
        name="wic",
        labels=BOOL_LABELS,
        verbalizer=["No", "Yes"],
        template="Sentence 1: {sentence1}\nSentence 2: {sentence2}\nquestion: Is the word "
        "'{word}' used with the same meaning in both sentences? Yes or No?\nanswer:",
        eval_split="wic/val.jsonl (638; SuperGLUE validation)",
        eval_loader=partial(jsonl_examples, "wic", "val.jsonl", _wic),
        pool_split="wic/train_fewglue32.jsonl (32; FewGLUE train)",
        pool_loader=partial(jsonl_examples, "wic", "train_fewglue32.jsonl", _wic),
        description="Word-in-Context: does the target word have the same sense in both "
        "sentences (No = false, Yes = true).",
    )
)
