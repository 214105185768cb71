from fractions import Fraction

import pytest

from autojudge.tasks import get_task
from autojudge.tasks.base import Problem
from autojudge.tasks.gsm8k import (
    ANSWER_INSTRUCTION,
    canonical,
    equivalent,
    extract_answer,
    interchangeable,
    is_correct,
    messages,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        # The requested format and its common variants.
        ("Step 1...\nThe answer is 42.", "42"),
        ("So the final answer is: $42$", "42"),
        ("Final Answer: 17", "17"),
        ("**Answer:** 17 apples", "17"),
        ("**Final Answer**: 8", "8"),
        ("The answer is therefore 9 dollars.", "9"),
        # The last "answer is" wins, and beats any later number.
        ("The answer is 18.\nWait, recount.\nThe answer is 20.", "20"),
        ("The answer is 42.\nNote that 7 cats were left.", "42"),
        ("The answer is 12 hours. She worked 3 days.", "12"),
        ("The answer is 18. Each egg is x = 2 dollars.", "18"),  # a later sentence's "="
        # The result of an equation written after "answer is".
        ("The answer is 5 * 12 = 60.", "60"),
        ("The answer is 16 - 3 - 4 = 9.", "9"),
        # Number formats.
        ("The answer is $1,234.50.", "1234.5"),
        ("The answer is \\$1,234.", "1234"),
        ("The answer is -5.", "-5"),
        ("The answer is \u22125.", "-5"),
        ("The answer is -$5.", "-5"),
        ("The answer is 3/4.", "0.75"),
        ("The answer is \\frac{3}{4}.", "0.75"),
        ("The answer is \\dfrac{6}{8}.", "0.75"),
        ("The answer is 1/3.", "1/3"),
        ("The answer is 42.0", "42"),
        ("The answer is 42.00.", "42"),
        ("The answer is .5", "0.5"),
        ("The answer is 50%.", "50"),
        ("The answer is 50\\%.", "50"),
        ("The answer is \\text{42 dollars}.", "42"),
        ("The answer is 1{,}000.", "1000"),
        ("The answer is 1\\,000,000.", "1000000"),
        # "answer is" without a number falls through to the next marker.
        ("The answer is below.\n#### 72", "72"),
        ("The answer is:\n\n**42**", "42"),
        # GSM8K's own "#### N" lines, calculator annotations and all.
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
        ("#### 1,600", "1600"),
        ("#### -10", "-10"),
        # \boxed{...}, with nested braces; the last box wins.
        ("\\boxed{42}", "42"),
        ("Thus $\\boxed{\\$1,234}$ in total, not 5.", "1234"),
        ("\\[\\boxed{\\frac{3}{4}}\\]", "0.75"),
        ("\\boxed{-\\frac{3}{4}}", "-0.75"),
        ("\\boxed{12 \\text{ apples}} after 3 days", "12"),
        ("First \\boxed{3}, corrected: \\boxed{4}.", "4"),
        ("\\boxed{1{,}000}", "1000"),
        # Otherwise the last number anywhere.
        ("She has 5 apples and buys 7 more, so 12 in total.", "12"),
        ("It costs $0.50 each, so she pays $2.5", "2.5"),
        ("He earns 1,234,567 dollars", "1234567"),
        ("The temperature fell to -3 degrees", "-3"),
        ("Read pages 10-20", "20"),  # a range, not minus twenty
        ("Values 3,4,5", "5"),  # a list, not 345
        ("x = 1/2", "0.5"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "I don't know.", "The answer is unclear.", "\\boxed{}", "#### ", "Divide by 7/0"],
)
def test_extract_answer_without_a_number_is_none(text):
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    "value, expected",
    [
        (Fraction(42), "42"),
        (Fraction(-5), "-5"),
        (Fraction(0), "0"),
        (Fraction(1, 2), "0.5"),
        (Fraction(-1, 4), "-0.25"),
        (Fraction(1, 20), "0.05"),
        (Fraction(2469, 2), "1234.5"),
        (Fraction(1, 3), "1/3"),
        (Fraction(-4, 6), "-2/3"),
    ],
)
def test_canonical_form_is_unique_and_reads_back(value, expected):
    assert canonical(value) == expected
    assert extract_answer(expected) == expected


