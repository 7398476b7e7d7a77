"""Example sources of an instruction mixture, and the task groups a mixture can hold out.

Two kinds of source, both read from the data folder (``$LMBOOST_DATA``, see
:func:`lmboost.config.data_dir`) only when loaded:

* ``task``: a registered classification task (:func:`lmboost.tasks.get_task`) named as in the
  registry (``sst2``, ``rte``, ``tweeteval-irony``, ...). Its examples are the task's training /
  demonstration pool (``load_pool``), never its evaluation split; its templates are those of
  :data:`lmboost.instruct.templates.TASK_TEMPLATES`.
* ``cot``: question, answer and rationale for chain-of-thought templates. ``cot:<name>`` reads
  FLAN v2's CoT submix ``flan_cot/<name>_train.tsv`` (3 tab-separated columns, no header,
  ``\\n`` written as two characters; see ``flan_cot/SOURCE.md``); ``gsm8k-train`` reads GSM8K's
  own ``gsm8k/train.jsonl`` solutions with the calculator annotations ``<<...>>`` removed. FLAN's
  ``cot:gsm8k`` holds the same 7473 questions, so a mixture takes one of the two.

:data:`HELD_OUT_GROUPS` puts every source in exactly one group (Flan's task clusters); holding a
group out removes all its sources from a mixture, so the group's tasks stay unseen in training.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from lmboost.errors import MixtureError, TaskError
from lmboost.instruct.templates import COT_TEMPLATES, TASK_TEMPLATES, TaskTemplates, Template
from lmboost.tasks import get_task
from lmboost.tasks.datafiles import data_file, read_jsonl, read_lines, where

FLAN_COT = ("aqua", "creak", "ecqa", "gsm8k", "qasc", "sensemaking", "strategyqa")
COT_COLUMNS = ("question", "answer", "rationale")

#: Task clusters (after Flan): every source belongs to exactly one group.
HELD_OUT_GROUPS: dict[str, tuple[str, ...]] = {
    "nli": ("rte", "cb", "anli-r1", "anli-r2", "anli-r3", "qnli", "mnli-100"),
    "sentiment": ("sst2", "sst5", "tweeteval-sentiment", "tweeteval-emotion"),
    "text_classification": (
        "subj", "trec", "agnews", "dbpedia14-100", "tweeteval-hate", "tweeteval-irony",
        "tweeteval-offensive",
    ),
    "paraphrase": ("mrpc", "qqp-100"),
    "word_sense": ("wic",),
    "reading_comprehension": ("boolq",),
    "commonsense": ("copa", "cot:ecqa", "cot:sensemaking"),
    "math": ("cot:gsm8k", "gsm8k-train", "cot:aqua"),
    "closed_book_qa": ("cot:creak", "cot:qasc", "cot:strategyqa"),
}

#: Sources holding the same questions: a mixture may use at most one of each pair.
DUPLICATES = (("cot:gsm8k", "gsm8k-train"),)


@dataclass(frozen=True)
class Item:
    """One example of a source, before templating: the template ``fields``, the gold
    ``answer`` text, the answer ``options`` (empty when the answer is free-form) and, for CoT
    sources, the ``rationale`` that leads to the answer. ``uid`` names the source row."""

    uid: str
    fields: dict[str, str]
    answer: str
    options: tuple[str, ...] = ()
    rationale: str = ""


@dataclass(frozen=True)
class Source:
    """A named supplier of :class:`Item` objects with the templates that render them."""

    name: str
    kind: str
    description: str
    templates: tuple[Template, ...]
    loader: Callable[[], list[Item]] = field(repr=False)
    needs_options: bool = False

    def load(self) -> list[Item]:
        """The source's items, read from the data folder (nothing is cached)."""
        items = self.loader()
        if not items:
            raise TaskError(f"Source {self.name!r} holds no examples; check its data files.")
        return items


def list_sources() -> list[str]:
    """Every source name: tasks first, then CoT sources, each sorted."""
    cot = sorted(f"cot:{name}" for name in FLAN_COT) + ["gsm8k-train"]
    return sorted(TASK_TEMPLATES) + cot


