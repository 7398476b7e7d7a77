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

import dataclasses
import importlib.util
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from lmboost.config import Scalar, from_dict, read_yaml
from lmboost.errors import DataNotFoundError, TaskError
from lmboost.tasks.base import ClassificationTask, Example
from lmboost.tasks.datafiles import data_file, split_off, where
from lmboost.tasks.fields import FieldTemplate
from lmboost.tasks.readers import SUFFIXES, Layout, read_rows

__all__ = ["SUFFIXES", "TaskSpec", "task_from_file", "task_from_hf", "task_from_spec",
           "task_from_yaml"]

SPEC_HELP = "See docs/tasks.md for the keys and their types."
T = TypeVar("T")


@dataclass
class TaskSpec:
    """The keys of a YAML task file (docs/tasks.md), as :func:`task_from_yaml` reads them;
    paths are relative to the file (or to ``root``). The built-in tasks are such files too
    (``lmboost/tasks/builtin/*.yaml``)."""

    path: str = field(metadata={"help": "the data file"})
    template: str = field(metadata={"help": "str.format template ending at the answer slot"})
    label_words: list[Scalar] | dict[Scalar, Scalar] = field(
        metadata={"help": "one word per label, or a mapping label -> word"}
    )
    name: str | None = None
    pool: str | list[str] | None = None
    labels: list[Scalar] | None = None
    label_column: str = "label"
    text_columns: list[str] | None = None
    instruction: str = ""
    description: str = ""
    pool_size: int | None = None
    seed: int = 0
    demo_separator: str = "\n\n"
    # Reading the data
    root: str | None = None
    format: str | None = None
    line_pattern: str | None = None
    line_files: dict[str, str] | None = None
    encoding_fallback: str | None = None
    requires: str = ""
    # Rows -> examples
    label_map: dict[Scalar, Scalar] | None = None
    fields: dict[str, str] | None = None
    maps: dict[str, dict[Scalar, Scalar]] | None = None
    choices: list[str] | None = None
    domain_premise: str = ""
    skip_empty: bool = False
    drop_duplicates: list[str] | None = None
    uid: str | None = None
    # Splits
    pool_per_class: int | None = None
    eval_per_class: int | None = None
    eval_split: str | None = None
    pool_split: str | None = None


# How each setting is spelled where the user wrote it, for error messages.
_KEYS = [f.name for f in dataclasses.fields(TaskSpec)] + ["pool_path"]
PYTHON_NAMES = {key: f"{key}=" for key in _KEYS}
YAML_NAMES = {key: f"`{key}:`" for key in _KEYS} | {"pool_path": "`pool:`"}
CLI_NAMES = YAML_NAMES | {
    "pool_path": "--pool",
    "pool_size": "--pool-size",
    "label_column": "--label-column",
    "text_columns": "--text-columns",
    "label_words": "--label-words",
    "labels": "--label-words",
}
HOLD_OUTS = ("pool_size", "pool_per_class", "eval_per_class")
"""The settings that carve the pool out of the data file, the last drawing the eval set."""


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
        *,
        label_map: Mapping[str, str] | None = None,
        fields: Mapping[str, FieldTemplate] | None = None,
        choices: Sequence[FieldTemplate] | None = None,
        uid: str | None = None,
    ):
        self.labels = list(labels)
        self.label_column = label_column
        self.text_columns = list(text_columns) if text_columns is not None else None
        self.needed = list(needed)
        self.names = names
        self.label_map = label_map
        self.fields = fields
        self.choices = choices
        self.uid = uid

    def check_header(self, header: Sequence[str], path: Path) -> None:
        """TaskError when ``header`` lacks the label column and the template's fields and
        instead holds a label value: the file has no header row."""
        if self.fields is not None:
            return
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

    def __call__(self, row: Mapping, place: str, uid: str | None = None) -> Example:
        if self.label_column not in row or row[self.label_column] in (None, ""):
            raise TaskError(
                f"{place}: missing label column {self.label_column!r} (row has "
                f"{sorted(map(str, row))}); fill it in or set {self.names['label_column']}."
            )
        key = _label_key(row[self.label_column])
        if self.label_map is not None:
            if key not in self.label_map:
                raise TaskError(
                    f"{place}: label {key!r} is not one of {list(self.label_map)}; fix the row "
                    f"or add it to {self.names['label_map']}."
                )
            key = self.label_map[key]
        if key not in self.labels:
            raise TaskError(
                f"{place}: label {key!r} is not in the label set {self.labels}; fix the row or "
                f"add the label to {self.names['label_words']}."
            )
        label = self.labels.index(key)
        uid = place if uid is None else uid
        if self.fields is not None:
            fields = {name: self._render(t, row, place) for name, t in self.fields.items()}
            choices = None
            if self.choices is not None:
                choices = tuple(self._render(t, row, place) for t in self.choices)
            return Example(fields, label, choices, uid=uid)
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
        return Example(fields, label, uid=uid)

    @staticmethod
    def _render(template: FieldTemplate, row: Mapping, place: str) -> str:
        try:
            return template.render(row)
        except KeyError as err:
            raise TaskError(
                f"{place}: missing field {err.args[0]!r} (row has {sorted(map(str, row))})."
            ) from None
        except ValueError as err:
            raise TaskError(f"{place}: {err}") from None


