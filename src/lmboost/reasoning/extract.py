"""Answer extraction from generated text, with regular expressions only (never ``eval``).

Every extractor returns a normalised answer string, or None when the text holds no answer. The
rule throughout: text after the *last* answer phrase ("the answer is", "Answer:", "#### ") wins;
without such a phrase the last candidate in the text is taken. Stop strings already cut the
model's continuation into the next question, so the last phrase is the model's final word.
"""

from __future__ import annotations

import re
from decimal import Decimal

#: "The answer is", "the final answer is:", "Answer:", "answer (arabic numerals) is", ...
_PHRASE = re.compile(
    r"\banswer(?:\s*\([^)\n]*\))?(?:\s+to\s+(?:the|this)\s+question)?"
    r"(?:\s+(?:is|would\s+be|will\s+be)\b\s*:?|\s*:)"
    r"|\bthe\s+correct\s+(?:option|choice)\s+is\b\s*:?",
    re.IGNORECASE,
)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_MARKDOWN = re.compile(r"[*_`]+")

# A number: optional sign and currency ("-5", "$5", "-$5", "$-5"), digits with proper thousands
# commas ("1,234" but not "1,2,3"), an optional decimal part. The sign must not follow a word or
# closing bracket ("5-3" is a subtraction, not -3).
_NUMBER = re.compile(
    r"(?:(?<![\w)\]])(?P<sign>[-−]))?(?:[$€£]\s?(?P<sign2>[-−])?)?"
    r"(?<![\w.])(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(?P<frac>\d+))?(?!\.?\d)"
)

LETTERS = "ABCDEFGHIJKLMNOPQR"  # enough for every BBH task (reasoning_about_colored_objects: R)

BBH_WORD_ANSWERS = {
    frozenset({"True", "False"}),
    frozenset({"Yes", "No"}),
    frozenset({"yes", "no"}),
    frozenset({"valid", "invalid"}),
}


# --------------------------------------------------------------------------- numbers (GSM8K)


def extract_number(text: str) -> str | None:
    """The numeric answer of ``text`` as a normalised decimal string ("1,234.50" -> "1234.5").

    Looks, in order, after the last ``####`` (GSM8K's reference format), in the last
    ``\\boxed{...}``, after the last answer phrase ("The answer is $42."; in that sentence, after
    its last "=": "The answer is 3 + 4 = 7."); falls back to the last number anywhere. Currency
    signs, thousands commas, units and trailing zeros are dropped.
    """
    if "####" in text:
        found = _first_number(text.rsplit("####", 1)[1])
        if found is not None:
            return found
    boxed = _BOXED.findall(text)
    if boxed and (found := _first_number(boxed[-1])) is not None:
        return found
    after = _after_last_phrase(text)
    if after is not None:
        sentence = re.split(r"\.(?:\s|$)", _first_line(after))[0]
        if (found := _first_number(sentence.rsplit("=", 1)[-1])) is not None:
            return found
    numbers = list(_NUMBER.finditer(text))
    return _normalise_number(numbers[-1]) if numbers else None


def _first_number(text: str) -> str | None:
    match = _NUMBER.search(text)
    return _normalise_number(match) if match else None


def _normalise_number(match: re.Match) -> str:
    digits = match["int"].replace(",", "")
    if match["frac"]:
        digits += "." + match["frac"]
    value = Decimal(digits)
    if match["sign"] or match["sign2"]:
        value = -value
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


# --------------------------------------------------------------------------- multiple choice


def extract_choice(text: str, letters: str = "ABCD") -> str | None:
    """The option letter ``text`` chooses ("(B)", "B)", "answer is B", "Answer: (C)") or None.

    Letters count in upper case only, so the article "a" is never option A. In order: the letter
    right after the last answer phrase; the last "(X)"; a text that starts with "X", "X)", "X."
    or "X:"; the last line that is just "X" (with an optional ")", "." or ":").
    """
    text = _MARKDOWN.sub("", text)
    allowed = re.escape(letters)
    after = _after_last_phrase(text)
    if after is not None:
        head = re.match(rf"\s*(?:(?:option|choice)\s+)?\(?([{allowed}])(?:[).:,]|\s|$)", after)
        if head:
            return head[1]
        found = re.findall(rf"\(([{allowed}])\)", _first_line(after))
        if found:
            return found[0]
    found = re.findall(rf"\(([{allowed}])\)", text)
    if found:
        return found[-1]
    head = re.match(rf"\s*([{allowed}])(?:[).:,]|\s|$)", text)
    if head:
        return head[1]
    found = re.findall(rf"(?m)^\s*([{allowed}])[).:]?\s*$", text)
    return found[-1] if found else None


# --------------------------------------------------------------------------- BIG-Bench Hard


def extract_bbh(text: str, target: str) -> str | None:
    """The answer of ``text`` in the form of the BBH ``target`` (so that ``==`` scores it).

    The normaliser follows the target: "(A)".."(R)" option letters, True/False, Yes/No (in the
    target's case), valid/invalid, integers (multistep_arithmetic_two, object_counting), closing
    brackets (dyck_languages), lower-case word lists (word_sorting: words joined by one space);
    any other target is compared as free text (whitespace collapsed, final period dropped).
    """
    target = target.strip()
    if re.fullmatch(r"\([A-Z]\)", target):
        letter = extract_choice(text, LETTERS)
        return f"({letter})" if letter else None
    for words in BBH_WORD_ANSWERS:
        if target in words:
            return _extract_word(text, sorted(words, key=len, reverse=True))
    if re.fullmatch(r"-?\d+", target):
        return extract_number(text)
    span = _answer_span(text)
    if re.fullmatch(r"[\s()\[\]{}<>]+", target):
        brackets = re.findall(r"[)\]}>]", span)
        return " ".join(brackets) or None
    if re.fullmatch(r"[a-z0-9&'.-]+(?: [a-z0-9&'.-]+)*", target):
        words = [w.strip(".'\"") for w in re.split(r"[\s,]+", span)]
        return " ".join(w.lower() for w in words if w) or None
    return " ".join(span.split()).rstrip(".") or None


def _extract_word(text: str, words: list[str]) -> str | None:
    """The answer among ``words`` (whole words, any case), spelled as in ``words``: the first one
    on the line after the last answer phrase, else the last one anywhere in ``text``."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
    after = _after_last_phrase(text)
    found = pattern.findall(_first_line(after)) if after is not None else []
    hit = found[0] if found else next(reversed(pattern.findall(text)), None)
    if hit is None:
        return None
    return next(w for w in words if w.lower() == hit.lower())


# --------------------------------------------------------------------------- helpers


def _after_last_phrase(text: str) -> str | None:
    """The text after the last answer phrase, or None when there is none."""
    matches = list(_PHRASE.finditer(text))
    return text[matches[-1].end() :] if matches else None


def _first_line(text: str) -> str:
    """The first non-empty line of ``text`` ("" when there is none)."""
    return next((line for line in text.split("\n") if line.strip()), "")


def _answer_span(text: str) -> str:
    """The line holding a free-form answer: after the last answer phrase, else the first line;
    with a final period and surrounding markdown removed."""
    after = _after_last_phrase(text)
    span = _first_line(_MARKDOWN.sub("", after if after is not None else text)).strip()
    return span[:-1] if span.endswith(".") else span