def group_of(name: str) -> str:
    """The held-out group ``name`` belongs to."""
    for group, members in HELD_OUT_GROUPS.items():
        if name in members:
            return group
    raise MixtureError(f"Source {name!r} is in no held-out group; add it to HELD_OUT_GROUPS.")


def check_source_names(names: list[str]) -> None:
    """Raise MixtureError naming the first unknown source (with close matches and the list)."""
    known = list_sources()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise MixtureError(
                f"Unknown source {name!r}.{hint} Sources: {', '.join(known)} "
                "(`lmboost instruct sources` lists them with their groups)."
            )


def get_source(name: str) -> Source:
    """The source called ``name`` (see :func:`list_sources`)."""
    check_source_names([name])
    if name in TASK_TEMPLATES:
        return _task_source(name, TASK_TEMPLATES[name])
    if name == "gsm8k-train":
        return Source(
            name, "cot", "GSM8K train.jsonl (7473): question, solution steps, final answer",
            COT_TEMPLATES, _gsm8k_items,
        )
    short = name.removeprefix("cot:")
    return Source(
        name, "cot", f"FLAN v2 CoT submix flan_cot/{short}_train.tsv", COT_TEMPLATES,
        partial(read_flan_cot, short),
    )


# --------------------------------------------------------------------------- tasks


def _task_source(name: str, spec: TaskTemplates) -> Source:
    task = get_task(name)
    return Source(
        name, "task", f"{task.name} training pool: {task.pool_split}", spec.templates,
        partial(_task_items, name, spec), needs_options=spec.needs_options,
    )


def _task_items(name: str, spec: TaskTemplates) -> list[Item]:
    task = get_task(name)
    if spec.answers is not None and len(spec.answers) != len(task.labels):
        raise MixtureError(
            f"Templates of {name!r} give {len(spec.answers)} answers for the task's "
            f"{len(task.labels)} labels {task.labels}; give one per label."
        )
    items = []
    for ex in task.load_pool():
        options = tuple(spec.answers) if spec.answers is not None else tuple(task.answer_words(ex))
        items.append(Item(ex.uid, dict(ex.fields), options[ex.label], options))
    return items


# --------------------------------------------------------------------------- chain of thought


def read_flan_cot(name: str) -> list[Item]:
    """The rows of ``flan_cot/<name>_train.tsv`` as CoT items (``question`` the only field)."""
    path = data_file("flan_cot", f"{name}_train.tsv")
    items = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(COT_COLUMNS):
            raise TaskError(
                f"{where(path, number)}: expected {len(COT_COLUMNS)} tab-separated columns "
                f"({', '.join(COT_COLUMNS)}), found {len(values)}. Restore the file from "
                "flan_cot/SOURCE.md's commit; fields must not contain raw tabs."
            )
        question, answer, rationale = (v.replace("\\n", "\n").strip() for v in values)
        if not question or not answer:
            raise TaskError(f"{where(path, number)}: empty question or answer.")
        uid = f"flan_cot/{name}_train.tsv:{number}"
        items.append(Item(uid, {"question": question}, answer, rationale=rationale))
    return items


def _gsm8k_items() -> list[Item]:
    """GSM8K train solutions: the steps before ``####`` (annotations removed), the number after."""
    path = data_file("gsm8k", "train.jsonl")
    items = []
    for number, record in read_jsonl(path):
        question, solution = record.get("question"), record.get("answer")
        if not isinstance(question, str) or not isinstance(solution, str) or "####" not in (
            solution
        ):
            raise TaskError(
                f"{where(path, number)}: expected string fields 'question' and 'answer', the "
                "answer ending in '#### <number>'."
            )
        steps, _, final = solution.rpartition("####")
        steps = re.sub(r"<<[^>]*>>", "", steps)
        rationale = " ".join(s.strip() for s in steps.split("\n") if s.strip())
        uid = f"gsm8k/train.jsonl:{number}"
        items.append(Item(uid, {"question": question.strip()}, final.strip(), rationale=rationale))
    return items
