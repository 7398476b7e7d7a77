"""The data layer: UTF-8 file readers shared by the task readers (:mod:`.readers`), prompt sets,
reasoning tasks, instruction sources, SEAT tests, perplexity text and prompt files.

Every reader reports problems as ``TaskError("<path>, line <n>: <what is wrong>")`` so that a bad
row can be found and fixed. Files must be UTF-8 (a leading BOM is fine); anything else is a
:class:`FileEncodingError` naming the first bad line. Lines are split on ``\\n`` only (tweets
contain U+0085 and U+2028, which ``str.splitlines`` would treat as line breaks).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from lmboost.config import data_dir
from lmboost.errors import DataNotFoundError, FileEncodingError, TaskError

T = TypeVar("T")


def where(path: Path | str, line: int) -> str:
    return f"{path}, line {line}"


def data_file(*parts: str) -> Path:
    """``data_dir()/parts``, or DataNotFoundError naming the missing file and the fix."""
    root = data_dir()
    path = root.joinpath(*parts)
    if not path.exists():
        raise DataNotFoundError(
            f"Missing data file {path}. The data directory {root} lacks it; point LMBOOST_DATA "
            "at a complete copy of shared/data (see shared/data/README.md)."
        )
    return path


def read_text(path: Path, fallback: str | None = None) -> str:
    """UTF-8 text, a leading BOM removed. A file that is not UTF-8 is decoded as ``fallback``
    (for a packaged corpus known to hold such files) or, without one, a FileEncodingError naming
    the file, the first bad line and the fix."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} does not exist: check the path.") from None
    except IsADirectoryError:
        raise TaskError(f"{path} is a folder, not a text file: give the file.") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if fallback is not None:
            return raw.decode(fallback, errors="replace")
        line = raw.count(b"\n", 0, err.start) + 1
        raise FileEncodingError(
            f"{where(path, line)}: the file is not UTF-8 (byte 0x{raw[err.start]:02x}). "
            f"Re-encode it as UTF-8, e.g. `iconv -f cp1252 -t utf-8 {path} > fixed{path.suffix}` "
            "(use the encoding it was written in, often cp1252 or latin-1)."
        ) from None


def read_lines(path: Path, fallback: str | None = None) -> list[tuple[int, str]]:
    """``(line_number, text)`` for every line, ``\\r`` stripped; a final empty line dropped."""
    lines = read_text(path, fallback).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(i, line.rstrip("\r")) for i, line in enumerate(lines, start=1)]


def read_jsonl(path: Path, fallback: str | None = None) -> Iterator[tuple[int, dict]]:
    """``(line_number, record)`` for every non-blank line of a JSON-lines file."""
    for number, line in read_lines(path, fallback):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskError(f"{where(path, number)}: not valid JSON ({err.msg}).") from None
        if not isinstance(record, dict):
            raise TaskError(
                f"{where(path, number)}: expected a JSON object per line, found "
                f"{type(record).__name__}."
            )
        yield number, record


def read_table(
    path: Path, delimiter: str, *, quoting: int = csv.QUOTE_MINIMAL, fallback: str | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line_number, row)`` for each data row of a delimited file with a header row.

    The line number is the row's first physical line (quoted fields may span lines). A row whose
    column count differs from the header's raises TaskError naming file and line.
    """
    text = read_text(path, fallback)
    stream = io.StringIO(text, newline="")
    reader = csv.reader(stream, delimiter=delimiter, quoting=quoting, strict=True)
    header: list[str] | None = None
    start = 1
    try:
        for values in reader:
            line, start = start, reader.line_num + 1
            if not values or values == [""]:
                continue
            if header is None:
                header = [name.strip() for name in values]
                repeated = sorted({n for n in header if header.count(n) > 1})
                if repeated:
                    raise TaskError(
                        f"{where(path, line)}: the header names column(s) {repeated} more than "
                        "once; give every column its own name."
                    )
                continue
            if len(values) != len(header):
                raise TaskError(
                    f"{where(path, line)}: expected {len(header)} columns "
                    f"({', '.join(header)}), found {len(values)}. Check the delimiter and quoting "
                    "of this row."
                )
            yield line, dict(zip(header, values))
    except csv.Error as err:
        raise TaskError(f"{where(path, start)}: cannot parse row ({err}).") from None
    if header is None:
        raise TaskError(f"{path} is empty; expected a header row and data rows.")


def split_off(
    items: Sequence[T], n: int | Sequence[int], seed: int, *, strata: Sequence[int] | None = None
) -> tuple[list[T], list[T]]:
    """Deterministically split ``items`` into ``(taken, rest)``, both in original order.

    With ``strata`` (one class index per item) and ``n`` a per-class count (an int or one count
    per class), ``n`` items of each class are taken; otherwise ``n`` items overall. The choice is a
    ``random.Random(seed)`` shuffle of the indices, which is stable across Python versions.
    """
    rng = random.Random(seed)
    if strata is None:
        order = list(range(len(items)))
        rng.shuffle(order)
        chosen = set(order[: int(n)])  # type: ignore[arg-type]
    else:
        by_class: dict[int, list[int]] = {}
        for index, cls in enumerate(strata):
            by_class.setdefault(cls, []).append(index)
        chosen = set()
        for cls in sorted(by_class):
            order = by_class[cls]
            rng.shuffle(order)
            count = n if isinstance(n, int) else n[cls]
            chosen.update(order[:count])
    taken = [item for i, item in enumerate(items) if i in chosen]
    rest = [item for i, item in enumerate(items) if i not in chosen]
    return taken, rest
