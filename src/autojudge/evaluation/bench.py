"""`autojudge bench`: methods on several runtimes and windows, side by side, on any task.

A benchmark is an evaluation whose methods name their runtime and window
(autojudge.evaluation.methods): it runs through the same harness as `autojudge eval`
(interleaved, resumable, every method cold on every problem, speed ratios only within a
run) and writes the same report, each method set against the target alone and exact
decoding of its own runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from autojudge.evaluation.methods import parse_methods
from autojudge.evaluation.rows import ModeSummary
from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from autojudge.models.runtime import RuntimeOptions
from autojudge.tasks.base import Task


@dataclass(frozen=True)
class BenchSettings:
    """What `autojudge bench` runs: the pair, the methods, the problems, where results go."""
    methods: str  # comma-separated runtime/mode[/wW] (evaluation.methods); each names its runtime
    n: int  # the first n problems of the split
    out: str  # run directory: records.jsonl (resumed when it exists) and the report
    task: str = "gsm8k"
    split: str = "eval"
    max_new_tokens: int | None = None  # None: the task's budget
    draft: str = DEFAULT_DRAFT
    target: str = DEFAULT_TARGET
    judge: str | None = None  # the judge of judge methods; None: the one shipped for the task
    runtime_options: RuntimeOptions = field(default_factory=RuntimeOptions)  # backends: the methods' runtimes


def run_bench(settings: BenchSettings, task: Task) -> list[ModeSummary]:
    from autojudge.evaluation.run import run_eval
    from autojudge.models.loading import load_pairs

    methods = parse_methods(settings.methods)
    unnamed = [m.name for m in methods if m.runtime is None]
    if unnamed:
        raise ValueError(f"a benchmark method names its runtime: write llamacpp/{unnamed[0]} or "
                         f"torch/{unnamed[0]}")
    backends = {m.runtime: m.backends for m in methods}
    pairs = load_pairs(settings.draft, settings.target, backends, settings.runtime_options)
    judge = None
    judged = [m for m in methods if m.mode is not None and m.mode.needs_judge]
    if judged:
        from autojudge.judge.shipped import load_judge
        judge = load_judge(pairs[judged[0].runtime], settings.judge, task=task.name)
    options = None
    if settings.max_new_tokens is not None:
        from autojudge.evaluation.run import EVAL_OPTIONS
        options = replace(EVAL_OPTIONS, max_new_tokens=settings.max_new_tokens)
    return run_eval(None, task, settings.split, methods, settings.out, options, limit=settings.n, judge=judge,
                    runtimes=pairs)