@pytest.mark.parametrize(
    "a, b",
    [
        ("42", "42"),
        ("42", "42.0"),
        ("0.5", "1/2"),
        ("3/4", "\\frac{3}{4}"),
        ("1,600", "1600"),
        ("-5", "-5"),
        ("0.333333", "1/3"),  # 1/3 rounded to six places
        ("1/3", "0.33"),
        ("0.67", "2/3"),
    ],
)
def test_equivalent(a, b):
    assert equivalent(a, b)
    assert equivalent(b, a)


@pytest.mark.parametrize(
    "a, b",
    [
        ("42", "24"),
        ("-5", "5"),
        ("0.3", "1/3"),  # one decimal place is too coarse to stand for 1/3
        ("0.66", "2/3"),  # truncated, not rounded
        ("4.5", "4.52"),  # both exact decimals: no tolerance
        ("0.33", "0.333"),
        ("42", None),
        (None, "42"),
        (None, None),
        ("no number", "no number"),
        ("", "0"),
    ],
)
def test_not_equivalent(a, b):
    assert not equivalent(a, b)


PROBLEM = Problem(id=0, prompt="Janet has 16 eggs and eats 3...", reference="18")


@pytest.mark.parametrize(
    "text, correct",
    [
        ("16 - 3 = 13 ... The answer is 18.", True),
        ("She makes $18.00 every day.\nThe answer is $18.00.", True),
        ("The answer is 81.", False),
        ("The answer is -18.", False),
        ("I cannot solve this.", False),
    ],
)
def test_is_correct(text, correct):
    assert is_correct(text, PROBLEM) is correct


def test_messages_ask_the_question_zero_shot():
    chat = messages(PROBLEM)
    assert [m["role"] for m in chat] == ["system", "user"]
    assert PROBLEM.prompt in chat[-1]["content"]
    assert ANSWER_INSTRUCTION in chat[-1]["content"]
    assert "The answer is N." in ANSWER_INSTRUCTION


def test_get_task_returns_gsm8k():
    task = get_task("gsm8k")
    assert task.name == "gsm8k"
    assert task.is_correct("The answer is 18.", PROBLEM)
    assert task.messages(PROBLEM) == messages(PROBLEM)


def test_get_task_rejects_unknown_names():
    with pytest.raises(ValueError, match="gsm8k"):
        get_task("math500")


@pytest.mark.parametrize("text, expected", [
    ("Step 1: 2 + 2 = 4.\nThe answer is 4.", True),
    ("So, the answer is \\boxed{6250}.", True),
    ("The answer is 42.\nI hope this helps!", False),  # not the last line
    ("x = 5\n\\boxed{5}", False),  # a number, but not the requested line
    ("The answer is unclear.", False),
    ("", False),
])
def test_follows_format(text, expected):
    from autojudge.tasks.gsm8k import follows_format
    assert follows_format(text) is expected


@pytest.mark.parametrize("old, new, same", [
    ("which equals 12 apples", "which is 12 apples", True),  # wording only
    ("Let's add 3 + 4 = 7.", "We add 3 + 4 = 7.", True),
    ("1,200 dollars", "1200 dollars", True),  # notation
    ("he has 5 apples", "he has 6 apples", False),  # a number
    ("5 + 3 = 8", "5 * 3 = 15", False),  # an operator, and the result
    ("so 12 / 4 = 3", "so 12 = 4", False),
])
def test_interchangeable_stretches_state_the_same_math(old, new, same):
    assert interchangeable(old, new) is same
    assert get_task("gsm8k").interchangeable(old, new) is same
