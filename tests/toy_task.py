"""A toy task for mining tests on tiny random models: the answer is a digit count.

Random models write random characters, so the "answer" (how many digits the text has,
modulo 3) changes with some swaps and not with others: both labels occur.
"""

from __future__ import annotations

from autojudge.tasks.base import Problem

PROMPTS = ["abc def", "Hello 12", "x y z w", "count 3 4", "qq rr ss", "Mm nn 0"]


class ToyTask:
    name = "toy"

    def load(self, split: str) -> list[Problem]:
        return [Problem(i, text, "0") for i, text in enumerate(PROMPTS)]

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        return [{"role": "user", "content": problem.prompt}]

    def extract_answer(self, text: str, problem: Problem | None = None) -> str | None:
        return str(sum(c.isdigit() for c in text) % 3)

    def equivalent(self, a: str | None, b: str | None) -> bool:
        return a is not None and a == b

    def is_correct(self, text: str, problem: Problem) -> bool:
        return self.equivalent(self.extract_answer(text, problem), problem.reference)


def tiny_pair(target_dir, draft_dir):
    from autojudge.models.loading import load_pair
    from autojudge.models.runtime import RuntimeOptions
    return load_pair(str(draft_dir), str(target_dir), RuntimeOptions(backend="torch", linear="default"))


class SettlingToyTask(ToyTask):
    """The toy answer counted over the first `chars` characters only: once the text is
    that long, no continuation changes it, which the task says through `settled`."""

    name = "toy-settling"

    def __init__(self, chars: int = 60):
        self.chars = chars

    def extract_answer(self, text: str, problem: Problem | None = None) -> str | None:
        return super().extract_answer(text[: self.chars], problem)

    def settled(self, text: str, problem: Problem) -> bool:
        return len(text) >= self.chars


class UnsettlingToyTask(SettlingToyTask):
    """The same answers, without saying when they are settled: plain Algorithm 1."""

    settled = None


class RejoiningToyTask(ToyTask):
    """The toy task, saying that any stretch of text can stand for any other (or, with
    `interchangeable=False`, none), for mining's re-join shortcut."""

    name = "toy-rejoining"

    def __init__(self, always: bool = True):
        self.always = always

    def interchangeable(self, old: str, new: str) -> bool:
        return self.always


class DyingToyTask(ToyTask):
    """The toy task, whose process dies (once: a marker file remembers) while it checks
    a generated answer to problem 1: a mining worker lost mid-problem (reading the
    reference, as the run's fingerprint does before any model runs, is safe)."""

    name = "toy-dying"

    def extract_answer(self, text: str, problem: Problem | None = None) -> str | None:
        import os
        from pathlib import Path
        marker = Path(os.environ["DYING_TASK_MARKER"])
        if problem is not None and problem.id == 1 and text != problem.reference and not marker.exists():
            marker.write_text("died once")
            os._exit(1)
        return super().extract_answer(text, problem)


class FlakyToyTask(ToyTask):
    """The toy task, whose answer check misreads one text: the first regeneration's (its
    second call), as a near-tie of the runtime would flip one regeneration's answer."""

    name = "toy-flaky"

    def __init__(self):
        self.calls = 0

    def extract_answer(self, text: str, problem: Problem | None = None) -> str | None:
        self.calls += 1
        return "misread" if self.calls == 2 else super().extract_answer(text, problem)
