"""Generation prompt sets as data: which rows of a data file become prompts, and in what order.

A prompt set is a YAML file (keys: :class:`PromptSetSpec`, docs/tasks.md) read through the one
loader, :mod:`lmboost.config`; the built-in ones are ``lmboost/tasks/builtin/prompts/<name>.yaml``
and :func:`lmboost.tasks.registry.get_prompt_set` finds them by name (or loads a user's file).
Each row of the data file (read as a task file reads it, :mod:`lmboost.tasks.readers`) passes
``where``, then its ``prompt`` (a field template, :mod:`lmboost.tasks.fields`) must be non-empty,
hold at least ``min_words`` words, with its ``fields`` at most ``max_chars`` characters, and
(with ``unique``) not repeat an earlier prompt; the kept items are shuffled by
``random.Random(seed)`` (``seed: null`` keeps the file's order), so the first ``n`` of a larger
``n`` extend the same list. ``opening_words`` then cuts each prompt to its first words.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lmboost.config import Scalar
from lmboost.errors import TaskError
from lmboost.tasks.custom import _resolver, read_spec
from lmboost.tasks.fields import FieldTemplate
from lmboost.tasks.readers import Layout, read_rows

SPEC_HELP = "See docs/tasks.md (Prompt sets for generation) for the keys and their types."
_NAMES = {key: f"`{key}:`" for key in (
    "root", "format", "line_pattern", "line_files", "uid", "prompt", "fields", "where")}


@dataclass
class PromptSetSpec:
    """The keys of a prompt-set file (docs/tasks.md); paths are relative to the file unless
    ``root`` is ``data`` (the lmboost data folder) or ``package:NAME``."""

    path: str = field(metadata={"help": "the data file"})
    prompt: str = field(metadata={"help": "field template of the prompt"})
    name: str | None = None
    description: str = ""
    uid: str = "{name}:{row}"
    fields: dict[str, str] | None = None
    where: dict[str, Scalar] | None = None
    min_words: int | None = None
    max_chars: int | None = None
    unique: bool = False
    seed: int | None = 0
    opening_words: int | None = None
    chat: bool | None = None
    goal: str | None = None
    # Reading the data, as in a task file
    root: str | None = None
    requires: str = ""
    format: str | None = None
    line_pattern: str | None = None
    line_files: dict[str, str] | None = None
    encoding_fallback: str | None = None


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a set: a stable ``uid``, the text a model gets and any other ``fields``
    the set declares (a preference pair's responses, say)."""

    uid: str
    prompt: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class PromptSet:
    """A named list of prompts (``load(n)``: the first ``n`` in the set's fixed order), with
    how to decode them: ``chat`` (False: plain text; None: the model's chat template) and the
    RAIN ``goal`` they are meant for (None: none)."""

    name: str
    loader: Callable[[], list[PromptItem]] = field(repr=False)
    description: str = ""
    chat: bool | None = None
    goal: str | None = None

    def load(self, n: int | None = None) -> list[PromptItem]:
        """The first ``n`` items (all with None) in the set's fixed order."""
        items = self.loader()
        return items if n is None else items[:n]

    def prompts(self, n: int | None = None) -> list[str]:
        """The first ``n`` prompt texts (what ``run_generate`` takes)."""
        return [item.prompt for item in self.load(n)]


def prompt_set_from_yaml(path: str | Path) -> PromptSet:
    """The prompt set a YAML file declares (keys: :class:`PromptSetSpec`)."""
    path = Path(path)
    spec, _ = read_spec(PromptSetSpec, path, "Prompt-set file", SPEC_HELP)
    return prompt_set_from_spec(dataclasses.replace(spec, name=spec.name or path.stem),
                                base=path.parent)


def prompt_set_from_spec(spec: PromptSetSpec, *, base: str | Path | None = None) -> PromptSet:
    """The prompt set ``spec`` declares; relative paths start at ``base`` (default: the current
    folder) unless ``spec.root`` names another place. The data is read by ``load``."""
    name = spec.name or Path(spec.path).stem
    layout = Layout(spec.format, spec.line_pattern, spec.line_files, spec.encoding_fallback)
    layout.check(_NAMES)
    resolve = _resolver(spec, name, base, [spec.path], _NAMES)  # type: ignore[arg-type]
    prompt = FieldTemplate(spec.prompt, where=_NAMES["prompt"])
    fields = {k: FieldTemplate(v, where=f"{_NAMES['fields']} {k}:")
              for k, v in (spec.fields or {}).items()}
    where = [(FieldTemplate(k, where=_NAMES["where"]), str(v))
             for k, v in (spec.where or {}).items()]
    for key in ("min_words", "max_chars", "opening_words"):
        value = getattr(spec, key)
        if value is not None and value < 1:
            raise TaskError(f"`{key}:` must be at least 1 (or left out), not {value}.")

    def load() -> list[PromptItem]:
        items, seen = [], set()
        for index, row in enumerate(read_rows(spec.path, resolve, layout)):
            try:
                if any(t.render(row.values) != value for t, value in where):
                    continue
                text = prompt.render(row.values)
                extra = {k: t.render(row.values) for k, t in fields.items()}
            except KeyError as err:
                raise TaskError(f"{row.place}: missing column {err.args[0]!r} (row has "
                                f"{sorted(map(str, row.values))}).") from None
            except ValueError as err:
                raise TaskError(f"{row.place}: {err}") from None
            if not text.strip() or (spec.min_words and len(text.split()) < spec.min_words):
                continue
            if spec.max_chars and len(text) + sum(map(len, extra.values())) > spec.max_chars:
                continue
            if spec.unique and text in seen:
                continue
            seen.add(text)
            if spec.opening_words:
                text = " ".join(text.split()[: spec.opening_words])
            items.append(PromptItem(_uid(spec.uid, row, index, name), text, extra))
        if spec.seed is not None:
            random.Random(spec.seed).shuffle(items)
        return items

    return PromptSet(name, load, spec.description, spec.chat, spec.goal)


def _uid(template: str, row, index: int, name: str) -> str:
    """``uid:`` filled in: the row's columns, ``row`` (from 0, in file order), ``line``,
    ``file`` and ``name`` (the set's)."""
    try:
        return template.format(**{**row.values, "row": index, "line": row.line,
                                  "file": row.file, "name": name})
    except (KeyError, IndexError, ValueError) as err:
        raise TaskError(f"{row.place}: `uid:` {template!r} cannot be filled ({err!r}); it may "
                        "name the row's columns, {row}, {line}, {file} and {name}.") from None
