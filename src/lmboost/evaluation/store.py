"""One run store for every command: a claimed output folder, its settings, its finished items.

``with RunStore(out, "icl", settings, restart=False) as store:`` does, before any model work,

1. check that ``out`` is a folder lmboost can write in (creating it), else a clear error;
2. claim it: create ``out/.lmboost-lock`` with O_CREAT|O_EXCL, naming the holder (pid, host,
   command, start time). A second run gets an :class:`~lmboost.errors.LmboostError` naming the
   holder; a lock left by a dead process on this host is taken over with a warning. The lock is
   removed when the ``with`` block ends, however it ends;
3. with ``restart``, move everything the folder held to a sibling ``OUT.old-<UTC time>``;
4. compare the settings with those ``out/settings.json`` recorded (a difference is an error
   naming each setting, old -> new) and write them, atomically, before any work
   (:meth:`RunStore.record`; a store opened with ``settings=None`` records them later, or never).

Finished work is appended as it finishes to a JSON-lines log (:meth:`RunStore.log`), one line
per item, flushed and fsynced; a torn last line left by a killed run is dropped with a warning.
A command whose items finish one by one or in batches (reason, generate) reads::

    with RunStore(out, "reason", settings, restart=restart) as store:
        log = store.log("items.jsonl")
        done = log.read()                      # uid -> record
        for item in (i for i in items if i.uid not in done):
            log.append(solve(item))
        write_json(store.path("results.json"), summarise(log.read()))

Every run command's settings inherit :class:`RunConfig` (the folder, the model and how it loads)
or :class:`BackendRunConfig` (and the backend it runs on): one set of field names, defaults and
checks, which the command line's shared flags (:mod:`lmboost.cli.options`) follow.
"""

from __future__ import annotations

import contextlib
import errno
import json
import numbers
import os
import shutil
import socket
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from lmboost.backends import BACKENDS, Backend, as_backend, load_backend
from lmboost.errors import BackendError, ConfigError, OutputFolderError, RunRecordError
from lmboost.evaluation.records import read_json, to_jsonable, write_error, write_json
from lmboost.models import DEFAULT_MODEL, LoadedModel
from lmboost.models.identity import loaded_fingerprint, weights_fingerprint
from lmboost.models.loading import resolve_dtype

LOCK = ".lmboost-lock"
SETTINGS = "settings.json"


@dataclass(frozen=True)
class Holder:
    """Who holds a run folder: what its lock file says."""

    pid: int
    host: str
    command: str
    started: str

    def __str__(self) -> str:
        return f"lmboost {self.command} (pid {self.pid} on {self.host}, started {self.started})"


