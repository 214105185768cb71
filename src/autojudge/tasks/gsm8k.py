"""GSM8K: grade-school math word problems with a single numeric answer.

Answers are compared as exact rational numbers. Canonical form, as returned by
`extract_answer`: an integer prints as an integer ("42", "-5"); any other value with
a finite decimal expansion prints as that decimal, shortest form ("0.5", "1234.5");
anything else as a reduced fraction ("1/3", "-2/3"). Every value has exactly one
canonical form, so "1/2", "0.50" and "\\frac{2}{4}" all become "0.5".
"""

from __future__ import annotations

import re
from fractions import Fraction

from autojudge.tasks.base import Problem, TaskBase
from autojudge.tasks.datasets import load_gsm8k

SYSTEM_PROMPT = "You are a careful math tutor."
ANSWER_INSTRUCTION = (
    "Reason step by step in a few short lines, without code. "
    'Finish with a last line that reads exactly "The answer is N." where N is a plain number.'
)

# A plain number: thousands groups only with exactly three digits, so "3,4,5" stays
# a list of three numbers rather than becoming 345.
_PLAIN = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?<!\d)\.\d+"
_NUMBER = re.compile(
    rf"""
    (?P<minus>(?<![\w)\]}}])-(?:\\?\$)?)?   # a minus glued to its number; "10-20" is a range
    (?:
        \\[dt]?frac\{{(?P<top>{_PLAIN})\}}\{{(?P<bottom>{_PLAIN})\}}
      | (?P<numerator>{_PLAIN})(?:/(?P<denominator>{_PLAIN}))?
    )
    """,
    re.VERBOSE,
)
_ANSWER_PHRASE = re.compile(r"\banswer\b[\s*_]*(?:is\b|:|=)", re.IGNORECASE)
_HASHES = re.compile(r"####")
_BOXED = re.compile(r"\\boxed\s*\{")
# LaTeX thousands separators: "1{,}234" and "1\,234".
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3}(?!\d))")
# A line's answer ends at a full stop ("The answer is 42. That is ..."), not at a decimal point.
_SENTENCE_END = re.compile(r"\.(?:\s|$)")


def messages(problem: Problem) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{problem.prompt}\n\n{ANSWER_INSTRUCTION}"},
    ]


def extract_answer(text: str) -> str | None:
    """The number `text` commits to, canonical; None when it holds no number.

    Looks, in order, for the last "answer is N" (also "Answer: N", "final answer is
    $N$"), the last "#### N", the last \\boxed{N}, and finally the last number anywhere.
    Currency signs, units and percent signs are ignored: "50%" is 50, as in GSM8K.
    """
    text = _normalise(text)
    markers = ((_ANSWER_PHRASE, _sentence), (_HASHES, _sentence), (_BOXED, _braced))
    for marker, span_after in markers:
        for match in reversed(list(marker.finditer(text))):
            value = _first_number(_after_last_equals(span_after(text, match.end())))
            if value is not None:
                return canonical(value)
    numbers = [value for match in _NUMBER.finditer(text) if (value := _value(match)) is not None]
    return canonical(numbers[-1]) if numbers else None


def equivalent(a: str | None, b: str | None) -> bool:
    """Same number; a decimal rounded to 2+ places also matches a fraction it rounds.

    "0.33" and "0.333333" both match "1/3", because 1/3 has no exact decimal form and
    a model must round it somewhere; "0.3" is too coarse to count. Two values that
    both have exact decimal forms must be exactly equal ("4.5" never matches "4.52").
    """
    x, y = _parse(a), _parse(b)
    if x is None or y is None:
        return False
    return x == y or _rounds_to(x, y) or _rounds_to(y, x)


def is_correct(text: str, problem: Problem) -> bool:
    return equivalent(extract_answer(text), problem.reference)


# What a stretch of a solution computes: its numbers and operators, in order.
_MATH = re.compile(r"\d+(?:\.\d+)?|[-+*/×÷=<>%^]")


def interchangeable(old: str, new: str) -> bool:
    """Whether one stretch of a solution can stand for the other without changing the
    math: the same numbers and operators in the same order, whatever the wording
    ("equals" for "is", "Let's" for "We")."""
    return _MATH.findall(old.replace(",", "")) == _MATH.findall(new.replace(",", ""))


def follows_format(text: str) -> bool:
    """Whether the last line is the requested "The answer is N." (a marker with a number)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return False
    last = _normalise(lines[-1])
    return any(_first_number(_sentence(last, m.end())) is not None for m in _ANSWER_PHRASE.finditer(last))


class GSM8K(TaskBase):
    name = "gsm8k"
    # 256 cut 29% of the target's answers; cut ones that were let go on all ended by 362.
    max_new_tokens = 1024

    def load(self, split: str) -> list[Problem]:
        return load_gsm8k(split)

    messages = staticmethod(messages)

    @staticmethod
    def extract_answer(text: str, problem: Problem | None = None) -> str | None:
        return extract_answer(text)

    equivalent = staticmethod(equivalent)
    # is_correct: TaskBase's, the extracted answer equivalent to the reference.
    follows_format = staticmethod(follows_format)
    interchangeable = staticmethod(interchangeable)


def canonical(value: Fraction) -> str:
    """The one string for `value`: "42", else an exact decimal "0.25", else "1/3"."""
    if value.denominator == 1:
        return str(value.numerator)
    places = _decimal_places(value.denominator)
    if places is None:
        return f"{value.numerator}/{value.denominator}"
    whole, fraction = divmod(abs(value.numerator) * 10**places // value.denominator, 10**places)
    return f"{'-' if value < 0 else ''}{whole}.{fraction:0{places}d}"


def _decimal_places(denominator: int) -> int | None:
    """Digits after the point in the exact decimal of 1/denominator; None if it never ends."""
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    return max(twos, fives) if denominator == 1 else None


def _rounds_to(exact: Fraction, rounded: Fraction) -> bool:
    places = _decimal_places(rounded.denominator)
    if _decimal_places(exact.denominator) is not None or places is None or places < 2:
        return False
    return round(exact, places) == rounded


def _parse(answer: str | None) -> Fraction | None:
    return None if answer is None else _first_number(_normalise(answer))


def _normalise(text: str) -> str:
    return _LATEX_THOUSANDS.sub(",", text.replace("\u2212", "-"))  # U+2212 is a minus sign


def _sentence(text: str, start: int) -> str:
    """The text from `start` to the end of its sentence or line."""
    line = text[start:].split("\n", 1)[0]
    return _SENTENCE_END.split(line, 1)[0]


def _braced(text: str, start: int) -> str:
    """The text from `start` up to the brace that closes the one just before it."""
    depth = 1
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start:index]
    return ""  # unbalanced: the output was cut off inside the box


def _after_last_equals(span: str) -> str:
    # "The answer is 16 - 3 - 4 = 9": the result is what follows the last "=".
    return span.rsplit("=", 1)[-1]


def _first_number(span: str) -> Fraction | None:
    for match in _NUMBER.finditer(span):
        if (value := _value(match)) is not None:
            return value
    return None


def _value(match: re.Match[str]) -> Fraction | None:
    numerator = Fraction((match["top"] or match["numerator"]).replace(",", ""))
    denominator = Fraction((match["bottom"] or match["denominator"] or "1").replace(",", ""))
    if denominator == 0:
        return None
    value = numerator / denominator
    return -value if match["minus"] else value
