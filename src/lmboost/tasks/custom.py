"""User-defined tasks from a data file, a YAML spec or a Hugging Face dataset.

The YAML keys, the matching ``lmboost icl``/``lmboost tasks`` flags and worked examples are in
docs/tasks.md. ``get_task("path/to/task.yaml")`` loads a YAML task file; paths in it are
relative to the file. Label values are compared as text (JSON booleans as ``true``/``false``).
With ``label_words`` a list and no ``labels``, the label column must hold the indices
``0..K-1``.

TSV files are split on tabs with no quote processing (the GLUE convention); CSV files use
standard double-quote quoting. Rows whose input text is empty are kept, with a warning that
names their lines.
"""

from __future__ import annotations

import csv
import importlib.util
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from lmboost.config import Scalar, from_dict, read_yaml
from lmboost.errors import DataNotFoundError, TaskError
from lmboost.tasks._io import read_jsonl, read_table, split_off, where
from lmboost.tasks.base import ClassificationTask, Example

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
SPEC_HELP = "See docs/tasks.md for the keys and their types."


@dataclass
class TaskSpec:
    """The keys of a YAML task file (docs/tasks.md), as :func:`task_from_yaml` reads them;
    paths are relative to the file."""

    path: str = field(metadata={"help": "the data file"})
    template: str = field(metadata={"help": "str.format template ending at the answer slot"})
    label_words: list[Scalar] | dict[Scalar, Scalar] = field(
        metadata={"help": "one word per label, or a mapping label value -> word"}
    )
    name: str | None = None
    pool: str | None = None
    labels: list[Scalar] | None = None
    label_column: str = "label"
    text_columns: list[str] | None = None
    instruction: str = ""
    description: str = ""
    pool_size: int | None = None
    seed: int = 0
    demo_separator: str = "\n\n"


# How each setting is spelled where the user wrote it, for error messages.
PYTHON_NAMES = {
    "pool_path": "pool_path=",
    "pool_size": "pool_size=",
    "label_column": "label_column=",
    "text_columns": "text_columns=",
    "label_words": "label_words=",
    "labels": "labels=",
}
YAML_NAMES = {
    "pool_path": "`pool:`",
    "pool_size": "`pool_size:`",
    "label_column": "`label_column:`",
    "text_columns": "`text_columns:`",
    "label_words": "`label_words:`",
    "labels": "`labels:`",
}
CLI_NAMES = {
    "pool_path": "--pool",
    "pool_size": "--pool-size",
    "label_column": "--label-column",
    "text_columns": "--text-columns",
    "label_words": "--label-words",
    "labels": "--label-words",
}


def _label_key(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value).strip()


class _RowConverter:
    """Turns one row (a dict) into an Example, or raises TaskError naming where the row is."""

    def __init__(
        self,
        labels: Sequence[str],
        label_column: str,
        text_columns: Sequence[str] | None,
        needed: Sequence[str],
        names: Mapping[str, str] = PYTHON_NAMES,
    ):
        self.labels = list(labels)
        self.label_column = label_column
        self.text_columns = list(text_columns) if text_columns is not None else None
        self.needed = list(needed)
        self.names = names

    def check_header(self, header: Sequence[str], path: Path) -> None:
        """TaskError when ``header`` lacks the label column and the template's fields and
        instead holds a label value: the file has no header row."""
        absent = [c for c in [self.label_column, *self.needed] if c not in header]
        if self.label_column in header or not set(self.needed) <= set(absent):
            return
        if not any(_label_key(value) in self.labels for value in header):
            return
        fields = iter([*self.needed, "text"])
        named, suggested = False, []
        for value in header:
            if not named and _label_key(value) in self.labels:
                suggested.append(self.label_column)
                named = True
            else:
                suggested.append(next(fields, "text"))
        raise TaskError(
            f"{where(path, 1)}: the file seems to have no header row: its first row "
            f"({', '.join(header)}) looks like a label and text, and the columns {absent} are "
            f"missing; add one: {','.join(suggested)}"
        )

    def __call__(self, row: Mapping, place: str) -> Example:
        if self.label_column not in row or row[self.label_column] in (None, ""):
            raise TaskError(
                f"{place}: missing label column {self.label_column!r} (row has "
                f"{sorted(map(str, row))}); fill it in or set {self.names['label_column']}."
            )
        key = _label_key(row[self.label_column])
        if key not in self.labels:
            raise TaskError(
                f"{place}: label {key!r} is not in the label set {self.labels}; fix the row or "
                f"add the label to {self.names['label_words']}."
            )
        columns = self.text_columns
        if columns is None:
            columns = [c for c in row if c != self.label_column]
        missing = [c for c in dict.fromkeys([*self.needed, *columns]) if row.get(c) is None]
        if missing:
            raise TaskError(
                f"{place}: missing field(s) {missing} (row has {sorted(map(str, row))}); the "
                f"template and {self.names['text_columns']} need them."
            )
        fields = {str(c): str(row[c]) for c in columns}
        for c in self.needed:
            fields.setdefault(c, str(row[c]))
        return Example(fields, self.labels.index(key), uid=place)


