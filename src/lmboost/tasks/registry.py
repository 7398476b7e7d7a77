"""Name -> task registry, the one place tasks are found by name.

The built-in tasks are task files, ``lmboost/tasks/builtin/<name>.yaml`` (the same keys as a
user's task file, docs/tasks.md), each read when first looked up; adding a built-in task is
adding a file there. Users call :func:`register_task` with their own task, or pass a ``.yaml``
task file to :func:`get_task`.

Generation prompt sets (:mod:`lmboost.tasks.prompts`) are found here too: the built-in ones are
``lmboost/tasks/builtin/prompts/<name>.yaml``, listed by :func:`list_prompt_sets` and read by
:func:`get_prompt_set`, which also takes a path to a user's prompt-set file."""

from __future__ import annotations

import dataclasses
import difflib
from importlib import resources
from pathlib import Path

from lmboost.errors import TaskError
from lmboost.tasks.base import ClassificationTask
from lmboost.tasks.prompts import PromptSet, prompt_set_from_yaml

_TASKS: dict[str, ClassificationTask] = {}
_BUILTIN_SEEN: set[str] = set()  # built-in names already read (or registered over)

# Common spellings that mean exactly one registered task (never a subset for a full dataset).
_ALIASES = {
    "sst-2": "sst2",
    "sst-5": "sst5",
    "ag-news": "agnews",
    "ag": "agnews",
    "bbc": "bbcnews",
    "bbc-news": "bbcnews",
}


def builtin_files() -> list[Path]:
    """The built-in task files, sorted by name."""
    folder = resources.files("lmboost.tasks") / "builtin"
    return sorted(Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml"))


def _builtin(key: str) -> None:
    """Read the built-in task file named ``key`` into the registry, once, unless a task was
    registered under that name first. A file's ``name`` must be its stem."""
    if key in _BUILTIN_SEEN:
        return
    path = next((p for p in builtin_files() if _normalize(p.stem) == key), None)
    if path is None:
        return
    _BUILTIN_SEEN.add(key)
    if key in _TASKS:
        return
    from lmboost.tasks.custom import task_from_yaml

    task = task_from_yaml(path)
    if _normalize(task.name) != key:
        raise TaskError(f"{path}: the built-in task's name {task.name!r} must be its stem.")
    _TASKS[key] = task


def _normalize(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return _ALIASES.get(key, key)


def register_task(task: ClassificationTask, *, overwrite: bool = False) -> ClassificationTask:
    """Make ``task`` available to :func:`get_task` under ``task.name``; returns it.

    Registering a second task under an existing name raises TaskError unless ``overwrite=True``.
    """
    if not isinstance(task, ClassificationTask):
        raise TaskError(f"register_task expects a ClassificationTask, got {type(task).__name__}.")
    key = _normalize(task.name)
    _builtin(key)
    if key in _TASKS and not overwrite:
        raise TaskError(
            f"A task named {task.name!r} is already registered; choose another name or pass "
            "overwrite=True."
        )
    _TASKS[key] = task
    return task


def list_tasks() -> list[str]:
    """Registered task names, sorted (the built-in ones are not read to list them)."""
    return sorted(set(_TASKS) | {_normalize(p.stem) for p in builtin_files()})


def get_task(name: str | Path) -> ClassificationTask:
    """The task registered as ``name`` (case- and ``_``/``-``-insensitive), or one loaded from a
    ``.yaml``/``.yml`` task file when ``name`` is such a path.

    Returns a copy, so changing its template or words does not alter the registry.
    """
    text = str(name)
    if text.lower().endswith((".yaml", ".yml")):
        from lmboost.tasks.custom import task_from_yaml

        return task_from_yaml(text)
    key = _normalize(text)
    _builtin(key)
    task = _TASKS.get(key)
    if task is None:
        names = list_tasks()
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
        close += [n for n in names if key and key in n and n not in close]
        hint = f" Did you mean {', '.join(close[:3])}?" if close else ""
        raise TaskError(
            f"Unknown task {text!r}.{hint} Registered tasks: {', '.join(list_tasks())}. "
            "A custom task can be given as a path to a .yaml task file."
        )
    return dataclasses.replace(task, labels=list(task.labels), verbalizer=list(task.verbalizer))


# --- generation prompt sets (lmboost.tasks.prompts) ---------------------------------------------


def builtin_prompt_files() -> list[Path]:
    """The built-in prompt-set files (``lmboost/tasks/builtin/prompts/*.yaml``), sorted."""
    folder = resources.files("lmboost.tasks") / "builtin" / "prompts"
    return sorted(Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml"))


def list_prompt_sets() -> list[str]:
    """The built-in prompt sets' names, sorted."""
    return sorted(_normalize(p.stem) for p in builtin_prompt_files())


def get_prompt_set(name: str | Path) -> PromptSet:
    """The built-in prompt set ``name`` (case- and ``_``/``-``-insensitive), or the one a
    ``.yaml``/``.yml`` prompt-set file declares when ``name`` is such a path."""
    text = str(name)
    if text.lower().endswith((".yaml", ".yml")):
        return prompt_set_from_yaml(text)
    key = _normalize(text)
    path = next((p for p in builtin_prompt_files() if _normalize(p.stem) == key), None)
    if path is None:
        close = difflib.get_close_matches(key, list_prompt_sets(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TaskError(
            f"Unknown prompt set {text!r}.{hint} Built-in prompt sets: "
            f"{', '.join(list_prompt_sets())}; or give a path to a .yaml prompt-set file "
            "(docs/tasks.md)."
        )
    prompt_set = prompt_set_from_yaml(path)
    if _normalize(prompt_set.name) != key:
        raise TaskError(f"{path}: the built-in prompt set's name {prompt_set.name!r} must be "
                        "its stem.")
    return prompt_set
