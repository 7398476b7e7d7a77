"""Answer extraction and self-consistency voting on awkward strings (no model needed)."""

from __future__ import annotations

import pytest

from lmboost.errors import LmboostError
from lmboost.reasoning import (
    extract_bbh,
    extract_choice,
    extract_number,
    is_decided,
    majority_vote,
    sample_until_decided,
)
from lmboost.reasoning.vote import first_decidable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", "42"),
        ("So she has 1,234 apples. The answer is 1,234.", "1234"),
        ("It costs $5 in total.", "5"),
        ("He pays $1,250.50 for the car.", "1250.5"),
        ("The answer is 3.50", "3.5"),
        ("The answer is 5.00 dollars.", "5"),
        ("She has 5 apples left.", "5"),
        ("The temperature drops to -7 degrees.", "-7"),
        ("The loss is -$12 this week.", "-12"),
        ("10 - 3 = 7 so the answer is 7", "7"),
        ("5-3=2", "2"),
        ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
        ("#### 1,200", "1200"),
        ("First 3 then 4, the answer is 12 apples, not 15.", "12"),
        ("The answer is: 18", "18"),
        ("Therefore, the answer (arabic numerals) is 18.", "18"),
        ("The final answer is $\\boxed{256}$.", "256"),
        ("Answer: 0.25", "0.25"),
        ("the answer is 007", "7"),
        ("1, 2, 3 and then 4", "4"),
        ("It is 50% of the total, the answer is 50%.", "50"),
        ("If the answer is 10 then 20 is wrong. So the answer is 12.", "12"),
        ("The answer is unclear but 9 is likely.", "9"),
        ("There are no numbers here.", None),
        ("", None),
        ("The answer is -0.", "0"),
        ("The answer is 2,50", "2"),
        ("The answer is 3 + 4 = 7.", "7"),
        ("The answer is 12 because 24 / 2 = 12 apples.", "12"),
        ("The answer is $18.00.", "18"),
        ("The answer is 18,000.", "18000"),
        ("The answer is 5. Then x = 3 for the next one.", "5"),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(B)", "B"),
        (" (C)\n\nQ: next", "C"),
        ("B) Paris", "B"),
        ("The answer is B.", "B"),
        ("So the answer is (D).", "D"),
        ("Answer: (C)", "C"),
        ("answer: A", "A"),
        ("The correct answer is option B because ...", "B"),
        ("The answer is **C**.", "C"),
        ("(A) is wrong because ..., so (B) is right", "B"),
        ("Option (A) looks right but the answer is (D).", "D"),
        ("Therefore, among A through D, the answer is (C).", "C"),
        ("It is a hard question.", None),
        ("The answer is a tricky one.", None),
        ("B", "B"),
        ("Reasoning first.\nC\n", "C"),
        ("The answer is (E).", None),  # E is not one of ABCD
    ],
)
def test_extract_choice(text, expected):
    assert extract_choice(text) == expected


def test_extract_choice_letters():
    assert extract_choice("So the answer is (K).", "ABCDEFGHIJK") == "K"
    assert extract_choice("(K)", "ABCD") is None


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        ("Let's see. So the answer is (B).", "(A)", "(B)"),
        (" (C)\n\nQ: ...", "(A)", "(C)"),
        ("Z = True and False = False. So the answer is False.", "True", "False"),
        (" true", "False", "True"),
        ("So the answer is No.", "Yes", "No"),
        ("So the answer is yes.", "no", "yes"),
        ("Yes, he is. So the answer is No.", "Yes", "No"),
        ("The argument is invalid. So the answer is invalid.", "valid", "invalid"),
        ("So the answer is valid.", "invalid", "valid"),
        ("(-1 + 2) = 1, so the answer is -219.", "24", "-219"),
        ("So the answer is 8.", "8", "8"),
        ("So we need \"}\", \"]\", \">\". So the answer is } ] >.", "] ]", "} ] >"),
        (" ] )", ")", "] )"),
        ("So the answer is arson aspect census.", "syndrome therefrom", "arson aspect census"),
        ("So the answer is Arson, aspect, census.", "a b", "arson aspect census"),
        ("So the answer is Monsters, Inc.", "Monsters, Inc", "Monsters, Inc"),
        ("nothing useful", "(A)", None),
        ("nothing useful", "Yes", None),
    ],
)
def test_extract_bbh(text, target, expected):
    assert extract_bbh(text, target) == expected


# --------------------------------------------------------------------------- voting


def test_majority_vote_ignores_none_and_breaks_ties_by_first_appearance():
    assert majority_vote(["3", None, "5", "5", "3"]) == ("3", 0.4)
    assert majority_vote(["5", "3", "3", "5"]) == ("5", 0.5)
    assert majority_vote([None, "7", None]) == ("7", pytest.approx(1 / 3))
    assert majority_vote([None, None]) == (None, 0.0)
    assert majority_vote([]) == (None, 0.0)


def test_is_decided():
    assert is_decided(["a", "a", "a"], 2)  # 3 > 0 + 2 and no new answer reaches 3
    assert not is_decided(["a", "a", "b"], 2)  # b could reach 3
    assert is_decided(["a", "a"], 2)  # a new or other answer can only tie, and a came first
    assert not is_decided(["b", "a", "a"], 1)  # b would tie a and b appeared first
    assert not is_decided([None, None], 1)
    assert is_decided([None, None], 0)
    assert not is_decided(["a"], 2)


def test_first_decidable():
    assert [first_decidable(n) for n in (1, 2, 3, 4, 5, 10)] == [1, 1, 2, 2, 3, 5]


def test_sample_until_decided_stops_early():
    stream = iter(["4", "4", "4", "9", "9"])
    calls = []

    def sample(k):
        calls.append(k)
        return [next(stream) for _ in range(k)]

    answers, vote = sample_until_decided(sample, 5)
    assert calls == [3]  # three agreeing answers out of five: decided at once
    assert answers == ["4", "4", "4"]
    assert (vote.answer, vote.share, vote.samples_used, vote.samples_saved) == ("4", 1.0, 3, 2)


def test_sample_until_decided_draws_one_at_a_time_until_decided():
    stream = iter(["4", "9", "4", "9", "4"])
    calls = []

    def sample(k):
        calls.append(k)
        return [next(stream) for _ in range(k)]

    answers, vote = sample_until_decided(sample, 5)
    assert calls == [3, 1, 1]
    assert vote.answer == "4" and vote.share == pytest.approx(0.6) and vote.samples_saved == 0


def test_sample_until_decided_without_early_stop_draws_all_at_once():
    calls = []

    def sample(k):
        calls.append(k)
        return ["1"] * k

    answers, vote = sample_until_decided(sample, 6, early_stop=False)
    assert calls == [6] and len(answers) == 6 and vote.samples_saved == 0


def test_sample_until_decided_errors():
    with pytest.raises(LmboostError, match="at least 1"):
        sample_until_decided(lambda k: ["1"] * k, 0)
    with pytest.raises(LmboostError, match="returned 1 answers"):
        sample_until_decided(lambda k: ["1"], 4)
