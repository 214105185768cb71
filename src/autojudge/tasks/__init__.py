"""Tasks: datasets, zero-shot prompts, answer extraction and equivalence per benchmark."""

from __future__ import annotations

from autojudge.tasks.base import Problem, Task
from autojudge.tasks.gsm8k import GSM8K

TASKS = {"gsm8k": GSM8K}

__all__ = ["Problem", "Task", "TASKS", "get_task"]


def get_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
