"""`autojudge task check`: a task module tried in seconds, before any model is loaded."""

from __future__ import annotations

import sys

from autojudge.errors import AutojudgeError


def cmd_task(args) -> int:
    from autojudge.tasks import get_task
    from autojudge.tasks.base import task_budget
    from autojudge.tasks.contract import OPTIONAL_HOOKS, check_messages, dry_run, offered_splits

    name = args.task_option or args.task
    if not name:
        raise AutojudgeError("name the task: autojudge task check MODULE:Class (or a built-in name)")
    if args.task_option and args.task and args.task_option != args.task:
        raise AutojudgeError(f"two tasks named: {args.task} and --task {args.task_option}; give one")
    try:
        task = get_task(name)
        splits = offered_splits(task)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    print(f"task {task.name} ({name}): every required method is there and takes the pipeline's arguments")
    for split, problems in splits.items():
        ids = sorted(p.id for p in problems)
        print(f"  split {split}: {len(problems)} problems, ids {ids[0]} to {ids[-1]}")
    missing = sorted({"mine", "eval"} - set(splits))
    if missing:
        print(f"  no {' or '.join(missing)} split: "
              + ("mining and training need 'mine'" if "mine" in missing else "evaluation needs 'eval'"))
    hooks = [hook for hook in OPTIONAL_HOOKS if getattr(task, hook, None) is not None]
    print(f"  budget: {task_budget(task)} new tokens per answer; optional hooks: {', '.join(hooks) or 'none'}")

    # The problems of every split once each, in the order the task gives them.
    problems = list({p.id: p for split in splits.values() for p in split}.values())[: args.limit]
    first = problems[0]
    print(f"\nmessages of problem {first.id}:")
    for message in check_messages(task, first):
        print(f"  {message['role']}: {_shortened(message['content'])}")
    try:
        checked = dry_run(task, problems)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    print(f"\nreferences of {checked.problems} problems, read as if a model had written them:")
    for problem_id, reference, answer in checked.examples:
        print(f"  problem {problem_id}: reference {_shortened(reference, 60)!r} -> extract_answer {answer!r}")
    print(f"  extract_answer found an answer in {checked.read} of {checked.problems}; "
          f"is_correct accepts {checked.correct} of {checked.problems}")
    if checked.unread or checked.wrong:
        # A warning, not a failure: a code task's reference is a bare solution, not a
        # response in the form its extractor reads.
        print(f"autojudge: warning: {_some(checked.unread)} gave no answer and {_some(checked.wrong)} are not "
              "called correct; fine if references are not written as a response would be (a bare program), "
              "else the extractor misses answers and mined labels will be noise", file=sys.stderr)
    print("\ntask check passed: mine it with autojudge mine --task " + name)
    return 0


def _some(ids: list[int]) -> str:
    if not ids:
        return "no reference"
    return f"{len(ids)} reference{'s' * (len(ids) > 1)} (problem{'s' * (len(ids) > 1)} " \
           + ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "") + ")"


def _shortened(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
