"""Where lmboost's configuration comes from: the cache and data folders (environment), and
settings files (YAML) and command-line overrides turned into the run's dataclass.

Every settings file lmboost reads (task files, training recipes, instruction mixtures, serve
configs) goes through one loader, so each reports problems the same way::

    >>> config = load_config(MixtureConfig, "mix.yaml", {"seed": 1}, error=MixtureError)

Each error is raised as the class the caller names (``error=``: TaskError, RecipeError,
MixtureError, ServeConfigError), by default :class:`~lmboost.errors.ConfigError`.

- :func:`read_yaml`: the file's mapping; a missing file, bytes that are not UTF-8, a YAML
  syntax error (with its line) or a top level that is not a mapping raise ``error``.
- :func:`parse_overrides`: ``--set KEY=VALUE`` strings (dots reach into sections) as a mapping.
- :func:`merge`: layers of settings, the later over the earlier, mappings merged key by key.
- :func:`from_dict`: the dataclass; unknown keys are listed with the allowed ones and a
  "did you mean", each value is converted to its field's type or the key is named with the type
  it takes, and missing required keys are named.

Values are converted, not just checked, because a value can be text where a number is meant
(``--set learning_rate=1e-4``; PyYAML itself reads ``1e-4`` as text): text becomes a number or
true/false where the field takes one, a comma-separated text a list (``labels: neg,pos``), a
whole number a float, a float with no fraction an int and text a :class:`~pathlib.Path`. Text
never becomes a number where the field also takes text, and true/false never becomes a number
or text. ``null`` (or the text ``none``/``null``) leaves an optional field unset, and is an
empty list or mapping where the field is a list or mapping.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lmboost.errors import ConfigError, DataNotFoundError

T = TypeVar("T")

#: A plain YAML value kept as written (labels compared as text later, say): text, a number or
#: true/false; a list or mapping in its place is an error.
Scalar = str | int | float | bool


# --------------------------------------------------------------------------- folders


def cache_dir() -> Path:
    """Root of lmboost's cache: ``$LMBOOST_CACHE``, else ``~/.cache/lmboost``."""
    root = os.environ.get("LMBOOST_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "lmboost"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Directory holding the shared data sets.

    ``$LMBOOST_DATA`` if set; otherwise the first ``shared/data`` found beside the current
    directory or one of its parents (the layout of a checkout next to ``shared/``).
    """
    root = os.environ.get("LMBOOST_DATA")
    if root:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"LMBOOST_DATA={root} is not a directory.")
        return path
    here = Path.cwd().resolve()
    for parent in (here, *here.parents):
        for candidate in (parent / "shared" / "data", parent / "data"):
            if (candidate / "sst2").is_dir():
                return candidate
    raise DataNotFoundError(
        "Could not find the data sets. Set LMBOOST_DATA to the folder that holds "
        "sst2/, agnews/, ... (for example ../shared/data)."
    )


# --------------------------------------------------------------------------- reading


def read_yaml(
    path: str | Path, *, what: str = "Config file", error: type[Exception] = ConfigError
) -> dict[str, Any]:
    """The mapping a YAML settings file holds (an empty file: ``{}``).

    Raises ``error`` when the file is missing ("``what`` PATH does not exist"), is not UTF-8
    (naming the line), is not valid YAML (naming the line and column) or holds something other
    than a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise error(
            f"{path}, line {line}: the file is not UTF-8 (byte 0x{raw[err.start]:02x}). Re-encode "
            f"it as UTF-8, e.g. `iconv -f cp1252 -t utf-8 {path} > fixed{path.suffix}` (use the "
            "encoding it was written in, often cp1252 or latin-1)."
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        place = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise error(f"{path}{place}: not valid YAML: {problem}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(
            f"{path} must hold a mapping of settings (`key: value` lines), not "
            f"{_kind(data)}."
        )
    return data


def parse_overrides(
    items: Iterable[str], *, flag: str = "--set", error: type[Exception] = ConfigError
) -> dict[str, Any]:
    """``["lora.r=16", "learning_rate=1e-4"]`` -> ``{"lora": {"r": 16}, "learning_rate": "1e-4"}``.

    Values are read as YAML scalars (``true``, ``3``, ``0.5``, ``null``); the field's type decides
    the rest when the dataclass is built.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise error(f"{flag} expects KEY=VALUE (e.g. lora.r=16), got {item!r}.")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        target = out
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise error(f"{flag} {item!r}: {part} is given both as a value and a section.")
        target[leaf] = value
    return out


def merge(base: Mapping[str, Any], *overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` with each of ``overrides`` laid over it in turn; where both sides hold a mapping
    (a section, or a field such as per-source caps) they are merged key by key."""
    out = dict(base)
    for layer in overrides:
        for key, value in (layer or {}).items():
            current = out.get(key)
            if isinstance(value, Mapping) and isinstance(current, Mapping):
                out[key] = merge(current, value)
            else:
                out[key] = value
    return out


def rename_keys(
    data: Mapping[str, Any],
    renamed: Mapping[str, str],
    *,
    source: str = "settings",
    error: type[Exception] = ConfigError,
) -> dict[str, Any]:
    """``data`` with each old key of ``renamed`` (old -> new) spelled the new way, warning
    that the old one is deprecated (a FutureWarning: the people who write settings files should
    see it, and Python hides DeprecationWarnings outside ``__main__``); both spellings at once
    are an error."""
    out = dict(data)
    for old, new in renamed.items():
        if old not in out:
            continue
        if new in out:
            raise error(f"{source}: {old} and {new} are the same setting; give only {new}.")
        warnings.warn(
            f"{source}: `{old}` is deprecated and will stop working; call it `{new}`.",
            FutureWarning,
            stacklevel=3,
        )
        out[new] = out.pop(old)
    return out


# --------------------------------------------------------------------------- building


def check_keys(
    data: Mapping[Any, Any],
    allowed: Sequence[str],
    *,
    source: str = "settings",
    prefix: str = "",
    error: type[Exception] = ConfigError,
    help: str = "",
) -> None:
    """Raise ``error`` listing the keys of ``data`` not in ``allowed``, each with the closest
    allowed key, and then the allowed keys."""
    unknown = [str(key) for key in data if str(key) not in allowed]
    if not unknown:
        return
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, allowed, n=1)
        named.append((f"{prefix}{key}", f"{prefix}{close[0]}" if close else None))
    if len(named) == 1:
        key, close = named[0]
        what = f"unknown key {key!r}." + (f" Did you mean {close}?" if close else "")
    else:
        what = "unknown keys " + ", ".join(
            f"{key!r}" + (f" (did you mean {close}?)" if close else "") for key, close in named
        ) + "."
    raise error(
        f"{source}: {what} Allowed keys: {', '.join(allowed)}." + (f" {help}" if help else "")
    )


def from_dict(
    cls: type[T],
    data: Any,
    *,
    source: str = "settings",
    prefix: str = "",
    error: type[Exception] = ConfigError,
    help: str = "",
) -> T:
    """An instance of dataclass ``cls`` from a mapping of its fields (a nested dataclass field
    from a nested mapping). Unknown keys, values that cannot take their field's type and missing
    required keys raise ``error`` naming ``source`` and the key. Does not call ``validate()``."""
    if not isinstance(data, Mapping):
        what = prefix.rstrip(".") or "the settings"
        raise error(f"{source}: {what} must be a mapping of settings, not {_kind(data)}.")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    check_keys(data, [f.name for f in fields], source=source, prefix=prefix, error=error,
               help=help)
    hints = typing.get_type_hints(cls)
    values = {
        str(key): coerce(value, hints[str(key)], key=f"{prefix}{key}", source=source, error=error,
                         help=help)
        for key, value in data.items()
    }
    missing = [
        f for f in fields
        if f.name not in values
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        names = ", ".join(
            f"{prefix}{f.name}" + (f" ({f.metadata['help']})" if "help" in f.metadata else "")
            for f in missing
        )
        raise error(f"{source}: missing required key(s): {names}." + (f" {help}" if help else ""))
    return cls(**values)


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    what: str = "Config file",
    error: type[Exception] = ConfigError,
    renamed: Mapping[str, str] | None = None,
    help: str = "",
    validate: bool = True,
) -> T:
    """The dataclass ``cls`` from the YAML file at ``path`` (None: its defaults) with
    ``overrides`` merged over it (:func:`merge`), built by :func:`from_dict` and, with
    ``validate``, checked by its ``validate()``. Keys in ``renamed`` (old -> new) are accepted
    in either layer with a FutureWarning."""
    source = str(path) if path is not None else "settings"
    data = read_yaml(path, what=what, error=error) if path is not None else {}
    layers = [data, dict(overrides or {})]
    if renamed:
        layers = [rename_keys(layer, renamed, source=source, error=error) for layer in layers]
    config = from_dict(cls, merge(*layers), source=source, error=error, help=help)
    if validate and hasattr(config, "validate"):
        config.validate()
    return config


# --------------------------------------------------------------------------- converting

_NULL_TEXT = ("none", "null")
_TRUE_TEXT = ("true", "yes", "on", "1")
_FALSE_TEXT = ("false", "no", "off", "0")


class _Mismatch(Exception):
    """A value that cannot take a type; :func:`coerce` turns it into the caller's error."""


def coerce(
    value: Any,
    hint: Any,
    *,
    key: str,
    source: str = "settings",
    error: type[Exception] = ConfigError,
    help: str = "",
) -> Any:
    """``value`` converted to the type ``hint`` (bool, int, float, str, Path, list[...],
    dict[...], a dataclass, :data:`Scalar`, ``Any`` or a union of these; see the module
    docstring); ``error`` naming ``source``, ``key`` and the type it takes when it cannot be."""
    try:
        return _coerce(value, hint, key, source, error, help)
    except _Mismatch:
        raise error(
            f"{source}: {key} must be {describe(hint)}, not {value!r}." + (f" {help}" if help
                                                                            else "")
        ) from None


def _coerce(value: Any, hint: Any, key: str, source: str, error: type[Exception],
            help: str) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _union(value, hint, key, source, error, help)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_dict(hint, value, source=source, prefix=f"{key}.", error=error, help=help)
    if origin is list or hint is list:
        (item,) = typing.get_args(hint) or (Any,)
        if value is None:  # `held_out:` with nothing after it
            return []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise _Mismatch
        return [coerce(v, item, key=f"{key}[{i}]", source=source, error=error, help=help)
                for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        key_hint, item = typing.get_args(hint) or (Any, Any)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise _Mismatch
        return {
            (str(k) if key_hint is str and not isinstance(k, bool) else k):
                coerce(v, item, key=f"{key}.{k}", source=source, error=error, help=help)
            for k, v in value.items()
        }
    return _scalar(value, hint)


def _union(value: Any, hint: Any, key: str, source: str, error: type[Exception],
           help: str) -> Any:
    options = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(options) < len(typing.get_args(hint)) and (
        value is None or (isinstance(value, str) and value.strip().lower() in _NULL_TEXT)
    ):
        return None
    if len(options) == 1:
        return _coerce(value, options[0], key, source, error, help)
    if value is None:
        raise _Mismatch
    lists = [a for a in options if a is list or typing.get_origin(a) is list]
    first = [
        *(lists if isinstance(value, str) and "," in value else []),  # "1,3": a list
        *(a for a in options if _is_instance(value, a)),  # a value already of an option's type
        *sorted(options, key=lambda a: a is str),  # else convert, to text last
    ]
    specific = None  # why a value already of an option's type failed inside (an item, a key)
    for option in dict.fromkeys(first):
        try:
            return _coerce(value, option, key, source, error, help)
        except _Mismatch:
            continue
        except error as err:
            if specific is None and _is_instance(value, option):
                specific = err
    if specific is not None:
        raise specific
    raise _Mismatch


def _is_instance(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        return isinstance(value, bool)
    if origin in (int, float):
        return isinstance(value, origin) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, Mapping)
    return isinstance(origin, type) and isinstance(value, origin)


def _scalar(value: Any, hint: Any) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and not isinstance(value, float):
            text = str(value).strip().lower()
            if text in _TRUE_TEXT:
                return True
            if text in _FALSE_TEXT:
                return False
        raise _Mismatch
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _Mismatch
        try:
            number = float(value)
        except ValueError:
            raise _Mismatch from None
        if hint is float:
            return number
        if isinstance(value, int):
            return value
        if not math.isfinite(number) or not number.is_integer():
            raise _Mismatch
        return int(number)
    if hint is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Path)):
            raise _Mismatch
        return str(value)
    if hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise _Mismatch
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _Mismatch
    return value


_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
          Path: "a path"}


def describe(hint: Any) -> str:
    """What values of type ``hint`` look like, for messages: ``a whole number or null``."""
    if hint == Scalar:
        return "a plain value (text, a number or true/false)"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        parts = [describe(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return " or ".join(parts)
    if origin is list or hint is list:
        args = typing.get_args(hint)
        if args and args[0] == Scalar:
            return "a list of plain values (text, numbers or true/false)"
        return "a list" + (f" of {_plural(describe(args[0]))}" if args and args[0] is not Any
                           else "")
    if origin is dict or hint is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping of settings"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(text: str) -> str:
    if text == "text":
        return "texts"
    for article in ("a ", "an "):
        if text.startswith(article) and " or " not in text:
            return text[len(article):] + "s"
    return f"items that are each {text}"


def _kind(value: Any) -> str:
    """A value's kind as users write it: a list, text, a number ..."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return type(value).__name__
