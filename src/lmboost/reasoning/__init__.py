"""Reasoning: chain-of-thought prompting, self-consistency voting and answer extraction.

    >>> from lmboost.reasoning import ReasoningConfig, run_reasoning
    >>> results = run_reasoning(ReasoningConfig(task="gsm8k", mode="fs-cot", limit=20,
    ...                                         self_consistency=5, out="runs/gsm8k"))
    >>> results["accuracy"]

Task families (GSM8K, BIG-Bench Hard, MMLU) are declared once each, as a
:class:`~lmboost.reasoning.tasks.Family` in :mod:`.tasks` (loader, exemplars, prompt formats,
answer extractor by name); adding a family is one more ``register_family(Family(...))``.
:mod:`.prompts` builds any family's prompts from its declaration; :mod:`.extract` reads
answers out of text; :mod:`.vote` is self-consistency;
:mod:`.runner` puts them together over :func:`lmboost.generation.generate`.
"""

from lmboost.reasoning.extract import extract_bbh, extract_choice, extract_number
from lmboost.reasoning.prompts import MODES, answer_prompt, build_prompt, mmlu_context
from lmboost.reasoning.runner import ReasoningConfig, read_item_log, run_reasoning
from lmboost.reasoning.tasks import (
    BBH_TASKS,
    MMLU_SUBJECTS,
    Exemplar,
    ReasoningItem,
    exemplars,
    extract,
    load_items,
    task_names,
)
from lmboost.reasoning.vote import Vote, is_decided, majority_vote, sample_until_decided

__all__ = [
    "BBH_TASKS",
    "MMLU_SUBJECTS",
    "MODES",
    "Exemplar",
    "ReasoningConfig",
    "ReasoningItem",
    "Vote",
    "answer_prompt",
    "build_prompt",
    "exemplars",
    "extract",
    "extract_bbh",
    "extract_choice",
    "extract_number",
    "is_decided",
    "load_items",
    "majority_vote",
    "mmlu_context",
    "read_item_log",
    "run_reasoning",
    "sample_until_decided",
    "task_names",
]