@dataclass
class _Source:
    """What a task reads: its data files as written, where they are and how to turn rows into
    examples; ``load(files)`` reads them."""

    resolve: Callable[[str], Path]
    layout: Layout
    convert: _RowConverter
    inputs: Sequence[str]
    skip_empty: bool = False
    drop_duplicates: Sequence[str] = ()

    def load(self, files: Sequence[str]) -> list[Example]:
        """The examples of ``files``, concatenated; warns once per file about rows whose
        ``inputs`` are all empty (or drops them with ``skip_empty``)."""
        examples: list[Example] = []
        for file in files:
            examples += self._load_file(file)
        if self.drop_duplicates:
            seen, kept = set(), []
            for example in examples:
                key = tuple(example.fields[f] for f in self.drop_duplicates)
                if key not in seen:
                    seen.add(key)
                    kept.append(example)
            examples = kept
        return examples

    def _load_file(self, file: str) -> list[Example]:
        examples, empty, path = [], [], None
        for row in read_rows(file, self.resolve, self.layout):
            path = row.path
            if not examples and self.layout.kind(row.path) in ("csv", "tsv"):
                self.convert.check_header(list(row.values), row.path)
            example = self.convert(row.values, row.place, row.uid(self.convert.uid))
            if self.inputs and not any(example.fields[f].strip() for f in self.inputs):
                if self.skip_empty:
                    continue
                empty.append(row.line)
            examples.append(example)
        if not examples:
            raise TaskError(f"{path or file} holds no examples.")
        if empty:
            lines = ", ".join(map(str, empty[:10])) + (
                f" and {len(empty) - 10} more" if len(empty) > 10 else ""
            )
            warnings.warn(
                f"{path}: {len(empty)} row(s) with empty input text ({', '.join(self.inputs)}) "
                f"at line(s) {lines}; the model sees only the template there. Fill them in or "
                "drop them.",
                stacklevel=3,
            )
        return examples


