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
from lmboost.reasoning.extract import LETTERS
from lmboost.reasoning.tasks import (
    COT_TRIGGER,
    ReasoningItem,
    answer_format,
    description,
    exemplars,
    family_of,
    option_letters,
)

MODES = ("direct", "zs-cot", "fs-cot")

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
    """The first-stage prompt of ``item`` in ``mode`` (the one that produces the chain; for a
    family that scores its options in direct mode, MMLU's, the context they are scored after):
    the family's header, its demonstrations for the mode and the query (zs-cot: no
    demonstrations, the header only where the family says so, and the CoT trigger)."""
    family = family_of(item.task)
    query = family.query.format(question=_question(item.question, item.options))
    if mode == "zs-cot":
        return (_header(item) if family.zs_header else "") + query, " " + COT_TRIGGER
    demos = "".join(
        family.demos[mode].format(
            question=_question(s.question, s.options), rationale=s.rationale, answer=s.answer,
            trigger=COT_TRIGGER,
        )
        for s in exemplars(item.task)
    )
    return _header(item) + demos + query, family.replies.get(mode, "")


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
    """The 5-shot MMLU context (Hendrycks et al.) after which " A" .. " D" are scored: the
    direct-mode prompt."""
    return build_prompt(item, "direct")[0]


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


def _header(item: ReasoningItem) -> str:
    family = family_of(item.task)
    if not family.header:
        return ""
    subject = item.task.partition(":")[2].replace("_", " ")
    text = description(item.task) if family.describe else ""
    return family.header.format(subject=subject, description=text)


def _question(question: str, options: tuple[str, ...]) -> str:
    """The question as prompts show it: as it is, or, with options, stripped and followed by
    one line per option ("A. text")."""
    if not options:
        return question
    lines = [question.strip()]
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, options)]
    return "\n".join(lines)
