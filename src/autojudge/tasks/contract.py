"""The task contract, checked before any model loads, and a task's fingerprint.

A task is any object with the methods of `autojudge.tasks.base.Task`, whether it
inherits `TaskBase` or nothing. `check_contract` finds a missing method, one that
cannot take the pipeline's arguments, or a misspelt optional hook, and says so in one
line, so that a mistake costs seconds instead of a model load and a traceback halfway
through the first problem. `check_split` checks what `load(split)` returns;
`dry_run` runs extraction and equivalence on the problems' own references (what
`autojudge task check` prints).

`task_fingerprint` names what a task makes of its problems (prompts, problem set,
extracted answers), so that a mining run can refuse to mix the data of an edited task
into what an earlier version mined under the same name.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field

from autojudge.errors import AutojudgeError
from autojudge.tasks.base import Problem

# The splits a task's `load(split)` is asked for. A task may leave one out (HumanEval
# has no "mine"): its `load` then raises ValueError naming the ones it has.
SPLITS = {
    "mine": "problems to mine labels on and train the judge with (autojudge mine, train)",
    "eval": "held-out problems to evaluate decoding on (autojudge eval); never mined",
    "all": "every problem of the task, mine and eval together (generate --problem looks ids up here)",
}

# Every method the pipeline calls, with the arguments it passes (by position).
REQUIRED_METHODS = {
    "load": ("split",),
    "messages": ("problem",),
    "extract_answer": ("text", "problem"),
    "equivalent": ("a", "b"),
    "is_correct": ("text", "problem"),
}

# Optional hooks: absent or None means "not offered" (see TaskBase).
OPTIONAL_HOOKS = {
    "settled": ("text", "problem"),
    "interchangeable": ("old", "new"),
    "compare_responses": ("problem", "text_a", "text_b"),
}

# Problems whose prompts and extracted answers enter the fingerprint: enough to see an
# edited template or extractor, few enough that a code task's tests stay quick.
FINGERPRINT_PROBLEMS = 5


class TaskContractError(AutojudgeError, ValueError):
    """A task does not offer what the pipeline calls. A ValueError too, as every other
    refusal of `get_task` is."""


def _signature_text(name: str, arguments: tuple[str, ...]) -> str:
    return f"{name}({', '.join(arguments)})"


def check_contract(task, label: str) -> None:
    """Refuse, in one line naming the piece, a task that lacks a required method or
    attribute, or whose method cannot be called with the pipeline's arguments."""
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise TaskContractError(f"task {label} has no name: give its class a `name = \"...\"` string "
                                "(runs, judges and reports are labelled with it)")
    for method, arguments in {**REQUIRED_METHODS, **OPTIONAL_HOOKS}.items():
        required = method in REQUIRED_METHODS
        value = getattr(task, method, None)
        wanted = _signature_text(method, arguments)
        if value is None:
            if required:
                raise TaskContractError(f"task {label} lacks {wanted}; see autojudge/tasks/base.py "
                                        "(or inherit TaskBase, which supplies equivalent and is_correct)")
            continue
        if not callable(value):
            raise TaskContractError(f"task {label}: {method} must be a method {wanted}, "
                                    f"not a {type(value).__name__}")
        if getattr(value, "__isabstractmethod__", False):
            raise TaskContractError(f"task {label} lacks {wanted}; TaskBase leaves it to the task")
        try:
            signature = inspect.signature(value)
        except (TypeError, ValueError):  # a builtin without a readable signature: trusted
            continue
        try:
            signature.bind(*arguments)
        except TypeError:
            raise TaskContractError(f"task {label}: {method}{signature} cannot be called as {wanted}") from None
    budget = getattr(task, "max_new_tokens", None)
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
        raise TaskContractError(f"task {label}: max_new_tokens must be a positive whole number, got {budget!r}")