def _read_rows(path: Path) -> Iterable[tuple[int, Mapping]]:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind == "jsonl":
        return read_jsonl(path)
    if kind == "csv":
        return read_table(path, ",")
    if kind == "tsv":
        return read_table(path, "\t", quoting=csv.QUOTE_NONE)
    raise TaskError(
        f"Cannot read {path}: unknown file type {path.suffix!r}; use one of "
        f"{', '.join(sorted(SUFFIXES))}."
    )


def _load_file(path: Path, convert: _RowConverter, inputs: Sequence[str]) -> list[Example]:
    """The examples of ``path``; warns once per file about rows whose ``inputs`` are all empty."""
    examples, empty = [], []
    table = SUFFIXES.get(path.suffix.lower()) != "jsonl"
    for line, row in _read_rows(path):
        if table and not examples:
            convert.check_header(list(row), path)
        example = convert(row, where(path, line))
        if inputs and not any(example.fields[f].strip() for f in inputs):
            empty.append(line)
        examples.append(example)
    if not examples:
        raise TaskError(f"{path} holds no examples.")
    if empty:
        lines = ", ".join(map(str, empty[:10])) + (f" and {len(empty) - 10} more" if
                                                   len(empty) > 10 else "")
        warnings.warn(
            f"{path}: {len(empty)} row(s) with empty input text ({', '.join(inputs)}) at line(s) "
            f"{lines}; the model sees only the template there. Fill them in or drop them.",
            stacklevel=2,
        )
    return examples


def _resolve_labels(
    label_words: Sequence[str] | Mapping,
    labels: Sequence | None,
    names: Mapping[str, str] = PYTHON_NAMES,
) -> tuple[list[str], list[str]]:
    """(labels, verbalizer) from the user's label_words and optional labels."""
    if isinstance(label_words, Mapping):
        words = {_label_key(k): str(v) for k, v in label_words.items()}
        label_names = [_label_key(x) for x in labels] if labels is not None else list(words)
        unknown = [n for n in label_names if n not in words]
        if unknown:
            raise TaskError(f"{names['label_words']} gives no word for label(s) {unknown}.")
        return label_names, [words[n] for n in label_names]
    if isinstance(label_words, str) or not isinstance(label_words, Sequence):
        raise TaskError(
            f"{names['label_words']} must be a list of words or a mapping label -> word."
        )
    verbalizer = [str(w) for w in label_words]
    label_names = (
        [_label_key(x) for x in labels]
        if labels is not None
        else [str(i) for i in range(len(verbalizer))]
    )
    return label_names, verbalizer


def task_from_file(
    path: str | Path,
    template: str,
    label_words: Sequence[str] | Mapping,
    label_column: str = "label",
    text_columns: Sequence[str] | None = None,
    labels: Sequence | None = None,
    name: str | None = None,
    pool_path: str | Path | None = None,
    *,
    instruction: str = "",
    description: str = "",
    pool_size: int | None = None,
    seed: int = 0,
    demo_separator: str = "\n\n",
    option_names: Mapping[str, str] = PYTHON_NAMES,
) -> ClassificationTask:
    """A classification task over a CSV, TSV or JSON-lines file (read lazily).

    Args:
        path: the evaluation data (``.csv``/``.tsv`` with a header row, or ``.jsonl``).
        template: ``str.format`` template over the text columns, ending at the answer slot.
        label_words: one word per label (a list, labels then being ``0..K-1``) or a mapping
            ``label value -> word``.
        label_column: the column holding the label.
        text_columns: the columns copied into ``Example.fields`` (default: all but the label).
        labels: label values in index order (default: the mapping's keys or ``0..K-1``).
        name: task name (default: the file's stem).
        pool_path: demonstration pool in the same format (optional).
        pool_size: without ``pool_path``, hold out this many rows of ``path`` (a ``seed``-ed
            shuffle) as the pool; the eval set is the rest.
        demo_separator: text between instruction, demonstrations and query.
        option_names: how the settings are spelled where the user gave them
            (:data:`PYTHON_NAMES`, :data:`YAML_NAMES` or :data:`CLI_NAMES`), for error messages.
    """
    path = Path(path)
    opt = option_names
    names, verbalizer = _resolve_labels(label_words, labels, opt)
    for p in (path, pool_path):
        if p is not None and not Path(p).is_file():
            raise DataNotFoundError(f"Task data file {p} does not exist.")
    if pool_path is not None and pool_size is not None:
        raise TaskError(f"Give either {opt['pool_path']} or {opt['pool_size']}, not both.")
    task = ClassificationTask(
        name=name or path.stem,
        labels=names,
        verbalizer=verbalizer,
        template=template,
        eval_split=str(path),
        eval_loader=lambda: [],
        instruction=instruction,
        demo_separator=demo_separator,
        description=description or f"User task from {path}.",
        no_pool_hint=(
            f"Give a file of demonstrations ({opt['pool_path']}) or hold out part of the data "
            f"file as the pool ({opt['pool_size']})."
        ),
    )
    if text_columns is not None:
        absent = [f for f in task.template_fields if f not in text_columns]
        if absent:
            raise TaskError(
                f"Template uses {absent}, which are not in {opt['text_columns']} "
                f"{list(text_columns)}."
            )
    convert = _RowConverter(names, label_column, text_columns, task.template_fields, opt)
    load = partial(_load_file, path, convert, task.template_fields)
    if pool_path is not None:
        task.eval_loader = load
        task.pool_loader = partial(_load_file, Path(pool_path), convert, task.template_fields)
        task.pool_split = str(pool_path)
    elif pool_size is not None:
        task.eval_loader = partial(_held_out, load, pool_size, seed, 1, opt["pool_size"])
        task.pool_loader = partial(_held_out, load, pool_size, seed, 0, opt["pool_size"])
        task.eval_split = f"{path} minus {pool_size} pool rows (seed {seed})"
        task.pool_split = f"{pool_size} rows of {path} (random.Random({seed}))"
    else:
        task.eval_loader = load
    return task


