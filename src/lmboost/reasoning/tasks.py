"""Reasoning tasks: GSM8K, the 27 BIG-Bench Hard tasks and the 57 MMLU subjects.

Names: ``gsm8k``; ``bbh:<task>`` (``bbh`` = all 27); ``mmlu:<subject>`` (``mmlu`` = all 57).
Each item carries its sub-task, its question and its target in the form the task's extractor
returns, so that scoring is ``extract(item, text) == item.target``:

* GSM8K (``gsm8k/test.jsonl``): the number after ``####``, normalised (``"1,200"`` -> ``"1200"``);
  few-shot exemplars are the first 8 training items, rationales without ``<<...>>`` annotations.
* BBH (``bbh/bbh/<task>.json``): the target string itself, exact match as the BBH paper scores
  it; exemplars are the 3 of ``bbh/cot-prompts/<task>.txt``.
* MMLU (``mmlu/test/<subject>_test.csv``): the option letter; exemplars are the 5 dev items.

Each family is one :class:`Family` declaration at the end of this module (found by name in
:data:`FAMILIES`); its answer extractor is named from :data:`EXTRACTORS`.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lmboost.config import data_dir
from lmboost.errors import TaskError
from lmboost.reasoning.extract import LETTERS, extract_bbh, extract_choice, extract_number
from lmboost.tasks.datafiles import data_file, read_jsonl, read_text, where

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


@dataclass(frozen=True)
class Family:
    """One reasoning task family, declared once (see :data:`FAMILIES`): how its items and
    exemplars are read, how its prompts look, how an answer is read out of text.

    Attributes:
        name: the family's name, the part of a task name before ``:`` (``bbh``).
        title: its name in messages ("BBH").
        load: ``(root, sub) -> items`` of one sub-task (``sub`` is "" for a family without
            sub-tasks); ``root`` is ``str(data_dir())``.
        exemplars: ``(root, sub) -> exemplars`` of one sub-task.
        extractor: the name of its answer extractor in :data:`EXTRACTORS`.
        answer_format: what an answer looks like ("number", "choice", a BBH format), one for
            the family or one per sub-task; it picks the zs-cot answer trigger.
        sub_tasks: the sub-tasks (``bbh:<task>``); empty for a single task (``gsm8k``).
        sub_label: what a sub-task is called in messages ("BBH task").
        sub_hint: how a sub-task is written in the list of task names ("task").
        example: one sub-task name, for messages ("bbh:navigate").
        header: text before the demonstrations, ``str.format`` over ``subject`` (the sub-task,
            ``_`` as spaces) and ``description`` (:attr:`describe`'s text).
        zs_header: whether the zero-shot CoT prompt starts with the header too.
        describe: ``(root, sub) -> description`` for the header (None: no description).
        query: the question, ``str.format`` over ``question`` (its text, with each option on a
            line of its own, ``"A. text"``, when the item has options).
        demos: per mode (``direct``, ``fs-cot``), one worked demonstration, ``str.format`` over
            ``question`` (as in ``query``), ``rationale``, ``answer`` and ``trigger`` (the CoT
            trigger).
        replies: per mode, the start of the model's reply ("" when absent).
        scored_choices: continuations scored instead of generating in direct mode (MMLU's
            " A" .. " D"); empty: direct mode generates.
    """

    name: str
    title: str
    load: Callable[[str, str], tuple[ReasoningItem, ...]]
    exemplars: Callable[[str, str], tuple[Exemplar, ...]]
    extractor: str
    answer_format: str | Mapping[str, str]
    query: str
    demos: Mapping[str, str]
    replies: Mapping[str, str] = field(default_factory=dict)
    sub_tasks: tuple[str, ...] = ()
    sub_label: str = ""
    sub_hint: str = ""
    example: str = ""
    header: str = ""
    zs_header: bool = False
    describe: Callable[[str, str], str] | None = None
    scored_choices: tuple[str, ...] = ()

    def format_of(self, sub: str) -> str:
        fmt = self.answer_format
        return fmt if isinstance(fmt, str) else fmt[sub]


FAMILIES: dict[str, Family] = {}
"""The reasoning families by name, in the order :func:`register_family` declared them."""


def register_family(family: Family) -> Family:
    """Make ``family`` available to :func:`task_names` and everything after it."""
    if family.extractor not in EXTRACTORS:
        raise TaskError(f"Family {family.name!r}: unknown extractor {family.extractor!r}; "
                        f"register it in EXTRACTORS ({', '.join(EXTRACTORS)}).")
    FAMILIES[family.name] = family
    return family


def family_of(task: str) -> Family:
    """The family of a sub-task name (``bbh:navigate`` -> BBH)."""
    return FAMILIES[task.partition(":")[0]]


def task_names(name: str) -> list[str]:
    """The sub-tasks a task name stands for (``bbh`` -> all 27 ``bbh:<task>``), validated."""
    family_name, _, sub = name.strip().partition(":")
    family = FAMILIES.get(family_name.lower())
    if family is not None and not family.sub_tasks and not sub:
        return [family.name]
    if family is not None and family.sub_tasks:
        valid = family.sub_tasks
        if not sub:
            return [f"{family.name}:{s}" for s in valid]
        if sub in valid:
            return [f"{family.name}:{sub}"]
        raise TaskError(
            f"Unknown {family.sub_label} '{sub}'. Choose one of: {', '.join(valid)}."
        )
    choices = [
        f.name if not f.sub_tasks else f"{f.name}, {f.name}:<{f.sub_hint}>"
        for f in FAMILIES.values()
    ]
    examples = ", ".join(f.example for f in FAMILIES.values() if f.example)
    raise TaskError(
        f"Unknown reasoning task '{name}'. Choose {', '.join(choices[:-1])} or {choices[-1]}"
        + (f" (e.g. {examples})." if examples else ".")
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
    return list(family_of(task).exemplars(str(data_dir()), task.partition(":")[2]))


def description(task: str) -> str:
    """The text a sub-task's prompt header names as ``{description}`` ("" when none)."""
    describe = family_of(task).describe
    return describe(str(data_dir()), task.partition(":")[2]) if describe else ""


def answer_format(task: str) -> str:
    """What an answer of ``task`` looks like: "number", "choice", or a BBH format."""
    return family_of(task).format_of(task.partition(":")[2])


def extract(item: ReasoningItem, text: str) -> str | None:
    """The answer ``text`` gives to ``item``, in the form of ``item.target``."""
    return EXTRACTORS[family_of(item.task).extractor](item, text)


def option_letters(item: ReasoningItem) -> str:
    """The option letters of a multiple-choice item ("ABCD" for MMLU; read from BBH's input)."""
    if item.options:
        return LETTERS[: len(item.options)]
    return "".join(re.findall(r"(?m)^\(([A-Z])\)", item.question))


EXTRACTORS: dict[str, Callable[[ReasoningItem, str], str | None]] = {
    "number": lambda item, text: extract_number(text),
    "option_letter": lambda item, text: extract_choice(text, option_letters(item)),
    "like_target": lambda item, text: extract_bbh(text, item.target),
}
"""Answer extractors by name: ``(item, text) -> answer`` in the form of ``item.target``. A new
family names one of these, or registers its own here."""


# --------------------------------------------------------------------------- loaders
# Cached per data root (``root`` is ``str(data_dir())``): GSM8K's exemplars are needed for
# every prompt, and its training file is 4 MB.


MmluRow = tuple[str, tuple[str, ...], str, int]


@functools.cache
def _load_task(root: str, task: str) -> tuple[ReasoningItem, ...]:
    return family_of(task).load(root, task.partition(":")[2])


def _gsm8k_items(root: str, sub: str) -> tuple[ReasoningItem, ...]:
    path = data_file("gsm8k", "test.jsonl")
    return tuple(
        ReasoningItem(f"gsm8k/test.jsonl:{line}", "gsm8k", question, _gsm8k_target(path, line, a))
        for line, question, a in _gsm8k_rows(path)
    )


def _bbh_items(root: str, sub: str) -> tuple[ReasoningItem, ...]:
    path = data_file("bbh", "bbh", f"{sub}.json")
    try:
        examples = json.loads(read_text(path))["examples"]
        return tuple(
            ReasoningItem(f"bbh/{sub}#{i}", f"bbh:{sub}", ex["input"], ex["target"].strip())
            for i, ex in enumerate(examples)
        )
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise TaskError(
            f"{path}: expected {{\"examples\": [{{\"input\", \"target\"}}, ...]}} ({err})."
        ) from None


def _mmlu_items(root: str, sub: str) -> tuple[ReasoningItem, ...]:
    return tuple(
        ReasoningItem(f"mmlu/{sub}_test.csv:{line}", f"mmlu:{sub}", question, answer, options)
        for question, options, answer, line in _mmlu_rows(root, "test", sub)
    )


def _mmlu_exemplars(root: str, sub: str) -> tuple[Exemplar, ...]:
    return tuple(
        Exemplar(question, "", answer, options)
        for question, options, answer, _ in _mmlu_rows(root, "dev", sub)
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
def _gsm8k_exemplars(root: str, sub: str = "") -> tuple[Exemplar, ...]:
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


# --------------------------------------------------------------------------- the families
# Prompt shapes: GSM8K and BBH as in Wei et al. 2022 (BBH: Suzgun et al.'s CoT prompt files),
# MMLU as in Hendrycks et al. 2021; see lmboost.reasoning.prompts.

COT_TRIGGER = "Let's think step by step."

register_family(Family(
    name="gsm8k",
    title="GSM8K",
    load=_gsm8k_items,
    exemplars=_gsm8k_exemplars,
    extractor="number",
    answer_format="number",
    query="Q: {question}\nA:",
    demos={
        "direct": "Q: {question}\nA: The answer is {answer}.\n\n",
        "fs-cot": "Q: {question}\nA: {rationale} The answer is {answer}.\n\n",
    },
))

register_family(Family(
    name="bbh",
    title="BBH",
    load=_bbh_items,
    exemplars=lambda root, sub: _bbh_prompt(root, sub)[1],
    extractor="like_target",
    answer_format=BBH_FORMATS,
    query="Q: {question}\nA:",
    demos={
        "direct": "Q: {question}\nA: {answer}\n\n",
        "fs-cot": "Q: {question}\nA: {trigger}\n{rationale}\n\n",
    },
    replies={"fs-cot": " " + COT_TRIGGER},
    sub_tasks=BBH_TASKS,
    sub_label="BBH task",
    sub_hint="task",
    example="bbh:navigate",
    header="{description}\n\n",
    describe=lambda root, sub: _bbh_prompt(root, sub)[0],
))

register_family(Family(
    name="mmlu",
    title="MMLU",
    load=_mmlu_items,
    exemplars=_mmlu_exemplars,
    extractor="option_letter",
    answer_format="choice",
    query="{question}\nAnswer:",
    demos={
        "direct": "{question}\nAnswer: {answer}\n\n",
        "fs-cot": "{question}\nAnswer: The answer is ({answer}).\n\n",
    },
    replies={"fs-cot": " " + COT_TRIGGER},
    sub_tasks=MMLU_SUBJECTS,
    sub_label="MMLU subject",
    sub_hint="subject",
    example="mmlu:anatomy",
    header="The following are multiple choice questions (with answers) about {subject}.\n\n",
    zs_header=True,
    scored_choices=tuple(f" {letter}" for letter in MMLU_LETTERS),
))
