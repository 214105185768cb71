"""Tasks: datasets, zero-shot prompts, answer extraction and equivalence per benchmark."""

from __future__ import annotations

import importlib
import os
import sys

from autojudge.tasks.base import Problem, Task
from autojudge.tasks.code import MBPP, HumanEval
from autojudge.tasks.gsm8k import GSM8K
from autojudge.tasks.open_qa import NaturalQuestions, Squad

TASKS = {"gsm8k": GSM8K, "mbpp": MBPP, "humaneval": HumanEval, "naturalqs": NaturalQuestions, "squad": Squad}

__all__ = ["Problem", "Task", "TASKS", "get_task"]


def get_task(name: str) -> Task:
    """A built-in task by name, or a user's task class as "package.module:ClassName"."""
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        # As `python -m` does: a task module next to the user is found from the console script too.
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())
        try:
            return getattr(importlib.import_module(module_name), class_name)()
        except Exception as exc:  # noqa: BLE001 - the user's module: a syntax error, a raising constructor...
            detail = str(exc) if isinstance(exc, (ImportError, AttributeError)) else f"{type(exc).__name__}: {exc}"
            raise ValueError(f"cannot load task {name!r}: {detail}") from None
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}, "
                         "or module:Class") from None