def check_split(task, split: str, problems=None) -> list[Problem]:
    """`task.load(split)` (or `problems`, already loaded from it), checked: a non-empty
    list of Problems with distinct ids and text prompts and references. A split the
    task does not offer raises its own ValueError."""
    where = f"task {task.name}: load({split!r})"
    if problems is None:
        try:
            problems = task.load(split)
        except (ValueError, AutojudgeError):  # a split not offered; a dataset that cannot be fetched
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: any error is theirs to read
            raise TaskContractError(f"{where} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(problems, list):
        raise TaskContractError(f"{where} returned a {type(problems).__name__}, not a list of Problems")
    if not problems:
        raise TaskContractError(f"{where} returned no problems")
    ids = set()
    for index, problem in enumerate(problems):
        if not isinstance(problem, Problem):
            raise TaskContractError(f"{where}[{index}] is a {type(problem).__name__}, not an "
                                    "autojudge.tasks.base.Problem")
        if not isinstance(problem.id, int) or isinstance(problem.id, bool):
            raise TaskContractError(f"{where}[{index}] has id {problem.id!r}; ids are whole numbers")
        if problem.id in ids:
            raise TaskContractError(f"{where} repeats problem id {problem.id}; runs resume by id, so ids are distinct")
        if not isinstance(problem.prompt, str) or not isinstance(problem.reference, str):
            raise TaskContractError(f"{where}: problem {problem.id}'s prompt and reference must be strings")
        ids.add(problem.id)
    return problems


def offered_splits(task) -> dict[str, list[Problem]]:
    """{split: its problems} for each documented split the task offers."""
    offered = {}
    for split in SPLITS:
        try:
            offered[split] = check_split(task, split)
        except TaskContractError:
            raise
        except ValueError:  # not offered
            continue
    if not offered:
        raise TaskContractError(f"task {task.name}: load() offers none of the splits {', '.join(SPLITS)}")
    return offered


def find_problem(task, problem_id: int) -> Problem:
    """The task's problem with this id, from its "all" split, else its "eval" and "mine"."""
    problems: dict[int, Problem] = {}
    for split in ("all", "eval", "mine"):
        try:
            problems.update({p.id: p for p in check_split(task, split)})
        except TaskContractError:
            raise
        except ValueError:  # not offered
            continue
        if split == "all":  # every problem is in it
            break
    if not problems:
        raise TaskContractError(f"task {task.name}: load() offers none of the splits {', '.join(SPLITS)}")
    if problem_id not in problems:
        raise AutojudgeError(f"task {task.name} has no problem {problem_id}; its ids {_id_range(sorted(problems))}")
    return problems[problem_id]


def _id_range(ids: list[int]) -> str:
    if ids == list(range(ids[0], ids[-1] + 1)):
        return f"run from {ids[0]} to {ids[-1]}"
    return "are " + ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")


def _call(task, method: str, problem: Problem, *args):
    """task.method(*args), a raise turned into one line naming the method and problem."""
    try:
        return getattr(task, method)(*args)
    except Exception as exc:  # noqa: BLE001 - the user's code: any error is theirs to read
        raise TaskContractError(f"task {task.name}: {method} raised on problem {problem.id}: "
                                f"{type(exc).__name__}: {exc}") from None


def check_messages(task, problem: Problem) -> list[dict]:
    messages = _call(task, "messages", problem, problem)
    if (not isinstance(messages, list) or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                       for m in messages)):
        raise TaskContractError(f"task {task.name}: messages(problem {problem.id}) must return a list of "
                                "{\"role\": ..., \"content\": ...} dicts of strings")
    return messages


@dataclass
class DryRun:
    """What the task makes of its own references: a reference is `read` when the
    extractor finds an answer in it, `correct` when is_correct calls it right."""
    problems: int = 0
    read: int = 0
    correct: int = 0
    unread: list[int] = field(default_factory=list)  # problem ids
    wrong: list[int] = field(default_factory=list)
    examples: list[tuple[int, str, str | None]] = field(default_factory=list)  # (id, reference, answer)


def dry_run(task, problems: list[Problem]) -> DryRun:
    """Build each problem's messages, extract an answer from its reference, check that
    the answer is equivalent to itself and not to None, and that is_correct accepts the
    reference. A method that raises, or an equivalence that is not reflexive, is refused."""
    result = DryRun()
    for problem in problems:
        check_messages(task, problem)
        answer = _call(task, "extract_answer", problem, problem.reference, problem)
        if answer is not None:
            if _call(task, "equivalent", problem, answer, answer) is not True:
                raise TaskContractError(f"task {task.name}: equivalent(a, a) is not True for problem {problem.id}'s "
                                        f"answer {answer!r}; an answer must agree with itself")
            if _call(task, "equivalent", problem, answer, None):
                raise TaskContractError(f"task {task.name}: equivalent({answer!r}, None) is true; None (no answer) "
                                        "agrees with nothing")
        correct = _call(task, "is_correct", problem, problem.reference, problem)
        result.problems += 1
        result.read += answer is not None
        result.correct += bool(correct)
        if answer is None:
            result.unread.append(problem.id)
        if not correct:
            result.wrong.append(problem.id)
        if len(result.examples) < 3:
            result.examples.append((problem.id, problem.reference, answer))
    return result


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def _answer_or_error(task, problem: Problem) -> str | None:
    try:
        return task.extract_answer(problem.reference, problem)
    except Exception as exc:  # noqa: BLE001 - recorded as what the extractor does
        return f"raised {type(exc).__name__}"


def task_fingerprint(task, problems: list[Problem]) -> dict[str, str]:
    """Digests of what the task makes of `problems` (a whole split, before any --limit
    or --shard, so that the shards of one run agree): the messages of the first few
    problems, every problem's id, prompt and reference, and the answers the extractor
    reads from the first few references. The same task code on the same data gives
    the same digests; an edited template, problem set or extractor changes one."""
    first = problems[:FINGERPRINT_PROBLEMS]
    return {
        "prompts": _digest([task.messages(p) for p in first]),
        "problems": _digest([[p.id, p.prompt, p.reference] for p in problems]),
        "reference_answers": _digest([_answer_or_error(task, p) for p in first]),
    }
