"""Field templates of a task file: ``"{title|unescape|squash}"`` names a column of the data
row, then filters applied left to right (``|name`` or ``|name:argument``).

A task's ``fields:`` maps each example field to such a template and ``choices:`` lists one per
answer option. Literal braces are written ``{{`` and ``}}``. The filters (docs/tasks.md):

* ``strip``: surrounding white space removed;
* ``squash``: every run of white space made one space, ends stripped;
* ``sentence``: squashed, then a final ``.`` added unless it ends in ``. ? ! " '``;
* ``period``: a final ``.`` added unless it ends in ``. ? !`` (nothing else changed);
* ``question``: any final ``?`` replaced by exactly one;
* ``drop_final_punct``: final ``. ! ?`` removed;
* ``unquote``: one pair of wrapping double quotes removed (a CSV-export artifact);
* ``lower_first``: the first character lower-cased;
* ``unescape``: HTML entities undone, also AG News's mangled `` #39;``/`` quot;`` forms;
  backslashes become spaces;
* ``line:N``: the N-th non-blank line (from 1), its white space squashed;
* ``first_sentence``: the text up to the first sentence end followed by a capitalised word;
* ``detokenize``: Penn-Treebank tokenized text (SST's) made plain: ``it 's a film , is n't it ?``
  -> ``it's a film, isn't it?``, ``-lrb-``/``-rrb-`` -> parentheses;
* ``human_turn``: the first ``Human:`` turn of a ``Human: ... Assistant: ...`` transcript
  (HH-RLHF), stripped;
* ``assistant_turn``: all after the transcript's first ``Assistant:``, stripped (the reply of a
  single-turn transcript);
* ``human_turns``: how many ``\n\nHuman:`` turns the transcript has.

A mapping named under the task's ``maps:`` is a filter too: it replaces the value by its entry.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping

from lmboost.errors import TaskError

Filter = Callable[[str, str], str]
"""``filter(value, argument)`` -> new value; raises ValueError for a value it cannot take."""


def _squash(text: str) -> str:
    return " ".join(text.split())


def _sentence(text: str) -> str:
    text = _squash(text)
    return text if text[-1:] in ".?!\"'" else text + "."


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


_ENTITY = re.compile(r" ?#(\d+);| ?(quot|amp|lt|gt);")


def _unescape(text: str) -> str:
    text = _ENTITY.sub(
        lambda m: html.unescape(f"&#{m[1]};" if m[1] else f"&{m[2]};"), html.unescape(text)
    )
    return text.replace("\\", " ")


def _line(text: str, argument: str) -> str:
    number = int(argument)
    lines = [_squash(line) for line in text.split("\n")]
    lines = [line for line in lines if line]
    if len(lines) < number:
        raise ValueError(f"expected at least {number} non-blank line(s), found {len(lines)}.")
    return lines[number - 1]


_FIRST_SENTENCE = re.compile(r"(.+?[.!?][\"']?)(?=\s+[A-Z\"'(]|\s*$)")


def _first_sentence(text: str) -> str:
    match = _FIRST_SENTENCE.match(text)
    return match.group(1) if match else text


def _detokenize(text: str) -> str:
    text = text.strip().replace("-lrb-", "(").replace("-rrb-", ")")
    text = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text)
    text = re.sub(r" ([,.;:!?)%])", r"\1", text)
    return re.sub(r"\( ", "(", text)


_HUMAN, _ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


def _assistant_turn(transcript: str) -> str:
    if _ASSISTANT not in transcript:
        raise ValueError(f"the transcript has no {_ASSISTANT.strip()!r} turn.")
    return transcript.split(_ASSISTANT, 1)[1].strip()


FILTERS: dict[str, Filter] = {
    "strip": lambda s, _: s.strip(),
    "squash": lambda s, _: _squash(s),
    "sentence": lambda s, _: _sentence(s),
    "period": lambda s, _: s if s[-1:] in ".?!" else s + ".",
    "question": lambda s, _: s.rstrip("?") + "?",
    "drop_final_punct": lambda s, _: s.rstrip(".!?"),
    "unquote": lambda s, _: _unquote(s),
    "lower_first": lambda s, _: s[:1].lower() + s[1:],
    "unescape": lambda s, _: _unescape(s),
    "line": _line,
    "first_sentence": lambda s, _: _first_sentence(s),
    "detokenize": lambda s, _: _detokenize(s),
    "human_turn": lambda s, _: s.split(_ASSISTANT, 1)[0].split("Human:", 1)[-1].strip(),
    "assistant_turn": lambda s, _: _assistant_turn(s),
    "human_turns": lambda s, _: str(s.count(_HUMAN)),
}

_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class FieldTemplate:
    """One field template, parsed once; ``render(row)`` fills it from a data row."""

    def __init__(self, text: str, maps: Mapping[str, Mapping[str, str]] | None = None,
                 where: str = "field template"):
        self.text = text
        self.parts: list[str | tuple[str, list[tuple[str, str]]]] = []
        maps = maps or {}
        position = 0
        for match in _PART.finditer(text):
            if match.start() > position:
                self.parts.append(text[position : match.start()])
            position = match.end()
            token = match.group(0)
            if token in ("{{", "}}"):
                self.parts.append(token[0])
                continue
            if match.group(1) is None:
                raise TaskError(
                    f"{where} {text!r}: unmatched {token!r}; write it as {token * 2!r}."
                )
            column, *names = match.group(1).split("|")
            filters = []
            for spec in names:
                name, _, argument = spec.partition(":")
                name = name.strip()
                if name not in FILTERS and name not in maps:
                    raise TaskError(
                        f"{where} {text!r}: unknown filter {name!r}; use one of "
                        f"{', '.join(sorted([*FILTERS, *maps]))} (a mapping under `maps:` "
                        "is a filter too)."
                    )
                filters.append((name, argument))
            self.parts.append((column, filters))
        if position < len(text):
            self.parts.append(text[position:])
        self.maps = {name: {str(k): str(v) for k, v in m.items()} for name, m in maps.items()}

    @property
    def columns(self) -> list[str]:
        return [part[0] for part in self.parts if isinstance(part, tuple)]

    def render(self, row: Mapping) -> str:
        """The template filled from ``row``; KeyError for a missing column, ValueError for a
        value a filter cannot take."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            column, filters = part
            value = row[column]
            if value is None:
                raise KeyError(column)
            value = str(value)
            for name, argument in filters:
                if name in self.maps:
                    if value not in self.maps[name]:
                        raise ValueError(
                            f"{column} {value!r} is not one of {sorted(self.maps[name])} "
                            f"(the map {name!r})."
                        )
                    value = self.maps[name][value]
                else:
                    value = FILTERS[name](value, argument)
            out.append(value)
        return "".join(out)
