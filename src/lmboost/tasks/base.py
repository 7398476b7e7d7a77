"""The task data model: an :class:`Example` and a :class:`ClassificationTask` that declares how to
load, render and verbalize it.

A task is plain data plus two loader callables. Nothing is read from disk until
:meth:`ClassificationTask.load_eval` or :meth:`ClassificationTask.load_pool` is called, so
building (and registering) a task is free.

Prompt shape (Zhao et al. 2021, "Calibrate Before Use")::

    {instruction}{demo_separator}                      # only when instruction is non-empty
    {render(demo_1)} {verbalizer[demo_1.label]}{demo_separator}
    ...
    {render(query)}                                   # the model scores " " + each label word

:meth:`render` gives ``template.format(**example.fields)``; :meth:`answer_text` gives
``" " + word`` (the label word after a single space). Multi-choice tasks such as COPA carry
per-example answer options in :attr:`Example.choices`, which then replace the verbalizer for
that example (see :attr:`ClassificationTask.per_example_choices`).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lmboost.errors import TaskError


@dataclass(frozen=True)
class Example:
    """One labelled input.

    ``fields`` are the template's inputs (``{"sentence": ...}`` or ``{"premise": ...,
    "hypothesis": ...}``; extra keys are allowed and ignored by the template). ``label`` indexes
    ``task.labels``. ``choices``, when set, are this example's answer words (without leading
    space), one per label, overriding ``task.verbalizer`` (COPA's two alternatives). ``uid`` is a
    stable identifier of the source row (``"file:line"`` or the dataset's own id) for run
    records; it plays no part in prompts.
    """

    fields: dict[str, str]
    label: int
    choices: tuple[str, ...] | None = None
    uid: str = ""


Loader = Callable[[], list[Example]]


@dataclass(kw_only=True)
class ClassificationTask:
    """A classification task scored by comparing the LM's likelihood of each label word.

    Attributes:
        name: registry name, e.g. ``"sst2"``.
        labels: label names in index order, e.g. ``["negative", "positive"]``.
        verbalizer: the word appended after the prompt for each label, WITHOUT leading space
            (``answer_text`` adds one); may span several tokens, e.g. ``"Sci/Tech"``.
        template: one demonstration/query, ``str.format`` over ``Example.fields``, ending at the
            answer slot, e.g. ``"Review: {sentence}\\nSentiment:"``.
        eval_split: human description of the evaluation data, e.g. ``"stsa.binary.dev (872)"``.
        pool_split: human description of the demonstration pool ("" when there is none).
        eval_loader / pool_loader: callables returning the examples; ``pool_loader`` is None for a
            task without a demonstration pool (zero-shot only).
        instruction: optional text placed once before the demonstrations.
        demo_separator: text between instruction, demonstrations and query (``"\\n\\n"``).
        description: one paragraph on the data source and any deviation from the usual setup.
        per_example_choices: True when every example carries its own ``choices`` (COPA);
            ``verbalizer`` then only names the options generically.
        no_pool_hint: how to give this task a demonstration pool, said when one is asked for
            and there is none (custom tasks name their own options).
        domain_premise: the answer-introducing text that PMI calibration scores the choices
            after without the example, ``str.format`` over the example's fields (COPA:
            ``"{connector}"``); "" takes the template's text after its last field.
    """

    name: str
    labels: list[str]
    verbalizer: list[str]
    template: str
    eval_split: str
    eval_loader: Loader = field(repr=False)
    pool_loader: Loader | None = field(default=None, repr=False)
    pool_split: str = ""
    instruction: str = ""
    demo_separator: str = "\n\n"
    description: str = ""
    per_example_choices: bool = False
    no_pool_hint: str = field(default="", repr=False)
    domain_premise: str = ""

    def __post_init__(self) -> None:
        if not self.labels:
            raise TaskError(f"Task {self.name!r} declares no labels; give one name per class.")
        if len(self.verbalizer) != len(self.labels):
            raise TaskError(
                f"Task {self.name!r} has {len(self.labels)} labels {self.labels} but "
                f"{len(self.verbalizer)} label words {self.verbalizer}; give one word per label."
            )
        for word in self.verbalizer:
            if not word or word != word.lstrip():
                raise TaskError(
                    f"Task {self.name!r}: label word {word!r} is empty or starts with "
                    "whitespace; write it without the leading space (one is added before it)."
                )
        if not self.per_example_choices:
            first: dict[str, str] = {}
            for label, word in zip(self.labels, self.verbalizer):
                if word in first:
                    raise TaskError(
                        f"Task {self.name!r}: labels {first[word]!r} and {label!r} have the same "
                        f"label word {word!r}, so no score can tell them apart; give each label "
                        "its own word."
                    )
                first[word] = label
        try:
            self.template_fields  # noqa: B018 - parse once to reject a broken template early
        except ValueError as err:
            raise TaskError(
                f"Task {self.name!r}: template {self.template!r} is not a valid str.format "
                f"string ({err}); write literal braces as '{{{{' and '}}}}'."
            ) from None

    # ------------------------------------------------------------------ data
    @property
    def has_pool(self) -> bool:
        return self.pool_loader is not None

    def load_eval(self) -> list[Example]:
        """The evaluation examples, read from disk on every call (nothing is cached)."""
        return self._checked(self.eval_loader(), "eval")

    def load_pool(self) -> list[Example]:
        """The demonstration pool (see ``pool_split``), read on every call.

        Pool examples whose rendered input (and choices) equals that of an eval example are
        dropped, so a demonstration never repeats a query verbatim; official splits share a few
        such inputs (e.g. 235 tweets in TweetEval hate train/test, 10 TREC questions).
        """
        if self.pool_loader is None:
            raise TaskError(
                f"Task {self.name!r} has no demonstration pool, so it can only run zero-shot. "
                + (
                    self.no_pool_hint
                    or "For a custom task give pool_path= (YAML: `pool:`) or pool_size= to hold "
                    "out part of the data file."
                )
            )
        pool = self._checked(self.pool_loader(), "pool")
        seen = {self._input_key(ex) for ex in self.eval_loader()}
        return [ex for ex in pool if self._input_key(ex) not in seen]

    def _input_key(self, example: Example) -> tuple[str, tuple[str, ...] | None]:
        return self.render(example), example.choices

    def _checked(self, examples: list[Example], split: str) -> list[Example]:
        n = len(self.labels)
        for ex in examples:
            if not 0 <= ex.label < n:
                raise TaskError(
                    f"Task {self.name!r} {split} example {ex.uid or ex.fields}: label "
                    f"{ex.label} is outside 0..{n - 1} ({self.labels})."
                )
            if self.per_example_choices and (ex.choices is None or len(ex.choices) != n):
                raise TaskError(
                    f"Task {self.name!r} {split} example {ex.uid}: expected {n} per-example "
                    f"choices, found {ex.choices!r}."
                )
        return examples

    # ------------------------------------------------------------- rendering
    @property
    def template_fields(self) -> list[str]:
        """Field names the template uses, in order of first appearance."""
        names: list[str] = []
        for _, name, _, _ in string.Formatter().parse(self.template):
            if name is not None:
                base = name.split(".")[0].split("[")[0]
                if base and base not in names:
                    names.append(base)
        return names

    @property
    def template_ends(self) -> tuple[str, str]:
        """The template's literal text before its first field and after its last field
        (``("Review: ", "\\nSentiment:")``); a template without fields is all head."""
        items = list(string.Formatter().parse(self.template))
        fields = [i for i, item in enumerate(items) if item[1] is not None]
        if not fields:
            return "".join(item[0] for item in items), ""
        head = "".join(item[0] for item in items[: fields[0] + 1])
        return head, "".join(item[0] for item in items[fields[-1] + 1 :])

    def render(self, example: Example) -> str:
        """The example's input text, ending at the answer slot (no trailing space)."""
        return self._format(self.template, example, "template")

    def domain_premise_text(self, example: Example) -> str:
        """PMI's domain premise for ``example``: :attr:`domain_premise` filled with its fields,
        else the template's text after its last field, leading white space dropped ("" when
        there is none)."""
        if self.domain_premise:
            return self._format(self.domain_premise, example, "domain_premise").lstrip()
        return self.template_ends[1].lstrip()

    def _format(self, template: str, example: Example, what: str) -> str:
        try:
            return template.format(**example.fields)
        except KeyError as err:
            raise TaskError(
                f"Task {self.name!r}: {what} needs field {err.args[0]!r} but example "
                f"{example.uid or ''} has only {sorted(example.fields)}; fix the {what} or "
                "the data's column names."
            ) from None

    def answer_words(self, example: Example) -> list[str]:
        """This example's candidate words (no leading space): its choices, else the verbalizer."""
        return list(example.choices) if example.choices is not None else list(self.verbalizer)

    def answer_options(self, example: Example) -> list[str]:
        """Continuations to score, one per label, each ``" " + word``."""
        return [" " + word for word in self.answer_words(example)]

    def answer_text(self, example: Example, label: int | None = None) -> str:
        """``" " + word`` for ``label`` (default: the example's gold label)."""
        return " " + self.answer_words(example)[example.label if label is None else label]

    def render_demo(self, example: Example) -> str:
        """A full demonstration: the rendered input followed by its gold answer."""
        return self.render(example) + self.answer_text(example)

    def prompt_prefix(self, demonstrations: Sequence[Example] = ()) -> str:
        """Instruction and demonstrations, each followed by ``demo_separator`` ("" when there
        are neither): everything before the query."""
        parts = [self.instruction] if self.instruction else []
        parts += [self.render_demo(d) for d in demonstrations]
        return "".join(p + self.demo_separator for p in parts)

    def prompt(self, example: Example, demonstrations: Sequence[Example] = ()) -> str:
        """The full context the model scores the answer options after: :meth:`prompt_prefix`
        then the rendered query. ICL (with demonstrations) and SFT (without) both use it."""
        return self.prompt_prefix(demonstrations) + self.render(example)

    def summary(self) -> str:
        """One line for listings: name, labels, eval split and pool."""
        words = "per-example choices" if self.per_example_choices else "/".join(self.verbalizer)
        pool = self.pool_split or "no pool"
        n = len(self.labels)
        return f"{self.name}: {n} labels ({words}); eval {self.eval_split}; pool {pool}"
