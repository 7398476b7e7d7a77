"""The readers behind a task file's ``format:``: each turns one data file (as the task file names
it) into rows, a row being a mapping column -> value, with what names the row for uids.

* ``csv``, ``tsv``, ``jsonl`` (the default, from the file's suffix): a table with a header row,
  or one JSON object per line.
* ``lines``: plain text. With ``line_pattern`` (a regular expression with named groups) every
  non-blank line is one row, its columns the groups; with ``line_files`` (column -> suffix) the
  row's columns come from line-aligned files named ``path + suffix``, one per column.
* ``folders``: ``path`` is a folder with one sub-folder per label value, each holding one
  ``.txt`` file per row; the row's label column is the folder's name, ``text`` the file's text.

Files are read in name order (folders and their files sorted).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lmboost.errors import TaskError
from lmboost.tasks.datafiles import read_jsonl, read_lines, read_table, read_text, where

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
FORMATS = ("csv", "tsv", "jsonl", "lines", "folders")


@dataclass(frozen=True)
class Layout:
    """How the data files are laid out (the task file's ``format`` and its options)."""

    format: str | None = None
    line_pattern: str | None = None
    line_files: Mapping[str, str] | None = None
    encoding_fallback: str | None = None
    label_column: str = "label"

    def check(self, names: Mapping[str, str]) -> None:
        """TaskError for options that do not fit together."""
        if self.format is not None and self.format not in FORMATS:
            raise TaskError(
                f"{names['format']} {self.format!r} is not one of {', '.join(FORMATS)}."
            )
        lines = self.line_pattern is not None or self.line_files is not None
        if lines != (self.format == "lines") or (self.line_pattern and self.line_files):
            raise TaskError(
                f"{names['format']} lines takes exactly one of {names['line_pattern']} and "
                f"{names['line_files']}, and they need it."
            )
        if self.line_pattern is not None:
            try:
                pattern = re.compile(self.line_pattern)
            except re.error as err:
                raise TaskError(
                    f"{names['line_pattern']} {self.line_pattern!r} is not a valid regular "
                    f"expression ({err})."
                ) from None
            if not pattern.groupindex:
                raise TaskError(
                    f"{names['line_pattern']} {self.line_pattern!r} names no columns; write "
                    "each as a named group, (?P<column>...)."
                )

    def kind(self, path: Path) -> str:
        if self.format is not None:
            return self.format
        kind = SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise TaskError(
                f"Cannot read {path}: unknown file type {path.suffix!r}; use one of "
                f"{', '.join(sorted(SUFFIXES))}."
            )
        return kind


@dataclass(frozen=True)
class Row:
    """One data row and where it came from: ``path`` the file, ``line`` its line (1 for a
    whole-file row), ``file`` the file as the task file names it."""

    values: Mapping
    path: Path
    line: int
    file: str

    @property
    def place(self) -> str:
        return where(self.path, self.line)

    def uid(self, template: str | None) -> str:
        """``template`` filled with ``file``, ``name`` (the file's name), ``folder`` (its
        folder's name), ``path`` and ``line``; without one, ``"<path>, line <n>"``."""
        if template is None:
            return self.place
        return template.format(
            file=self.file, name=self.path.name, folder=self.path.parent.name, path=self.path,
            line=self.line,
        )


def read_rows(file: str, resolve: Callable[[str], Path], layout: Layout) -> Iterator[Row]:
    """The rows of the data ``file`` (as the task file names it; ``resolve`` finds it)."""
    if layout.line_files is not None:
        yield from _aligned(file, resolve, layout)
        return
    path = resolve(file)
    kind = layout.kind(path)
    fallback = layout.encoding_fallback
    if kind == "jsonl":
        rows = read_jsonl(path, fallback)
    elif kind == "csv":
        rows = read_table(path, ",", fallback=fallback)
    elif kind == "tsv":
        rows = read_table(path, "\t", quoting=csv.QUOTE_NONE, fallback=fallback)
    elif kind == "lines":
        rows = _matched_lines(path, layout)
    else:
        yield from _folders(file, path, layout)
        return
    for line, values in rows:
        yield Row(values, path, line, file)


def _matched_lines(path: Path, layout: Layout) -> Iterator[tuple[int, dict]]:
    pattern = re.compile(layout.line_pattern or "")
    for number, line in read_lines(path, layout.encoding_fallback):
        if not line.strip():
            continue
        match = pattern.fullmatch(line)
        if match is None:
            raise TaskError(
                f"{where(path, number)}: the line does not match the pattern "
                f"{layout.line_pattern!r}: {line[:60]!r}."
            )
        yield number, {k: v or "" for k, v in match.groupdict().items()}


def _aligned(file: str, resolve: Callable[[str], Path], layout: Layout) -> Iterator[Row]:
    assert layout.line_files is not None
    paths = {column: resolve(file + suffix) for column, suffix in layout.line_files.items()}
    columns = {c: read_lines(p, layout.encoding_fallback) for c, p in paths.items()}
    (first, first_lines), *others = columns.items()
    for column, lines in others:
        if len(lines) != len(first_lines):
            raise TaskError(
                f"{paths[first]} has {len(first_lines)} lines but {paths[column]} has "
                f"{len(lines)}; the files must be line-aligned."
            )
    stem = Path(str(paths[first])[: -len(layout.line_files[first]) or None])
    for i, (number, _) in enumerate(first_lines):
        yield Row({c: lines[i][1] for c, lines in columns.items()}, stem, number, file)


def _folders(file: str, root: Path, layout: Layout) -> Iterator[Row]:
    if not root.is_dir():
        raise TaskError(f"{root} is not a folder; `format: folders` reads one folder per label.")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.txt")):
            text = read_text(path, fallback=layout.encoding_fallback)
            values = {layout.label_column: folder.name, "text": text}
            yield Row(values, path, 1, f"{file}/{folder.name}/{path.name}")
