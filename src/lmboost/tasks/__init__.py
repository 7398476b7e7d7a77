"""Classification tasks declared as data and found by name.

    >>> from lmboost.tasks import get_task
    >>> task = get_task("sst2")
    >>> ex = task.load_eval()[0]
    >>> task.render(ex) + task.answer_text(ex)
    'Review: one long string of cliches .\\nSentiment: negative'

Every built-in task is a task file, ``lmboost/tasks/builtin/<name>.yaml``, in the schema users
write their own in (docs/tasks.md); :mod:`.registry` finds them by name. Add your own with
:func:`register_task`, :func:`task_from_file`, or a YAML file passed to :func:`get_task` (see
:mod:`lmboost.tasks.custom`). Data is read only when ``load_eval``/``load_pool`` is called.

Generation prompt sets are data too (:mod:`lmboost.tasks.prompts`):
``get_prompt_set("hh").load(6)`` is the first six items of a fixed order; the built-in sets are
``lmboost/tasks/builtin/prompts/<name>.yaml``, and a user's file in the same schema loads by path.
"""

from lmboost.tasks.base import ClassificationTask, Example
from lmboost.tasks.custom import task_from_file, task_from_hf, task_from_spec, task_from_yaml
from lmboost.tasks.prompts import PromptItem, PromptSet, prompt_set_from_yaml
from lmboost.tasks.registry import (
    get_prompt_set,
    get_task,
    list_prompt_sets,
    list_tasks,
    register_task,
)

__all__ = [
    "ClassificationTask",
    "Example",
    "PromptItem",
    "PromptSet",
    "get_prompt_set",
    "get_task",
    "list_prompt_sets",
    "list_tasks",
    "prompt_set_from_yaml",
    "register_task",
    "task_from_file",
    "task_from_hf",
    "task_from_spec",
    "task_from_yaml",
]
