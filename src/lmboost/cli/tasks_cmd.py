r"""List the registered classification tasks, or show one with a rendered example prompt.

examples:
  lmboost tasks                    # every task: labels, label words, eval split, pool
  lmboost tasks sst2               # one task in full, with its first eval example rendered
  lmboost tasks ./my_task.yaml     # check a custom task file before running it
  lmboost tasks --task reviews.csv --template "Review: {text}\nSentiment:" \
      --label-words 0=negative,1=positive     # a data file, with the flags lmboost icl takes
"""

from __future__ import annotations

import argparse

from lmboost.cli.options import add_task_file, task_from_args
from lmboost.errors import ConfigError
from lmboost.tasks import get_task, list_tasks

NAME = "tasks"
HELP = "list tasks, or show one with an example prompt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "task", nargs="?", help="task name, .yaml task file or data file (omit to list all)"
    )
    parser.add_argument("--task", dest="task_flag", metavar="TASK", help="the same, as a flag")
    add_task_file(parser)


def run(args: argparse.Namespace) -> int:
    if args.task is not None and args.task_flag is not None:
        raise ConfigError(f"Give the task once: {args.task!r} or --task {args.task_flag!r}.")
    name = args.task if args.task is not None else args.task_flag
    if name is None:
        for registered in list_tasks():
            print(get_task(registered).summary())
        return 0
    task = get_task(task_from_args(name, args))
    print(task.summary())
    if task.labels != task.verbalizer and not task.per_example_choices:
        pairs = ", ".join(f"{n} -> {w!r}" for n, w in zip(task.labels, task.verbalizer))
        print(f"label values -> words: {pairs}")
    if task.description:
        print(f"\n{task.description}")
    example = task.load_eval()[0]
    print("\nfirst eval example, as the model sees it (each answer option is scored after it):\n")
    print(task.prompt(example))
    print("\noptions: " + " | ".join(repr(o) for o in task.answer_options(example)))
    return 0
