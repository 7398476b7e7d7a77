"""List the registered classification tasks, or show one with a rendered example prompt.

examples:
  lmboost tasks                    # every task: labels, label words, eval split, pool
  lmboost tasks sst2               # one task in full, with its first eval example rendered
  lmboost tasks ./my_task.yaml     # check a custom task file before running it
"""

from __future__ import annotations

import argparse

from lmboost.tasks import get_task, list_tasks

NAME = "tasks"
HELP = "list tasks, or show one with an example prompt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help="task name or .yaml task file (omit to list all)")


def run(args: argparse.Namespace) -> int:
    if args.task is None:
        for name in list_tasks():
            print(get_task(name).summary())
        return 0
    task = get_task(args.task)
    print(task.summary())
    if task.description:
        print(f"\n{task.description}")
    example = task.load_eval()[0]
    print("\nfirst eval example, as the model sees it (each answer option is scored after it):\n")
    print(task.render(example))
    print("\noptions: " + " | ".join(repr(o) for o in task.answer_options(example)))
    return 0
