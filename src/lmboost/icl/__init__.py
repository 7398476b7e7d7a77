"""In-context learning: k-shot prompts, scoring them once, and calibrating the scores many ways."""

from lmboost.icl.prompts import (
    CONTENT_FREE_INPUTS,
    build_contexts,
    build_prefix,
    content_free_example,
    select_demonstrations,
)
from lmboost.icl.runner import ICLConfig, ScoreSet, eval_sample, run_icl, score_run

__all__ = [
    "CONTENT_FREE_INPUTS",
    "ICLConfig",
    "ScoreSet",
    "build_contexts",
    "build_prefix",
    "content_free_example",
    "eval_sample",
    "run_icl",
    "score_run",
    "select_demonstrations",
]
