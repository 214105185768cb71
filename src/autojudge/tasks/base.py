"""What every task offers to the later stages: problems, prompts and answer checking."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Problem:
    id: int
    prompt: str  # the question or task text, as the dataset writes it
    reference: str  # gold answer: GSM8K's canonical number, a code task's reference solution
    # Task-specific data (tests for code, the worked solution for GSM8K). Left out of
    # the hash because dicts are unhashable; equality still compares it.
    extra: dict = field(default_factory=dict, hash=False)


# New tokens per answer for a task that names no budget of its own.
DEFAULT_BUDGET = 512


def task_budget(task) -> int:
    """The task's `max_new_tokens`: what mining, evaluation and the demo generate at most.

    A budget must not cut answers: a cut "answer" is whatever stands last at the cut,
    and labels mined from it compare noise. Each built-in task's budget is chosen from
    the target's answer lengths on its mine split (README, "The offline defaults")."""
    return getattr(task, "max_new_tokens", DEFAULT_BUDGET)


@dataclass(frozen=True)
class Verdict:
    """Whether two responses give the same answer; `p_same`, a model's probability of
    it, when a model decided (see autojudge.tasks.equivalence)."""
    same: bool
    p_same: float | None = None


def compare(task, problem: Problem, text_a: str, answer_a: str | None, text_b: str, answer_b: str | None) -> Verdict:
    """Whether two responses to `problem` give the same answer: the task's own
    `compare_responses` when it has one (a model reading both responses), else its
    `equivalent` on the extracted answers."""
    by_responses = getattr(task, "compare_responses", None)
    if by_responses is not None:
        return by_responses(problem, text_a, text_b)
    return Verdict(task.equivalent(answer_a, answer_b))


class Task(Protocol):
    name: str
    # Optional: `max_new_tokens`, the task's budget (see task_budget).

    def load(self, split: str) -> list[Problem]: ...

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        """Zero-shot chat messages ({"role", "content"}) asking the model to solve `problem`."""
        ...

    def extract_answer(self, text: str, problem: Problem) -> str | None:
        """The answer a model's output to `problem` commits to, in the task's canonical
        form (a number for GSM8K, per-test pass/fail for code), or None without one."""
        ...

    def equivalent(self, a: str | None, b: str | None) -> bool:
        """Whether two extracted answers agree; None (no answer) agrees with nothing."""
        ...

    def is_correct(self, text: str, problem: Problem) -> bool:
        """Whether a model's output reaches the problem's gold answer."""
        ...

    # Optional: `settled(text, problem) -> bool`, true when no continuation of `text`
    # can change its answer. Mining then stops regenerations there and labels later
    # mismatches without regenerating (see autojudge.mining.algorithm).
    # Optional: `interchangeable(old, new) -> bool`, true when one stretch of a response
    # can stand for the other without changing what it computes (GSM8K: the same
    # numbers and operators); it enables mining's opt-in re-join shortcut.
    # Optional: `compare_responses(problem, text_a, text_b) -> Verdict`, for tasks whose
    # answers only a model can compare (see autojudge.tasks.equivalence); such a task
    # also has a `checker` attribute, which `attach_checker` sets.
