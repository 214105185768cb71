"""A task of one's own, small enough to read at once: twelve sums and products.

The tutorial (docs/own-task.md) walks through it: copy this file next to you, then
`autojudge task check arith:Arithmetic`, mine, train, decode and evaluate. It inherits
TaskBase, so it writes only `name`, `load`, `messages` and `extract_answer`, and
`equivalent`, since "42.0" and "42" are the same number.
"""

from __future__ import annotations

import re

from autojudge.tasks.base import Problem, TaskBase

# (question, answer). Ids are the positions: 0-7 are mined, 8-11 held out for evaluation.
QUESTIONS = [
    ("17 + 25", "42"), ("9 * 8", "72"), ("120 - 47", "73"), ("6 * 7 + 5", "47"),
    ("81 / 9", "9"), ("15 * 4 - 12", "48"), ("250 + 375", "625"), ("7 * 7 * 2", "98"),
    ("64 / 8 + 3", "11"), ("33 + 44 + 55", "132"), ("1000 - 1", "999"), ("12 * 12", "144"),
]
SPLITS = {"mine": range(0, 8), "eval": range(8, 12), "all": range(0, 12)}

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ANSWER_IS = re.compile(r"answer is\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


class Arithmetic(TaskBase):
    name = "arith"
    # Answers are a line or two; the budget must still leave them room to end by themselves.
    max_new_tokens = 256

    def load(self, split: str) -> list[Problem]:
        if split not in SPLITS:
            raise ValueError(f"unknown arith split {split!r}; choose one of: {', '.join(SPLITS)}")
        return [Problem(i, QUESTIONS[i][0], QUESTIONS[i][1]) for i in SPLITS[split]]

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"Compute {problem.prompt}. End with: The answer is N."}]

    def extract_answer(self, text: str, problem: Problem) -> str | None:
        """The number after the last "answer is", else the last number in the text."""
        marked = _ANSWER_IS.findall(text)
        numbers = marked or _NUMBER.findall(text)
        return _canonical(numbers[-1]) if numbers else None

    def equivalent(self, a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and _canonical(a) == _canonical(b)


def _canonical(number: str) -> str:
    """"42.0" -> "42", "-3.50" -> "-3.5": one spelling per number."""
    return number.rstrip("0").rstrip(".") if "." in number else number
