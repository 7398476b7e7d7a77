"""k-shot prompts in the shape of Zhao et al. (2021): demonstrations, then the query, joined
by the task's ``demo_separator`` ("\\n\\n" for every registered task)::

    [instruction]\\n\\n
    Review: <demo 1>\\nSentiment: positive\\n\\n
    ...
    Review: <query>\\nSentiment:          <- each label word is scored after this, " positive"

The prompt itself is built by :meth:`lmboost.tasks.ClassificationTask.prompt`, which SFT uses too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from lmboost.errors import TaskError
from lmboost.tasks import ClassificationTask, Example

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


def select_demonstrations(
    pool: Sequence[Example], k: int, seed: int, strategy: str = "random"
) -> list[Example]:
    """Draw ``k`` demonstrations from ``pool`` for one seed.

    "random" samples uniformly; "balanced" cycles through the classes so each appears
    ceil/floor(k / n_classes) times. The order is shuffled with the same seed.
    """
    if k == 0:
        return []
    if k > len(pool):
        raise TaskError(f"Asked for {k} demonstrations but the pool holds only {len(pool)}.")
    rng = random.Random(seed)
    if strategy == "random":
        return rng.sample(list(pool), k)
    if strategy != "balanced":
        raise TaskError(f"Unknown demonstration strategy {strategy!r}: use random or balanced.")
    by_label: dict[int, list[Example]] = {}
    for ex in pool:
        by_label.setdefault(ex.label, []).append(ex)
    for examples in by_label.values():
        rng.shuffle(examples)
    labels = sorted(by_label)
    rng.shuffle(labels)
    chosen: list[Example] = []
    while len(chosen) < k:
        for label in labels:
            if len(chosen) < k and by_label[label]:
                chosen.append(by_label[label].pop())
    rng.shuffle(chosen)
    return chosen


def build_prefix(task: ClassificationTask, demonstrations: Sequence[Example]) -> str:
    """Instruction and demonstrations, each followed by ``task.demo_separator``
    (:meth:`ClassificationTask.prompt_prefix`)."""
    return task.prompt_prefix(demonstrations)


def build_contexts(task: ClassificationTask, prefix: str, examples: Sequence[Example]) -> list[str]:
    """The scored contexts: prefix followed by each query, ending at the answer slot."""
    return [prefix + task.render(ex) for ex in examples]


def content_free_example(example: Example, text: str) -> Example:
    """``example`` with every input field replaced by a content-free string such as "N/A"."""
    return replace(example, fields={key: text for key in example.fields})


def pseudo_input_prompt(task: ClassificationTask, prefix: str) -> str:
    """What Generative Calibration samples pseudo-inputs after: the prefix (instruction and
    demonstrations) and the template's text before its first field, trailing white space
    dropped so that the sample brings its own ("" when there is nothing to continue)."""
    return (prefix + task.template_ends[0]).rstrip()


def pseudo_input_stops(task: ClassificationTask) -> tuple[str, ...]:
    """Where a sampled pseudo-input ends: the template's text after its last field (the answer
    slot, white space stripped) or the demonstration separator."""
    return tuple(s for s in dict.fromkeys((task.template_ends[1].strip(), task.demo_separator))
                 if s)


def pseudo_context(task: ClassificationTask, prefix: str, sample: str) -> str:
    """The context the labels are scored after for one sampled pseudo-input: the sampling
    prompt, the sample (trailing white space dropped) and the template's text after its last
    field, i.e. the sample in place of a query."""
    return pseudo_input_prompt(task, prefix) + sample.rstrip() + task.template_ends[1]