class RunStore:
    """A run folder claimed by one command (see the module docstring).

    Args:
        out: the output folder.
        command: the command that runs in it ("icl", "reason", ...), recorded in the lock and
            the settings; a folder of another command is refused like any other setting.
        settings: what is recorded in ``settings.json`` on :meth:`open`, as :meth:`record`
            does; None to claim the folder only (then :meth:`record` may follow, once settings
            that need work to know, such as the weights' fingerprint, are known; or not at all:
            ``lmboost calibrate`` rewrites a run's records and leaves its settings as they are).
        compare, added: as in :meth:`record`.
        restart: start over: move what the folder holds aside first.
    """

    def __init__(
        self,
        out: str | Path,
        command: str,
        settings: Mapping[str, Any] | None,
        *,
        compare: Iterable[str] | None = None,
        added: Mapping[str, Any] | None = None,
        restart: bool = False,
    ) -> None:
        self.out = Path(out)
        self.command = command
        self.settings = settings
        self.compare = compare
        self.added = added
        self.restart = restart
        self._holder: Holder | None = None
        self._fresh_settings = False  # this run wrote the folder's first settings.json

    # ------------------------------------------------------------------ claim and release

    def __enter__(self) -> RunStore:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None and self._fresh_settings:
            self._forget_settings()
        self.close()

    def _forget_settings(self) -> None:
        """After a run that failed before finishing any work (a misspelt model, say), remove
        the settings it recorded, so that the corrected rerun is not refused as a change."""
        with contextlib.suppress(OSError):
            if all(p.name in (LOCK, SETTINGS) for p in self.out.iterdir()):
                (self.out / SETTINGS).unlink(missing_ok=True)

    def open(self) -> None:
        """Check and claim the folder, restart it if asked, compare and write the settings."""
        check_out(self.out)
        self._claim()
        try:
            if self.restart:
                self._move_aside()
            if self.settings is not None:
                self.record(self.settings, compare=self.compare, added=self.added)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the folder (remove the lock, if it is still this run's)."""
        if self._holder is not None and read_holder(self.out / LOCK) == self._holder:
            (self.out / LOCK).unlink(missing_ok=True)
        self._holder = None

    def _claim(self) -> None:
        lock = self.out / LOCK
        me = Holder(os.getpid(), socket.gethostname(), self.command,
                    datetime.now(timezone.utc).isoformat(timespec="seconds"))
        for _ in range(3):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_holder(lock)
                if holder is None:
                    raise OutputFolderError(
                        f"{self.out} is locked by {lock}, which names no holder (a run killed "
                        "as it started, or another tool's file). If no lmboost run uses the "
                        "folder, delete that file and rerun."
                    ) from None
                if not _is_stale(holder):
                    raise OutputFolderError(
                        f"{self.out} is in use by {holder}. Wait for it to finish, or give "
                        f"another --out. (If that run is gone, delete {lock}.)"
                    ) from None
                if _take_over(lock, holder):
                    warnings.warn(
                        f"{self.out} was locked by {holder}, which is no longer running: taking "
                        "the folder over.",
                        stacklevel=4,
                    )
                continue
            except OSError as err:
                raise OutputFolderError(f"Cannot write in {self.out}: {err.strerror}.") from None
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(asdict(me), f)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as err:  # a full disk: leave no lock that names no holder
                lock.unlink(missing_ok=True)
                raise write_error(lock, err) from None
            self._holder = me
            return
        raise OutputFolderError(f"Could not claim {self.out}: other runs keep taking it over.")

    # ------------------------------------------------------------------ settings

    def record(
        self,
        settings: Mapping[str, Any],
        *,
        compare: Iterable[str] | None = None,
        added: Mapping[str, Any] | None = None,
    ) -> None:
        """Compare ``settings`` with those ``settings.json`` recorded, then write them there.

        ``compare``: the settings that must equal the recorded ones (default: all; the command
        always). A setting the record lacks (written by an older version) takes its value in
        ``added``, the settings added since with the value those folders had, and is not
        compared when ``added`` has none. A difference is an error naming each one, old -> new.
        """
        current = {"command": self.command, **to_jsonable(dict(settings))}
        keys = ["command", *(compare if compare is not None else settings)]
        self._check_settings(current, keys, dict(added or {}))
        fresh = not (self.out / SETTINGS).exists()
        write_json(self.out / SETTINGS, current)
        self._fresh_settings = self._fresh_settings or fresh

    def _check_settings(
        self, current: dict[str, Any], keys: list[str], added: dict[str, Any]
    ) -> None:
        path = self.out / SETTINGS
        if not path.exists():
            return
        try:
            stored = read_json(path)
            if not isinstance(stored, dict):
                raise ValueError
        except (OSError, ValueError):
            raise RunRecordError(
                f"{path} is not a readable settings record, so the run in {self.out} cannot be "
                "checked before resuming. Pass --restart to start over (the folder's content is "
                "moved aside), or give another --out."
            ) from None
        changed = changed_settings(stored, current, keys, added)
        if changed:
            raise RunRecordError(
                f"{self.out} holds a run with other settings ({', '.join(changed)}). Rerun with "
                "the same settings to resume, give another --out, or pass --restart to start "
                f"over (the folder's content is moved to {self.out.name}.old-<time> beside it)."
            )

    def _move_aside(self) -> None:
        """Move everything but the lock to a new sibling folder (saying which, in a warning)."""
        entries = [p for p in self.out.iterdir() if p.name != LOCK]
        if not entries:
            return
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = self.out.with_name(f"{self.out.name}.old-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.out.with_name(f"{self.out.name}.old-{stamp}-{n}")
        aside.mkdir()
        for entry in entries:
            shutil.move(str(entry), aside / entry.name)
        warnings.warn(f"--restart: the earlier content of {self.out} is now in {aside}.",
                      stacklevel=4)

    # ------------------------------------------------------------------ content

    def path(self, *parts: str) -> Path:
        """A path inside the run folder."""
        return self.out.joinpath(*parts)

    def log(self, name: str = "items.jsonl", key: str = "uid") -> ItemLog:
        """The JSON-lines log ``name`` of finished items, each identified by its ``key``."""
        return ItemLog(self.out / name, key)


class ItemLog:
    """A JSON-lines file of finished items, one record per line, appended as each finishes."""

    def __init__(self, path: Path, key: str = "uid") -> None:
        self.path = path
        self.key = key

    def read(self) -> dict[str, dict]:
        """The records by key (a later line for the same key wins).

        Each record is written as one line ending in a newline, so bytes after the last newline
        are a record cut short by a killed run: they are dropped with a warning (and cut off the
        file, so that appending goes on cleanly). A complete line that is not a record is an
        error naming the file, the line and the fix.
        """
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            warnings.warn(
                f"{self.path}: dropped its last line, a record cut short when a run was killed "
                "(that item is done again).",
                stacklevel=2,
            )
            with open(self.path, "r+b") as f:
                f.truncate(end)
        records: dict[str, dict] = {}
        for number, line in enumerate(data[:end].split(b"\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records[record[self.key]] = record
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                raise RunRecordError(
                    f"{self.path}, line {number} is not an item record: delete that line (its "
                    "item is done again) or the whole file, and rerun."
                ) from None
        return records

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record as one complete line, flushed to disk before returning."""
        line = json.dumps(to_jsonable(dict(record)), ensure_ascii=False, allow_nan=False) + "\n"
        data = memoryview(line.encode("utf-8"))
        with open(self.path, "ab", buffering=0) as f:
            end = f.seek(0, os.SEEK_END)
            try:
                while data:
                    data = data[f.write(data):]
                os.fsync(f.fileno())
            except OSError as err:  # a full disk: cut off what part of the line got written
                with contextlib.suppress(OSError):
                    os.ftruncate(f.fileno(), end)
                raise write_error(self.path, err) from None


@dataclass(kw_only=True)
class RunConfig:
    """The settings every run command shares (``icl``, ``reason``, ``generate``, ``compress``,
    ``bias``): its folder and the model it loads. Each command's config inherits them, and its
    ``validate`` calls this one.

    Attributes:
        out: the run folder.
        model: model spec for :func:`lmboost.models.load_model` (catalog alias, local folder,
            ``.gguf`` file, hub id).
        dtype: float32, bfloat16, float16 or auto (bfloat16 on CUDA, float32 elsewhere).
        device: where the weights run ("auto": CUDA when available; the hf backend's).
        trust_remote_code: allow the model folder's own Python code (off).
        restart: start the folder over: what it holds is moved aside (``OUT.old-<time>``).
    """

    out: Path | str
    model: str = DEFAULT_MODEL
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    restart: bool = False

    def validate(self) -> None:
        """Raise LmboostError naming a bad dtype or device."""
        resolve_dtype(self.dtype, self.device)

    def check_integers(self, **lowest: int) -> None:
        """Raise LmboostError unless each named field is an integer (not a bool) at least its
        ``lowest`` value."""
        for name, low in lowest.items():
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, not {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return to_jsonable(asdict(self))

    def settings(self) -> dict[str, Any]:
        """The fields as settings: :meth:`to_dict` without ``out`` and ``restart``, which say
        where and how to run, not what."""
        return {k: v for k, v in self.to_dict().items() if k not in ("out", "restart")}


@dataclass(kw_only=True)
class BackendRunConfig(RunConfig):
    """A run whose model runs behind a :class:`~lmboost.backends.Backend` (``icl``, ``reason``,
    ``generate``).

    Attributes:
        backend: "hf" (transformers, prefix-cached) or "vllm".
        tensor_parallel_size: GPUs the vllm backend shards the model over.
    """

    backend: str = "hf"
    tensor_parallel_size: int = 1

    def validate(self) -> None:
        """Raise LmboostError naming a bad dtype, device, backend or GPU count."""
        super().validate()
        if self.backend not in BACKENDS:
            raise BackendError(
                f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}."
            )
        self.check_integers(tensor_parallel_size=1)

    def open_backend(self, model: Backend | LoadedModel | None = None, **options: Any) -> Backend:
        """``model`` as a backend when given (already in memory), else ``self.model`` loaded on
        ``self.backend``; ``options`` (``batch_size``, ...) go to the backend."""
        if model is not None:
            return as_backend(model, **options)
        return load_backend(
            self.model, self.backend, dtype=self.dtype, device=self.device,
            tensor_parallel_size=self.tensor_parallel_size,
            trust_remote_code=self.trust_remote_code, **options,
        )

    def open_with_weights(
        self, model: Backend | LoadedModel | None = None, **options: Any
    ) -> tuple[Backend | None, str]:
        """The backend over ``model`` (None when no model is given and none had to be loaded)
        and the fingerprint of the run's weights (:mod:`lmboost.models.identity`): ``model``'s,
        else those of ``self.model``'s files, loaded only when they cannot be fingerprinted
        unloaded (a hub id not downloaded yet: loading fetches it)."""
        backend = None if model is None else self.open_backend(model, **options)
        weights = weights_fingerprint(self.model) if backend is None else None
        if weights is None:
            backend = backend or self.open_backend(**options)
            weights = loaded_fingerprint(backend, self.model)
        return backend, weights


def changed_settings(
    stored: Mapping[str, Any], current: Mapping[str, Any], keys: Iterable[str],
    added: Mapping[str, Any] | None = None,
) -> list[str]:
    """``"key: old -> new"`` for each of ``keys`` whose recorded value differs from ``current``;
    a key the record lacks takes its value in ``added`` and is not compared without one."""
    missing, added = object(), added or {}
    changed = []
    for key in keys:
        old = stored.get(key, added.get(key, missing))
        if old is not missing and old != current.get(key):
            changed.append(f"{key}: {old!r} -> {current.get(key)!r}")
    return changed


def check_out(out: Path) -> None:
    """Make sure ``out`` is (or can become) a folder lmboost writes in, creating it; a file, a
    path under a file or a folder that cannot be created is an error saying so."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file, not a folder: give a folder path.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = "a part of it is a file" if err.errno in (errno.ENOTDIR, errno.EEXIST) else (
            err.strerror
        )
        raise OutputFolderError(f"Cannot create the --out folder {out}: {reason}.") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputFolderError(f"--out {out} is not writable: give a folder you can write in.")


def read_holder(lock: Path) -> Holder | None:
    """The holder a lock file names, or None when it names none (or is gone)."""
    try:
        return Holder(**json.loads(lock.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _is_stale(holder: Holder) -> bool:
    """True when the holder ran on this host and its process is gone."""
    if holder.host != socket.gethostname() or holder.pid == os.getpid():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _take_over(lock: Path, stale: Holder) -> bool:
    """Remove ``lock`` if it still names ``stale`` (renamed first, so that of two runs taking
    over at once only one removes it); True when this run removed it."""
    moved = lock.with_name(f"{LOCK}.stale-{os.getpid()}")
    try:
        os.rename(lock, moved)
    except FileNotFoundError:
        return False
    if read_holder(moved) == stale:
        moved.unlink(missing_ok=True)
        return True
    with contextlib.suppress(FileExistsError):  # another run's fresh lock: put it back
        os.link(moved, lock)
    moved.unlink(missing_ok=True)
    return False
