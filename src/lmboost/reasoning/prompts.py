"""Prompts for the three modes, as (user text, start of the model's reply) pairs.

* ``direct``: answer-only few-shot prompting, the baseline of the CoT papers: GSM8K with the 8
  exemplars' final answers ("A: The answer is 72."), BBH with its 3 exemplars' answers, MMLU the
  standard 5-shot prompt of Hendrycks et al. (scored, not generated: " A" .. " D").
* ``zs-cot`` (Kojima et al., 2022): "Q: ...\\nA: Let's think step by step." and, for each chain,
  a second prompt that appends the chain and an answer trigger such as "Therefore, the answer
  (arabic numerals) is"; the answer is read from trigger + the model's short continuation.
* ``fs-cot`` (Wei et al., 2022): worked exemplars with rationales — GSM8K's first 8 training
  solutions ending "The answer is N.", BBH's own CoT prompt files. MMLU ships no rationales: its
  5 dev exemplars end "The answer is (X)." and the question is followed by the zero-shot trigger.

Without a chat template the two parts are concatenated; with one, the user text becomes the
user message and the reply start opens the assistant's turn (see ``lmboost.generation``).
"""

from __future__ import annotations

from lmboost.generation import Prompt
from lmboost.reasoning.tasks import (
    MMLU_LETTERS,
    ReasoningItem,
    answer_format,
    bbh_description,
    exemplars,
    option_letters,
)

MODES = ("direct", "zs-cot", "fs-cot")
COT_TRIGGER = "Let's think step by step."
MMLU_CHOICES = tuple(f" {letter}" for letter in MMLU_LETTERS)

#: Kojima et al.'s answer-extraction triggers, by answer format ("choice" is filled per item).
ANSWER_TRIGGERS = {
    "number": "Therefore, the answer (arabic numerals) is",
    "True/False": "Therefore, the answer (True or False) is",
    "Yes/No": "Therefore, the answer (Yes or No) is",
    "yes/no": "Therefore, the answer (yes or no) is",
    "valid/invalid": "Therefore, the answer (valid or invalid) is",
    "brackets": "Therefore, the answer is",
    "words": "Therefore, the answer is",
}


def build_prompt(item: ReasoningItem, mode: str) -> Prompt:
    """The first-stage prompt of ``item`` in ``mode`` (the one that produces the chain; for
    MMLU's direct mode the context that the option letters are scored after)."""
    family = item.task.partition(":")[0]
    query = _query(item)
    if mode == "zs-cot":
        head = _mmlu_header(item) if family == "mmlu" else ""
        return head + query, " " + COT_TRIGGER
    shots = exemplars(item.task)
    if family == "mmlu":
        if mode == "direct":
            return mmlu_context(item), ""
        demos = "".join(
            _mmlu_question(s.question, s.options) + f" The answer is ({s.answer}).\n\n"
            for s in shots
        )
        return _mmlu_header(item) + demos + query, " " + COT_TRIGGER
    if family == "gsm8k":
        demos = "".join(
            f"Q: {s.question}\nA: {s.rationale + ' ' if mode == 'fs-cot' else ''}"
            f"The answer is {s.answer}.\n\n"
            for s in shots
        )
        return demos + query, ""
    description = bbh_description(item.task)
    if mode == "direct":
        demos = "".join(f"Q: {s.question}\nA: {s.answer}\n\n" for s in shots)
        return f"{description}\n\n{demos}{query}", ""
    demos = "".join(f"Q: {s.question}\nA: {COT_TRIGGER}\n{s.rationale}\n\n" for s in shots)
    return f"{description}\n\n{demos}{query}", " " + COT_TRIGGER


def answer_trigger(item: ReasoningItem) -> str:
    """The zs-cot answer-extraction trigger for ``item`` (Kojima et al., Table 9)."""
    fmt = answer_format(item.task)
    if fmt != "choice":
        return ANSWER_TRIGGERS[fmt]
    letters = option_letters(item)
    if len(letters) < 2:
        return "Therefore, the answer is"
    return f"Therefore, among {letters[0]} through {letters[-1]}, the answer is"


def answer_prompt(prompt: Prompt, chain: str, item: ReasoningItem) -> Prompt:
    """The zs-cot second-stage prompt: the first prompt, the chain, then the answer trigger."""
    user, reply = (prompt, "") if isinstance(prompt, str) else prompt
    return user, f"{reply} {chain.strip()}\n{answer_trigger(item)}"


def mmlu_context(item: ReasoningItem) -> str:
    """The 5-shot MMLU context (Hendrycks et al.) after which " A" .. " D" are scored."""
    shots = "".join(
        _mmlu_question(s.question, s.options) + f" {s.answer}\n\n" for s in exemplars(item.task)
    )
    return _mmlu_header(item) + shots + _query(item)


def stop_strings(mode: str, chat: bool) -> tuple[str, ...]:
    """Where a first-stage completion ends: before the model starts a new "Q:" and, after
    few-shot exemplars (which a blank line separates) or a direct answer (one line), at the
    first blank line. A chat model's CoT may lay its steps out in paragraphs, so it runs on."""
    if chat and mode != "direct":
        return ("\nQ:",)
    if mode == "zs-cot":
        return ("\nQ:", "\n\n\n")
    return ("\n\n", "\nQ:")


ANSWER_STOP = ("\n\n", "\nQ:")
"""Where a zs-cot second-stage (answer) completion ends."""


def _query(item: ReasoningItem) -> str:
    if item.task.startswith("mmlu:"):
        return _mmlu_question(item.question, item.options)
    return f"Q: {item.question}\nA:"


def _mmlu_header(item: ReasoningItem) -> str:
    subject = item.task.partition(":")[2].replace("_", " ")
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


def _mmlu_question(question: str, options: tuple[str, ...]) -> str:
    lines = [question.strip()]
    lines += [f"{letter}. {text}" for letter, text in zip(MMLU_LETTERS, options)]
    return "\n".join(lines) + "\nAnswer:"