def _held_out(load, pool_size: int, seed: int, part: int, flag: str) -> list[Example]:
    examples = load()
    if not 0 < pool_size < len(examples):
        raise TaskError(
            f"{_setting(flag, pool_size)} must be between 1 and {len(examples) - 1} (the data "
            f"has {len(examples)} rows)."
        )
    return split_off(examples, pool_size, seed)[part]


def _setting(name: str, value: object) -> str:
    """``name`` set to ``value`` as the user would write it: ``pool_size=9`` (Python),
    ``--pool-size 9`` (CLI) or the YAML key and value in backquotes."""
    if name.endswith("="):
        return f"{name}{value}"
    if name.startswith("`"):
        return f"`{name.strip('`')} {value}`"
    return f"{name} {value}"


def task_from_yaml(path: str | Path) -> ClassificationTask:
    """A task from a YAML spec (keys: :class:`TaskSpec`; paths relative to the YAML)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"Task file {path} does not exist.")
    data = read_yaml(path, what="Task file", error=TaskError)
    spec = from_dict(TaskSpec, data, source=str(path), error=TaskError, help=SPEC_HELP)
    base = path.parent

    def rel(p):
        return None if p is None else (base / p)

    return task_from_file(
        rel(spec.path),
        spec.template,
        spec.label_words,
        label_column=spec.label_column,
        text_columns=spec.text_columns,
        labels=spec.labels,
        name=spec.name or path.stem,
        pool_path=rel(spec.pool),
        instruction=spec.instruction,
        description=spec.description,
        pool_size=spec.pool_size,
        seed=spec.seed,
        demo_separator=spec.demo_separator,
        option_names=YAML_NAMES,
    )


def task_from_hf(
    dataset_id: str,
    template: str,
    label_words: Sequence[str] | Mapping,
    *,
    config: str | None = None,
    eval_split: str = "validation",
    pool_split: str | None = "train",
    label_column: str = "label",
    text_columns: Sequence[str] | None = None,
    labels: Sequence | None = None,
    name: str | None = None,
    instruction: str = "",
) -> ClassificationTask:
    """A task over a Hugging Face dataset, fetched with ``datasets.load_dataset`` on first load.

    Integer (ClassLabel) labels match the default labels ``0..K-1``. Needs ``pip install
    datasets`` (not an lmboost dependency).
    """
    if importlib.util.find_spec("datasets") is None:
        raise TaskError(
            f"task_from_hf({dataset_id!r}) needs the 'datasets' package: pip install datasets "
            "(or download the data and use task_from_file)."
        )
    names, verbalizer = _resolve_labels(label_words, labels)

    def load(split: str) -> list[Example]:
        import datasets

        rows = datasets.load_dataset(dataset_id, config, split=split)
        return [convert(row, f"{dataset_id}[{split}] row {i}") for i, row in enumerate(rows)]

    task = ClassificationTask(
        name=name or dataset_id.split("/")[-1],
        labels=names,
        verbalizer=verbalizer,
        template=template,
        eval_split=f"{dataset_id} {eval_split}",
        eval_loader=partial(load, eval_split),
        pool_loader=partial(load, pool_split) if pool_split else None,
        pool_split=f"{dataset_id} {pool_split}" if pool_split else "",
        instruction=instruction,
        description=f"Hugging Face dataset {dataset_id}" + (f" ({config})" if config else ""),
    )
    convert = _RowConverter(names, label_column, text_columns, task.template_fields)
    return task
