"""Tasks: datasets, zero-shot prompts, answer extraction and equivalence per benchmark."""

from __future__ import annotations

import importlib
import os
import sys

from autojudge.tasks.base import Problem, Task
from autojudge.tasks.code import MBPP, HumanEval
from autojudge.tasks.contract import REQUIRED_METHODS, check_contract
from autojudge.tasks.gsm8k import GSM8K
from autojudge.tasks.open_qa import NaturalQuestions, Squad

TASKS = {"gsm8k": GSM8K, "mbpp": MBPP, "humaneval": HumanEval, "naturalqs": NaturalQuestions, "squad": Squad}

__all__ = ["Problem", "Task", "TASKS", "get_task"]


def get_task(name: str) -> Task:
    """A built-in task by name, or a user's task class as "package.module:ClassName",
    checked against the task contract (autojudge.tasks.contract) before it is returned."""
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        # As `python -m` does: a task module next to the user is found from the console script too.
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())
        try:
            task_class = getattr(importlib.import_module(module_name), class_name)
        except Exception as exc:  # noqa: BLE001 - the user's module: a syntax error, a raising import...
            detail = str(exc) if isinstance(exc, (ImportError, AttributeError)) else f"{type(exc).__name__}: {exc}"
            raise ValueError(f"cannot load task {name!r}: {detail}") from None
        # A TaskBase subclass missing a method cannot be made at all: name the method,
        # not Python's "Can't instantiate abstract class".
        if abstract := sorted(getattr(task_class, "__abstractmethods__", ())):
            arguments = ", ".join(REQUIRED_METHODS.get(abstract[0], ("...",)))
            raise ValueError(f"task {name} lacks {abstract[0]}({arguments}); TaskBase leaves it to the task")
        try:
            task = task_class()
        except Exception as exc:  # noqa: BLE001 - the user's constructor
            raise ValueError(f"cannot load task {name!r}: {type(exc).__name__}: {exc}") from None
        check_contract(task, name)
        return task
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}, "
                         "or module:Class") from None
