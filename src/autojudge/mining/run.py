"""Mine a task split into a store, problem by problem (several side by side), with a progress bar."""

from __future__ import annotations

import sys
import threading
import time

from tqdm.auto import tqdm

from autojudge.decoding.features import LOGIT_FEATURES
from autojudge.errors import AutojudgeError, PromptError
from autojudge.mining.algorithm import MinedProblem, mine_problem
from autojudge.mining.budget import budget_warnings
from autojudge.mining.options import MiningOptions
from autojudge.mining.store import FEATURE_DTYPE, MiningStore
from autojudge.models.backend import ModelPair, feature_layer_name
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import run_lock
from autojudge.tasks.base import Task, can_rejoin, settled_check
from autojudge.tasks.contract import task_fingerprint
from autojudge.workers import run_side_by_side


def feature_position(model) -> str:
    """Where the target's features come from, in the meta's wording (resumed runs and
    committed ones compare it, so it stays as it is)."""
    layer = getattr(model, "feature_layer", None)
    return feature_layer_name(layer) if layer is None else f"output of {feature_layer_name(layer)}"


def mining_meta(pair: ModelPair, task: Task, split: str, options: MiningOptions) -> dict:
    """Everything that changes the labels or the features; a resumed run must match it.
    The budget is written out (the task's when `options` give none).

    The split too: resumed on another one, a run would mix evaluation problems into
    the judge's training data.

    The first answer's window and the regeneration method give the same labels in exact
    arithmetic, but not on llama.cpp, whose results depend on a pass's shape: a run
    keeps them, so that its records all come from one method.
    """
    meta = {"task": task.name, "split": split, **pair.describe(machine=False),
            "max_new_tokens": options.budget(task), "first_answer_window": options.window,
            "regeneration": options.regeneration,
            "features": {"draft": pair.draft.hidden_size, "target": pair.target.hidden_size,
                         "dtype": str(FEATURE_DTYPE).removeprefix("torch."),
                         "position": "after reading the draft token, " + feature_position(pair.target),
                         "logits": list(LOGIT_FEATURES)}}
    # What the task makes of the split's problems (prompts, problem set, extracted
    # answers): an edited task keeps its name, and its labels would mix in unnoticed.
    meta["task_fingerprint"] = task_fingerprint(task, task.load(split))
    if getattr(task, "checker", None) is not None:  # a model compares the answers: which, how
        meta["checker"] = task.checker.describe()
    if settled_check(task):  # labels after the settle point keep the response
        meta["settled_answers"] = "labelled without regeneration"
    return meta


def problems_to_mine(task: Task, split: str, limit: int | None = None, shard: tuple[int, int] = (1, 1),
                     skip: set[int] = frozenset()) -> list:
    """The first `limit` problems of `split`, shard i of n of them (every n-th from the
    i-th), less the problem ids in `skip`."""
    index, count = shard
    return [p for p in task.load(split)[:limit][index - 1::count] if p.id not in skip]


def mine(pair: ModelPair, task: Task, split: str, out: str, options: MiningOptions = MiningOptions(), *,
         limit: int | None = None, shard: tuple[int, int] = (1, 1), skip: set[int] = frozenset(),
         parallel: int = 1) -> MiningStore:
    """Mine the first `limit` problems of `split`, or shard i of n of them (every n-th
    from the i-th), so that n processes, each with its own `out`, share the work;
    `autojudge train` reads several run directories at once. Problems in `skip` are left
    out (`store.labelled_problems` of other runs). Each problem is mined as `options`
    say (Algorithm 1's budget, first-answer window and regeneration method).

    `parallel` > 1 mines that many problems side by side in threads whose passes are
    merged (llama.cpp; see autojudge.models.batching): more labels per hour, the
    same labels up to llama.cpp's near-ties (its kernels depend on the pass's shape).
    Problems then finish out of order; the store resumes by problem id, so that is fine.
    """
    options = options.resolved(task)
    with run_lock(out, "mining run"):
        if options.rejoin and not can_rejoin(task):
            raise AutojudgeError(f"--rejoin needs a task that says which edits are interchangeable; "
                                 f"{task.name} does not")
        store = MiningStore(out, mining_meta(pair, task, split, options))
        problems = problems_to_mine(task, split, limit, shard, skip)
        done = store.done()
        todo = iter([p for p in problems if p.id not in done])
        labels = sum(len(r["mismatches"]) for r in store.records)
        important = sum(m["important"] for r in store.records for m in r["mismatches"])
        bar = tqdm(desc=f"mine {task.name}/{split}", unit="problem", initial=len(done & {p.id for p in problems}),
                   total=len(problems))
        lock = threading.Lock()  # guards todo, the store and the counters
        clock = _SharedClock()
        failed = threading.Event()
        warned: set[str] = set()  # kinds of answers the budget was found to cut, warned about once

        def work(worker_pair: ModelPair) -> None:
            nonlocal labels, important
            while not failed.is_set():
                with lock:
                    problem = next(todo, None)
                if problem is None:
                    return
                clock.enter()
                skipped = None
                try:
                    mined = mine_problem(worker_pair, task, problem,
                                         chat_prompt_ids(worker_pair.tokenizer, task.messages(problem)), options)
                except PromptError as exc:  # recorded, so that a resumed run does not stop on it again
                    mined, skipped = MinedProblem(problem.id, None, ""), str(exc)
                with lock:
                    store.add(mined, clock.leave(), skipped=skipped)
                    if skipped:
                        bar.write(f"problem {problem.id} skipped: {skipped}")
                    labels += len(mined.mismatches)
                    important += sum(m.important for m in mined.mismatches)
                    bar.update()
                    bar.set_postfix(mismatches=labels, important=f"{important / max(labels, 1):.1%}")
                    for warning in budget_warnings(store.records, options.max_new_tokens, warned):
                        bar.write(f"autojudge: warning: {warning}", file=sys.stderr)

        gate = run_side_by_side(pair, parallel, work, failed)
        if gate is not None and gate.passes:
                bar.write(f"{gate.requests} passes of {parallel} problems merged into {gate.passes} "
                          f"({gate.requests / gate.passes:.2f} per pass)")
        bar.close()
        return store


class _SharedClock:
    """Each problem's share of the wall time: while k problems are mined side by side,
    each is charged 1/k of every second, so the shares add up to the wall time."""

    def __init__(self):
        self._lock = threading.Lock()
        self._charged: dict[int, float] = {}  # thread id -> seconds charged so far
        self._since = time.perf_counter()

    def _settle(self) -> None:
        now = time.perf_counter()
        for key in self._charged:
            self._charged[key] += (now - self._since) / len(self._charged)
        self._since = now

    def enter(self) -> None:
        with self._lock:
            self._settle()
            self._charged[threading.get_ident()] = 0.0

    def leave(self) -> float:
        with self._lock:
            self._settle()
            return self._charged.pop(threading.get_ident())
