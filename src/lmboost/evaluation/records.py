"""Run records written atomically: JSON documents and numpy archives; a run's timing fields and
the machine it ran on (:func:`machine_info`).

Each writer puts the data in a temporary file in the destination folder, flushes it to disk and
renames it over the final name with ``os.replace`` (atomic on POSIX and Windows). A reader
therefore sees either the previous complete file or the new complete file, never half of one;
an interrupted write leaves at most a hidden ``.<name>.*.tmp`` file, which is removed on error.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

from lmboost.errors import OutputFolderError


class RunTimer:
    """Started when a run begins; ``fields()`` gives the record's ``started``, ``finished`` (UTC,
    ISO 8601), ``wall_time_s`` and ``machine`` (:func:`machine_info`)."""

    def __init__(self) -> None:
        self.started = datetime.now(timezone.utc)
        self._clock = time.perf_counter()

    def fields(self) -> dict[str, Any]:
        """The timing fields as of now."""
        return {
            "started": self.started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": round(time.perf_counter() - self._clock, 3),
            "machine": machine_info(),
        }


def machine_info() -> dict[str, Any]:
    """The machine a measurement ran on, for run records and benchmark summaries: ``cpu`` (model
    name), ``cores`` (logical), ``memory_gib`` (total RAM, None where unknown), ``platform``,
    ``python``, ``torch`` and ``transformers`` versions, ``torch_threads`` and ``load_average``
    (1, 5 and 15 minutes, now; None where the OS has none)."""
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {**_static_machine(), "torch_threads": torch.get_num_threads(),
            "load_average": None if load is None else [round(x, 2) for x in load]}


@functools.cache
def _static_machine() -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {"cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor()
            or platform.machine() or "unknown CPU",
            "cores": os.cpu_count(), "memory_gib": _memory_gib(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": version("torch"),
            "transformers": version("transformers")}


def _proc_field(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a /proc file, or None."""
    with suppress(OSError):
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return None


def _memory_gib() -> float | None:
    """Total RAM in GiB (Linux /proc/meminfo, else POSIX sysconf), or None."""
    kib = _proc_field("/proc/meminfo", "MemTotal")
    if kib:
        return round(int(kib.split()[0]) / 2**20, 1)
    with suppress(ValueError, OSError, AttributeError):
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return None


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, strictly valid JSON to ``path``, atomically; returns the path.

    numpy scalars and arrays become plain numbers and lists, ``Path`` objects strings, and
    non-finite floats (NaN, inf) ``null``.
    """
    text = json.dumps(to_jsonable(obj), indent=1, ensure_ascii=False, allow_nan=False)
    return write_text(path, text + "\n")


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path``, atomically; returns the path."""
    with atomic_file(path, "w") as f:
        f.write(text)
    return Path(path)


def read_json(path: str | Path) -> Any:
    """The object stored in a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_arrays(path: str | Path, **arrays: Any) -> Path:
    """Save named arrays to an uncompressed ``.npz`` archive at ``path``, atomically.

    Strings are stored as numpy unicode arrays, so :func:`load_arrays` needs no pickle.
    """
    with atomic_file(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, read into memory (the file is closed on return)."""
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@contextmanager
def atomic_file(path: str | Path, mode: str) -> Iterator[IO]:
    """Open a temporary file beside ``path`` (mode "w" text or "wb" bytes) that replaces
    ``path`` only once the ``with`` block completes without error."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise write_error(path, err) from None
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; records are meant to be shared
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):  # a full disk, a quota, a folder made read-only meanwhile
            raise write_error(path, err) from None
        raise


def write_error(path: Path, err: OSError) -> OutputFolderError:
    """The error to raise when writing ``path`` failed with ``err``: what failed and the fix."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space (or give an output folder on another disk) and rerun"
    elif err.errno in (errno.EEXIST, errno.ENOTDIR):
        fix = "a part of its folder path is a file: give another output folder"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "give an output folder you can write in"
    else:
        fix = "check the output folder and rerun"
    return OutputFolderError(
        f"Cannot write {path}: {err.strerror or err}; {fix}. Nothing was written to it "
        "(an earlier version of the file, if any, is unchanged)."
    )


def to_jsonable(obj: Any) -> Any:
    """``obj`` with tuples, numpy values and paths made lists, numbers and strings, and
    non-finite floats ``None``: exactly what :func:`write_json` stores and :func:`read_json`
    returns."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
