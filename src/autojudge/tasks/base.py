"""What every task offers to the later stages: problems, prompts and answer checking."""

from __future__ import annotations

from abc import ABC, abstractmethod
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


# A model answer checker calls two responses the same when p(same) >= this (see
# autojudge.tasks.equivalence for where the value comes from).
CHECKER_THRESHOLD = 0.6

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


# The optional hooks, read through these so that a task without the attribute (one
# that does not inherit TaskBase) reads as one whose hook is None.

def settled_check(task):
    """The task's `settled(text, problem)`, or None when it never knows its answer is settled."""
    return getattr(task, "settled", None)


def can_rejoin(task) -> bool:
    """Whether the task says which stretches are `interchangeable` (mining's re-join shortcut needs it)."""
    return bool(getattr(task, "interchangeable", None))


def compares_with_a_model(task) -> bool:
    """Whether a model compares the task's answers: it has a checker, or compares whole responses."""
    return getattr(task, "checker", None) is not None or getattr(task, "compare_responses", None) is not None


class Task(Protocol):
    """What the pipeline needs of a task. A class may have these without inheriting
    anything; `TaskBase` gives the optional parts and the usual definitions by default."""
    name: str
    # Optional: `max_new_tokens`, the task's budget (see task_budget), and the hooks
    # `settled`, `interchangeable` and `compare_responses` (see TaskBase).

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


class TaskBase(ABC):
    """A task's defaults: a subclass names itself and writes `load`, `messages` and
    `extract_answer`; it overrides the rest where its answers need more."""

    name: str
    max_new_tokens = DEFAULT_BUDGET
    # `settled(text, problem) -> bool`: true when no continuation of `text` can change
    # its answer. Mining then stops regenerations there and labels later mismatches
    # without regenerating (see autojudge.mining.algorithm). None: never known.
    settled = None
    # `interchangeable(old, new) -> bool`: true when one stretch of a response can stand
    # for the other without changing what it computes (GSM8K: the same numbers and
    # operators); it enables mining's opt-in re-join shortcut. None: no stretch can.
    interchangeable = None
    # `compare_responses(problem, text_a, text_b) -> Verdict`, for tasks whose answers
    # only a model can compare (see autojudge.tasks.equivalence); such a task also has
    # a `checker` attribute, which `attach_checker` sets. None: `equivalent` decides.
    compare_responses = None

    @abstractmethod
    def load(self, split: str) -> list[Problem]: ...

    @abstractmethod
    def messages(self, problem: Problem) -> list[dict[str, str]]: ...

    @abstractmethod
    def extract_answer(self, text: str, problem: Problem) -> str | None: ...

    def equivalent(self, a: str | None, b: str | None) -> bool:
        """The same canonical answer string; None (no answer) agrees with nothing."""
        return a is not None and a == b

    def is_correct(self, text: str, problem: Problem) -> bool:
        """The answer agrees with the problem's reference (its gold answer, canonical)."""
        return self.equivalent(self.extract_answer(text, problem), problem.reference)