def _resolve_labels(
    label_words: Sequence[str] | Mapping,
    labels: Sequence | None,
    names: Mapping[str, str] = PYTHON_NAMES,
    label_map: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """(labels, verbalizer) from the user's label_words, optional labels and label_map."""
    if labels is not None:
        label_names: list[str] | None = [_label_key(x) for x in labels]
    elif label_map is not None:
        label_names = list(dict.fromkeys(label_map.values()))
    else:
        label_names = None
    if isinstance(label_words, Mapping):
        words = {_label_key(k): str(v) for k, v in label_words.items()}
        label_names = label_names if label_names is not None else list(words)
        unknown = [n for n in label_names if n not in words]
        if unknown:
            raise TaskError(f"{names['label_words']} gives no word for label(s) {unknown}.")
        return label_names, [words[n] for n in label_names]
    if isinstance(label_words, str) or not isinstance(label_words, Sequence):
        raise TaskError(
            f"{names['label_words']} must be a list of words or a mapping label -> word."
        )
    verbalizer = [str(w) for w in label_words]
    if label_names is None:
        label_names = [str(i) for i in range(len(verbalizer))]
    return label_names, verbalizer


def task_from_file(
    path: str | Path,
    template: str,
    label_words: Sequence[str] | Mapping,
    label_column: str = "label",
    text_columns: Sequence[str] | None = None,
    labels: Sequence | None = None,
    name: str | None = None,
    pool_path: str | Path | Sequence[str | Path] | None = None,
    *,
    instruction: str = "",
    description: str = "",
    pool_size: int | None = None,
    seed: int = 0,
    demo_separator: str = "\n\n",
    option_names: Mapping[str, str] = PYTHON_NAMES,
    base: str | Path | None = None,
    **options: Any,
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
        pool_path: demonstration pool in the same format (optional; several files are
            concatenated).
        pool_size: without ``pool_path``, hold out this many rows of ``path`` (a ``seed``-ed
            shuffle) as the pool; the eval set is the rest.
        demo_separator: text between instruction, demonstrations and query.
        option_names: how the settings are spelled where the user gave them
            (:data:`PYTHON_NAMES`, :data:`YAML_NAMES` or :data:`CLI_NAMES`), for error messages.
        base: the folder relative paths start from (default: the current one; ``root`` in
            ``options`` overrides it).
        options: any other key of a task file (:class:`TaskSpec`, docs/tasks.md), e.g.
            ``label_map=``, ``fields=``, ``pool_per_class=``, ``format=``.
    """
    if pool_path is None or isinstance(pool_path, (str, Path)):
        pool = None if pool_path is None else str(pool_path)
    else:
        pool = [str(p) for p in pool_path]
    unknown = [k for k in options if k not in _KEYS or k == "pool_path"]
    if unknown:
        raise TaskError(f"task_from_file: unknown option(s) {unknown}. {SPEC_HELP}")
    spec = TaskSpec(
        path=str(path), template=template, label_words=label_words, name=name, pool=pool,
        labels=labels, label_column=label_column, text_columns=text_columns,
        instruction=instruction, description=description, pool_size=pool_size, seed=seed,
        demo_separator=demo_separator, **options,
    )
    return task_from_spec(spec, base=base, option_names=option_names)


def task_from_spec(
    spec: TaskSpec,
    *,
    base: str | Path | None = None,
    option_names: Mapping[str, str] = YAML_NAMES,
) -> ClassificationTask:
    """The task a :class:`TaskSpec` declares; relative paths start at ``base`` (default: the
    current folder) unless ``spec.root`` names another place."""
    opt = option_names
    name = spec.name or Path(spec.path).stem
    label_map = None
    if spec.label_map is not None:
        label_map = {_label_key(k): _label_key(v) for k, v in spec.label_map.items()}
    names, verbalizer = _resolve_labels(spec.label_words, spec.labels, opt, label_map)
    if label_map is not None and (odd := sorted(set(label_map.values()) - set(names))):
        raise TaskError(f"{opt['label_map']} maps to {odd}, which are not labels ({names}).")
    layout = Layout(spec.format, spec.line_pattern, spec.line_files, spec.encoding_fallback,
                    spec.label_column)
    layout.check(opt)
    pools = [] if spec.pool is None else [spec.pool] if isinstance(spec.pool, str) else spec.pool
    resolve = _resolver(spec, name, base, [spec.path, *pools], opt)
    hold_outs = [k for k in HOLD_OUTS if getattr(spec, k) is not None]
    if len(hold_outs) + bool(pools) > 1:
        given = (["pool_path"] if pools else []) + hold_outs
        raise TaskError(f"Give either {' or '.join(opt[k] for k in given)}, not both.")
    if spec.choices is not None and len(spec.choices) != len(names):
        raise TaskError(
            f"{opt['choices']} lists {len(spec.choices)} answer options for {len(names)} labels."
        )
    where_eval = spec.path if spec.root else str(resolve(spec.path))
    task = ClassificationTask(
        name=name,
        labels=names,
        verbalizer=verbalizer,
        template=spec.template,
        eval_split=where_eval,
        eval_loader=lambda: [],
        instruction=spec.instruction,
        demo_separator=spec.demo_separator,
        description=spec.description or f"User task from {where_eval}.",
        per_example_choices=spec.choices is not None,
        domain_premise=spec.domain_premise,
    )
    maps = {k: {_label_key(a): str(b) for a, b in m.items()} for k, m in (spec.maps or {}).items()}
    fields = choices = None
    if spec.fields is not None:
        if spec.text_columns is not None:
            raise TaskError(f"Give either {opt['fields']} or {opt['text_columns']}, not both.")
        fields = {k: FieldTemplate(v, maps, f"{opt['fields']} {k}:") for k, v in
                  spec.fields.items()}
        choices = [FieldTemplate(c, maps, opt["choices"]) for c in spec.choices or []] or None
    available = list(fields) if fields is not None else spec.text_columns
    if available is not None:
        absent = [f for f in task.template_fields if f not in available]
        if absent:
            what = opt["fields"] if fields is not None else opt["text_columns"]
            raise TaskError(f"Template uses {absent}, which are not in {what} {list(available)}.")
    for key in spec.drop_duplicates or []:
        if available is not None and key not in available:
            raise TaskError(f"{opt['drop_duplicates']} names {key!r}, which is not a field.")
    convert = _RowConverter(
        names, spec.label_column, spec.text_columns, task.template_fields, opt,
        label_map=label_map, fields=fields, choices=choices, uid=spec.uid,
    )
    source = _Source(resolve, layout, convert, task.template_fields, spec.skip_empty,
                     spec.drop_duplicates or ())
    load = partial(source.load, [spec.path])
    if pools:
        task.eval_loader = load
        task.pool_loader = partial(source.load, pools)
        task.pool_split = ", ".join(pools if spec.root else [str(resolve(p)) for p in pools])
    elif hold_outs:
        (rule,) = hold_outs
        n = getattr(spec, rule)
        task.eval_loader = partial(_held_out, load, rule, n, spec.seed, "eval", opt[rule])
        task.pool_loader = partial(_held_out, load, rule, n, spec.seed, "pool", opt[rule])
        per = " per class" if rule != "pool_size" else ""
        if rule == "eval_per_class":
            task.eval_split = f"{n} rows{per} of {where_eval} (random.Random({spec.seed}))"
            task.pool_split = f"{where_eval} minus {n} eval rows{per} (seed {spec.seed})"
        else:
            task.eval_split = f"{where_eval} minus {n} pool rows{per} (seed {spec.seed})"
            task.pool_split = f"{n} rows{per} of {where_eval} (random.Random({spec.seed}))"
    else:
        task.eval_loader = load
        task.no_pool_hint = (
            f"Give a file of demonstrations ({opt['pool_path']}) or hold out part of the data "
            f"file as the pool ({opt['pool_size']})."
        )
    task.eval_split = spec.eval_split or task.eval_split
    task.pool_split = spec.pool_split or task.pool_split
    return task


def _resolver(
    spec: TaskSpec, name: str, base: str | Path | None, files: Sequence[str],
    opt: Mapping[str, str],
) -> Callable[[str], Path]:
    """Where a data file named in the task file is: ``root: data`` (the lmboost data folder)
    and ``root: package:NAME`` (an installed package's folder) are looked up when the data is
    read; files beside the task file (or ``base``) must exist now."""
    root = spec.root
    if root == "data":
        return lambda file: data_file(file)
    if root is not None and root.startswith("package:"):
        return partial(_package_file, root.partition(":")[2].strip(), name, spec.requires)
    if root is not None:
        raise TaskError(f"{opt['root']} {root!r} is not `data` or `package:NAME`.")
    folder = Path(base) if base is not None else None

    def resolve(file: str) -> Path:
        return folder / file if folder is not None else Path(file)

    suffixes = list((spec.line_files or {"": ""}).values())
    for file in files:
        for suffix in suffixes:
            path = resolve(file + suffix)
            if not (path.is_dir() if spec.format == "folders" else path.is_file()):
                raise DataNotFoundError(f"Task data file {path} does not exist.")
    return resolve


def _package_file(package: str, task: str, requires: str, file: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TaskError(
            f"Task {task!r} reads its data from the {package} package, which is not installed. "
            f"Install it with: {requires or 'pip install ' + package}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / file
    if not path.exists():
        raise TaskError(f"{package} is installed but {path} is missing; reinstall it.")
    return path


def _held_out(load, rule: str, n: int, seed: int, part: str, flag: str) -> list[Example]:
    """The ``part`` ("eval" or "pool") of the data split by ``rule`` (one of
    :data:`HOLD_OUTS`) with ``n`` and ``seed``: the one load -> split -> return step."""
    examples = load()
    if rule == "pool_size":
        if not 0 < n < len(examples):
            raise TaskError(
                f"{_setting(flag, n)} must be between 1 and {len(examples) - 1} (the data "
                f"has {len(examples)} rows)."
            )
        taken, rest = split_off(examples, n, seed)
    else:
        strata = [ex.label for ex in examples]
        smallest = min(strata.count(label) for label in set(strata))
        if not 0 < n < smallest:
            raise TaskError(
                f"{_setting(flag, n)} must be between 1 and {smallest - 1} (the smallest class "
                f"has {smallest} rows)."
            )
        taken, rest = split_off(examples, n, seed, strata=strata)
    evaluation, pool = (taken, rest) if rule == "eval_per_class" else (rest, taken)
    return evaluation if part == "eval" else pool


def _setting(name: str, value: object) -> str:
    """``name`` set to ``value`` as the user would write it: ``pool_size=9`` (Python),
    ``--pool-size 9`` (CLI) or the YAML key and value in backquotes."""
    if name.endswith("="):
        return f"{name}{value}"
    if name.startswith("`"):
        return f"`{name.strip('`')} {value}`"
    return f"{name} {value}"


def read_spec(cls: type[T], path: Path, what: str, help: str) -> tuple[T, dict]:
    """The dataclass ``cls`` a YAML file declares (``what``: "Task file", ...), and the file's
    mapping; TaskError (DataNotFoundError for a missing file) naming what is wrong."""
    if not path.is_file():
        raise DataNotFoundError(f"{what} {path} does not exist.")
    data = read_yaml(path, what=what, error=TaskError)
    return from_dict(cls, data, source=str(path), error=TaskError, help=help), data


def task_from_yaml(path: str | Path) -> ClassificationTask:
    """A task from a YAML spec (keys: :class:`TaskSpec`; paths relative to the YAML)."""
    path = Path(path)
    spec, data = read_spec(TaskSpec, path, "Task file", SPEC_HELP)
    if isinstance(data.get("pool"), str):  # one file, even with a comma in its name
        spec.pool = data["pool"]
    spec.name = spec.name or path.stem
    return task_from_spec(spec, base=path.parent, option_names=YAML_NAMES)


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
