"""The SEAT / WEAT test files of May et al. (2019): ``$LMBOOST_DATA/seat/<name>.jsonl``.

Despite the extension, each file is one JSON object with four sets, each a category name and its
examples (words for ``weatN``, template sentences for ``sent-weatN``)::

    {"targ1": {"category": "Flowers", "examples": ["aster", ...]},
     "targ2": {...}, "attr1": {...}, "attr2": {...}}

targ1/targ2 are the target sets X/Y and attr1/attr2 the attribute sets A/B of the test. A test is
named by its file's stem (``weat1``, ``sent-weat3b``, ``angry_black_woman_stereotype``,
``heilman_double_bind_competent_one_word``, ...); ``all`` names every file. A path to a ``.json``
or ``.jsonl`` file in the same format is a test too, so new tests need no code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lmboost.errors import TaskError
from lmboost.tasks.datafiles import data_file, read_text, where

SEAT_FOLDER = "seat"
SETS = ("targ1", "targ2", "attr1", "attr2")
SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class Concept:
    """One set of a test: its category name and its examples (words or sentences)."""

    category: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class SEATTest:
    """An association test: targets X (``targ1``), Y (``targ2``); attributes A (``attr1``),
    B (``attr2``); read from ``path``."""

    name: str
    path: Path
    targ1: Concept
    targ2: Concept
    attr1: Concept
    attr2: Concept

    def concepts(self) -> dict[str, Concept]:
        """The four sets by key: targ1, targ2, attr1, attr2."""
        return {key: getattr(self, key) for key in SETS}

    def texts(self) -> list[str]:
        """Every distinct example of the test, in order of first appearance."""
        return list(dict.fromkeys(t for c in self.concepts().values() for t in c.examples))


def available_tests() -> list[str]:
    """Names of the tests in ``data_dir()/seat``, in natural order (weat2 before weat10)."""
    folder = data_file(SEAT_FOLDER)
    return sorted((p.stem for p in folder.glob("*.jsonl")), key=_natural_key)


def resolve_tests(spec: str | Sequence[str]) -> list[str]:
    """Test names or paths from a comma list (or a list); ``all`` expands to every test.

    Duplicates are dropped (first occurrence kept). An unknown name raises TaskError listing the
    valid names.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [item.strip() for item in items]
    if not items or any(not item for item in items):
        raise TaskError(f"tests expects a comma-separated list of test names, got {spec!r}.")
    resolved: list[str] = []
    for item in items:
        if _is_path(item):
            resolved.append(item)
        elif item == "all":
            resolved += available_tests()
        elif item in available_tests():
            resolved.append(item)
        else:
            raise _unknown(item, available_tests())
    return list(dict.fromkeys(resolved))


def load_test(name: str) -> SEATTest:
    """The test ``name`` from ``data_dir()/seat``, or from a ``.json``/``.jsonl`` file path.

    Raises TaskError naming the file (and line, for invalid JSON) when the file is malformed.
    """
    if _is_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise TaskError(f"SEAT test file not found: {path}.")
        return read_test(path, path.stem)
    known = available_tests()
    if name not in known:
        raise _unknown(name, known)
    return read_test(data_file(SEAT_FOLDER, f"{name}.jsonl"), name)


def read_test(path: Path, name: str) -> SEATTest:
    """Parse and check one test file (a single JSON object with targ1, targ2, attr1, attr2)."""
    try:
        obj = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise TaskError(f"{where(path, err.lineno)}: not valid JSON ({err.msg}).") from None
    layout = (
        'a SEAT test is one JSON object {"targ1": {"category": str, "examples": [str, ...]}, '
        '"targ2": ..., "attr1": ..., "attr2": ...}'
    )
    if not isinstance(obj, dict):
        raise TaskError(f"{path}: expected one JSON object, found {type(obj).__name__}; {layout}.")
    return SEATTest(name, path, *(_concept(obj, key, path, layout) for key in SETS))


def _concept(obj: dict, key: str, path: Path, layout: str) -> Concept:
    if key not in obj:
        raise TaskError(f"{path}: missing {key!r}; {layout}.")
    part = obj[key]
    if not isinstance(part, dict) or not isinstance(part.get("category"), str):
        raise TaskError(f"{path}: {key} needs a string 'category'; {layout}.")
    examples = part.get("examples")
    if not isinstance(examples, list) or not examples:
        raise TaskError(f"{path}: {key}.examples must be a non-empty list of strings.")
    for i, text in enumerate(examples):
        if not isinstance(text, str) or not text.strip():
            raise TaskError(
                f"{path}: {key}.examples[{i}] must be a non-empty string, found {text!r}."
            )
    return Concept(part["category"], tuple(examples))


def _unknown(name: str, known: list[str]) -> TaskError:
    return TaskError(
        f"Unknown SEAT test {name!r}. Valid tests: all, {', '.join(known)} "
        f"(or a path to a {' or '.join(SUFFIXES)} test file)."
    )


def _is_path(item: str) -> bool:
    return item.lower().endswith(SUFFIXES) or "/" in item or "\\" in item


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
