"""Reasoning tasks: GSM8K, the 27 BIG-Bench Hard tasks and the 57 MMLU subjects.

Names: ``gsm8k``; ``bbh:<task>`` (``bbh`` = all 27); ``mmlu:<subject>`` (``mmlu`` = all 57).
Each item carries its sub-task, its question and its target in the form the task's extractor
returns, so that scoring is ``extract(item, text) == item.target``:

* GSM8K (``gsm8k/test.jsonl``): the number after ``####``, normalised (``"1,200"`` -> ``"1200"``);
  few-shot exemplars are the first 8 training items, rationales without ``<<...>>`` annotations.
* BBH (``bbh/bbh/<task>.json``): the target string itself, exact match as the BBH paper scores
  it; exemplars are the 3 of ``bbh/cot-prompts/<task>.txt``.
* MMLU (``mmlu/test/<subject>_test.csv``): the option letter; exemplars are the 5 dev items.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from dataclasses import dataclass

from lmboost.config import data_dir
from lmboost.errors import TaskError
from lmboost.reasoning.extract import extract_bbh, extract_choice, extract_number
from lmboost.tasks._io import data_file, read_jsonl, read_text, where

BBH_FORMATS = {
    "boolean_expressions": "True/False",
    "causal_judgement": "Yes/No",
    "date_understanding": "choice",
    "disambiguation_qa": "choice",
    "dyck_languages": "brackets",
    "formal_fallacies": "valid/invalid",
    "geometric_shapes": "choice",
    "hyperbaton": "choice",
    "logical_deduction_five_objects": "choice",
    "logical_deduction_seven_objects": "choice",
    "logical_deduction_three_objects": "choice",
    "movie_recommendation": "choice",
    "multistep_arithmetic_two": "number",
    "navigate": "Yes/No",
    "object_counting": "number",
    "penguins_in_a_table": "choice",
    "reasoning_about_colored_objects": "choice",
    "ruin_names": "choice",
    "salient_translation_error_detection": "choice",
    "snarks": "choice",
    "sports_understanding": "yes/no",
    "temporal_sequences": "choice",
    "tracking_shuffled_objects_five_objects": "choice",
    "tracking_shuffled_objects_seven_objects": "choice",
    "tracking_shuffled_objects_three_objects": "choice",
    "web_of_lies": "Yes/No",
    "word_sorting": "words",
}
"""The answer format of each BBH task (what its targets look like), in alphabetical order."""

BBH_TASKS = tuple(BBH_FORMATS)

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge",
    "college_biology", "college_chemistry", "college_computer_science", "college_mathematics",
    "college_medicine", "college_physics", "computer_security", "conceptual_physics",
    "econometrics", "electrical_engineering", "elementary_mathematics", "formal_logic",
    "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics",
    "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history",
    "high_school_world_history", "human_aging", "human_sexuality", "international_law",
    "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law",
    "professional_medicine", "professional_psychology", "public_relations", "security_studies",
    "sociology", "us_foreign_policy", "virology", "world_religions",
)

MMLU_LETTERS = "ABCD"
GSM8K_SHOTS = 8


@dataclass(frozen=True)
class ReasoningItem:
    """One question: ``task`` is its sub-task (``gsm8k``, ``bbh:navigate``, ``mmlu:anatomy``),
    ``target`` the gold answer as the extractor writes it, ``options`` MMLU's four option texts.
    ``uid`` names the source row (``file:line`` or ``file#index``)."""

    uid: str
    task: str
    question: str
    target: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exemplar:
    """A worked demonstration: question, reasoning chain (may be empty) and final answer."""

    question: str
    rationale: str
    answer: str
    options: tuple[str, ...] = ()


def task_names(name: str) -> list[str]:
    """The sub-tasks a task name stands for (``bbh`` -> all 27 ``bbh:<task>``), validated."""
    family, _, sub = name.strip().partition(":")
    family = family.lower()
    if family == "gsm8k" and not sub:
        return ["gsm8k"]
    if family in ("bbh", "mmlu"):
        valid = BBH_TASKS if family == "bbh" else MMLU_SUBJECTS
        if not sub:
            return [f"{family}:{s}" for s in valid]
        if sub in valid:
            return [f"{family}:{sub}"]
        what = "BBH task" if family == "bbh" else "MMLU subject"
        raise TaskError(f"Unknown {what} '{sub}'. Choose one of: {', '.join(valid)}.")
    raise TaskError(
        f"Unknown reasoning task '{name}'. Choose gsm8k, bbh, bbh:<task> or mmlu, "
        "mmlu:<subject> (e.g. bbh:navigate, mmlu:anatomy)."
    )


def load_items(name: str, limit: int | None = None) -> list[ReasoningItem]:
    """The evaluation items of a task; ``limit`` keeps the first N of each sub-task."""
    if limit is not None and limit < 1:
        raise TaskError(f"limit must be at least 1, not {limit}.")
    root = str(data_dir())
    items: list[ReasoningItem] = []
    for task in task_names(name):
        items.extend(_load_task(root, task)[:limit])
    return items


def exemplars(task: str) -> list[Exemplar]:
    """The few-shot demonstrations of one sub-task (8 for GSM8K, 3 for BBH, 5 for MMLU)."""
    family, _, sub = task.partition(":")
    root = str(data_dir())
    if family == "gsm8k":
        return list(_gsm8k_exemplars(root))
    if family == "bbh":
        return list(_bbh_prompt(root, sub)[1])
    return [
        Exemplar(question, "", answer, options)
        for question, options, answer, _ in _mmlu_rows(root, "dev", sub)
    ]


def bbh_description(task: str) -> str:
    """The one-paragraph task description that opens a BBH CoT prompt file."""
    return _bbh_prompt(str(data_dir()), task.partition(":")[2])[0]


def answer_format(task: str) -> str:
    """What an answer of ``task`` looks like: "number", "choice", or a BBH format."""
    family, _, sub = task.partition(":")
    if family == "gsm8k":
        return "number"
    if family == "mmlu":
        return "choice"
    return BBH_FORMATS[sub]


def extract(item: ReasoningItem, text: str) -> str | None:
    """The answer ``text`` gives to ``item``, in the form of ``item.target``."""
    family = item.task.partition(":")[0]
    if family == "gsm8k":
        return extract_number(text)
    if family == "mmlu":
        return extract_choice(text, MMLU_LETTERS)
    return extract_bbh(text, item.target)


def option_letters(item: ReasoningItem) -> str:
    """The option letters of a multiple-choice item ("ABCD" for MMLU; read from BBH's input)."""
    if item.options:
        return MMLU_LETTERS[: len(item.options)]
    return "".join(re.findall(r"(?m)^\(([A-Z])\)", item.question))


# --------------------------------------------------------------------------- loaders
# Cached per data root (``root`` is ``str(data_dir())``): GSM8K's exemplars are needed for
# every prompt, and its training file is 4 MB.


MmluRow = tuple[str, tuple[str, ...], str, int]


@functools.cache
def _load_task(root: str, task: str) -> tuple[ReasoningItem, ...]:
    family, _, sub = task.partition(":")
    if family == "gsm8k":
        path = data_file("gsm8k", "test.jsonl")
        return tuple(
            ReasoningItem(f"gsm8k/test.jsonl:{line}", task, question, _gsm8k_target(path, line, a))
            for line, question, a in _gsm8k_rows(path)
        )
    if family == "bbh":
        path = data_file("bbh", "bbh", f"{sub}.json")
        try:
            examples = json.loads(read_text(path))["examples"]
            return tuple(
                ReasoningItem(f"bbh/{sub}#{i}", task, ex["input"], ex["target"].strip())
                for i, ex in enumerate(examples)
            )
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise TaskError(
                f"{path}: expected {{\"examples\": [{{\"input\", \"target\"}}, ...]}} ({err})."
            ) from None
    return tuple(
        ReasoningItem(f"mmlu/{sub}_test.csv:{line}", task, question, answer, options)
        for question, options, answer, line in _mmlu_rows(root, "test", sub)
    )


def _gsm8k_rows(path) -> list[tuple[int, str, str]]:
    rows = []
    for line, record in read_jsonl(path):
        if not isinstance(record.get("question"), str) or not isinstance(record.get("answer"), str):
            raise TaskError(f"{where(path, line)}: expected string fields 'question' and 'answer'.")
        rows.append((line, record["question"], record["answer"]))
    return rows


def _gsm8k_target(path, line: int, answer: str) -> str:
    if "####" not in answer or (target := extract_number(answer)) is None:
        raise TaskError(f"{where(path, line)}: the answer has no final '#### <number>'.")
    return target


@functools.cache
def _gsm8k_exemplars(root: str) -> tuple[Exemplar, ...]:
    path = data_file("gsm8k", "train.jsonl")
    shots = []
    for line, question, answer in _gsm8k_rows(path)[:GSM8K_SHOTS]:
        steps = re.sub(r"<<[^>]*>>", "", answer.rsplit("####", 1)[0])
        rationale = " ".join(s.strip() for s in steps.split("\n") if s.strip())
        shots.append(Exemplar(question, rationale, _gsm8k_target(path, line, answer)))
    return tuple(shots)


@functools.cache
def _bbh_prompt(root: str, sub: str) -> tuple[str, tuple[Exemplar, ...]]:
    """(description, exemplars) parsed from ``cot-prompts/<sub>.txt``: a canary line, a line
    ``-----``, the description, then ``Q: ...\\nA: Let's think step by step.\\n... So the
    answer is X.`` blocks separated by blank lines."""
    path = data_file("bbh", "cot-prompts", f"{sub}.txt")
    lines = read_text(path).split("\n")
    if len(lines) < 3 or lines[1].strip() != "-----":
        raise TaskError(f"{path}: expected a canary line, then '-----', then the prompt.")
    description, *blocks = "\n".join(lines[2:]).strip().split("\n\nQ: ")
    shots = []
    for block in blocks:
        question, sep, reply = block.partition("\nA: Let's think step by step.")
        final = re.search(r"So the answer is (.+?)\.?\s*$", reply)
        if not sep or not final:
            raise TaskError(f"{path}: a demonstration lacks 'A: Let's think step by step.' or "
                            "'So the answer is X.'.")
        shots.append(Exemplar(question.strip(), reply.strip(), final[1].strip()))
    return description.strip(), tuple(shots)


@functools.cache
def _mmlu_rows(root: str, split: str, subject: str) -> tuple[MmluRow, ...]:
    """(question, options, answer letter, line) for each row of a headerless MMLU CSV."""
    path = data_file("mmlu", split, f"{subject}_{split}.csv")
    rows = []
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    start = 1
    try:
        for values in reader:
            line, start = start, reader.line_num + 1
            if not values:
                continue
            if len(values) != 6 or values[5].strip() not in MMLU_LETTERS:
                raise TaskError(f"{where(path, line)}: expected 6 columns question,A,B,C,D,answer "
                                "with the answer one of A, B, C, D.")
            rows.append((values[0], tuple(values[1:5]), values[5].strip(), line))
    except csv.Error as err:
        raise TaskError(f"{where(path, start)}: cannot parse row ({err}).") from None
    return tuple(rows)
