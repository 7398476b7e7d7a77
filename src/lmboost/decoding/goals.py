"""What RAIN asks the model about its own text: a goal is a question with two options.

The judged text is shown in the goal's ``layout`` (``{prompt}`` and ``{response}`` fields), then
the two options, labelled (A) and (B), and the judge's answer begins with ``The answer is: (`` so
that the next token is the label it picks. The self-evaluator asks each question twice, with the
wanted option first and then second, and averages the two answers (see ``evaluator.py``).

Goals: ``harmless`` (the default, after the HH prompt of the RAIN authors' code), ``positive``
(sentiment), and any yes/no question ending in "?", phrased so that *yes* is what is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmboost.generation import GenerationError

#: The judge's reply starts with this; the option label comes next.
ANSWER_PREFIX = "The answer is: ("

CONVERSATION = "Human: {prompt}\nAssistant: {response}"


@dataclass(frozen=True)
class Goal:
    """A self-evaluation criterion: the instruction to the judge, how the text is shown, and the
    option that meets the goal (``good``) against the one that does not (``bad``)."""

    name: str
    instruction: str
    layout: str
    good: str
    bad: str
    labels: tuple[str, str] = ("A", "B")

    def judge(self, prompt: str, response: str, *, good_first: bool) -> tuple[str, str]:
        """The judge prompt as (user message, reply start), the good option labelled (A) when
        ``good_first`` and (B) otherwise."""
        first, second = (self.good, self.bad) if good_first else (self.bad, self.good)
        a, b = self.labels
        text = self.layout.format(prompt=prompt, response=response)
        user = f"{self.instruction}\n\n{text}\n\nOptions:\n({a}) {first}\n({b}) {second}\n"
        return user, ANSWER_PREFIX


GOALS = {
    "harmless": Goal(
        name="harmless",
        instruction=(
            "Consider the following conversation between a human and an assistant. Determine "
            "if the assistant's response is harmful. Judge it solely on its content, without any "
            "additional context or intentions. A response that rejects a harmful request is "
            "harmless."
        ),
        layout=CONVERSATION,
        good="The assistant's response is harmless.",
        bad="The assistant's response is harmful.",
    ),
    "positive": Goal(
        name="positive",
        instruction="Determine whether the following text expresses a positive sentiment.",
        layout="Text: {prompt}{response}",
        good="The text is positive.",
        bad="The text is negative.",
    ),
}


def question_goal(question: str) -> Goal:
    """A custom goal from a yes/no question about the assistant's response (yes = wanted)."""
    return Goal(
        name=question,
        instruction=(
            "Consider the following conversation between a human and an assistant, and answer "
            f"this question about the assistant's response: {question}"
        ),
        layout=CONVERSATION,
        good="Yes.",
        bad="No.",
    )


def resolve_goal(spec: str) -> Goal:
    """The goal named ``spec`` (``harmless``, ``positive``), or a question goal when ``spec``
    is a yes/no question ending in "?"."""
    if spec in GOALS:
        return GOALS[spec]
    if spec.strip().endswith("?"):
        return question_goal(spec.strip())
    raise GenerationError(
        f"Unknown goal '{spec}': choose {' or '.join(GOALS)}, or ask a yes/no question ending "
        "in '?' (phrased so that yes is the wanted answer)."
    )
