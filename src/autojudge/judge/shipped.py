"""Judges shipped with the package for the default pair, one per task.

Trained by the commands in docs/reproduce.md on the mining runs under data/mined/.
A judge fits only the pair and runtimes it was trained on; `load_judge` checks that, so
the default judge is never applied to another pair. Each task has two: one for the draft
model, which reads its logits too (`<task>-llamacpp`), and one of the target's numbers
alone for a lookup drafter, which has none (`<task>-llamacpp-target`).
"""

from __future__ import annotations

from pathlib import Path

from autojudge.judge.model import Judge, JudgeError
from autojudge.models.backend import ModelPair

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "judges"
# HumanEval has no mining split: the judge mined on MBPP serves it, as in the paper.
JUDGE_FOR_TASK = {"gsm8k": "gsm8k", "mbpp": "mbpp", "humaneval": "mbpp", "squad": "squad"}


def shipped_judge_path(task: str, drafter: str = "model") -> Path:
    """The file of the judge shipped for `task` and `drafter`: "lookup" gets the
    target-only judge; any other drafter setting ("model", or "auto", which is the model
    for every judge mode: defaults.resolve) the draft model's."""
    kind = "-target" if drafter == "lookup" else ""
    return SHIPPED_DIR / f"{JUDGE_FOR_TASK.get(task, task)}-llamacpp{kind}.safetensors"


def shipped_judge_for(task: str | None, drafter: str = "model") -> Path:
    """The shipped judge's file for `task` and `drafter`, or one line saying that none is
    (checked before a model loads)."""
    if task is None or task not in JUDGE_FOR_TASK or not shipped_judge_path(task, drafter).exists():
        raise JudgeError(f"no judge is shipped for {'this prompt' if task is None else f'task {task!r}'}; "
                         "pass --judge with one you trained (autojudge mine, then autojudge train)")
    return shipped_judge_path(task, drafter)


def load_judge(pair: ModelPair, path: str | Path | None = None, task: str | None = "gsm8k",
               drafter: str = "model") -> Judge:
    """The judge at `path`, or the shipped one for `task` and `drafter` (a lookup's reads
    the target's numbers alone); refused unless it fits `pair`.

    A shipped judge serves only the task and the pair it was trained on: on another
    task's mismatches or another pair's features its scores mean nothing."""
    shipped = path is None
    if shipped:
        path = shipped_judge_for(task, drafter)
    judge = Judge.load(path)
    try:
        judge.check_compatible(_described_reading(pair, judge.feature_layer), pair.draft.hidden_size,
                               pair.target.hidden_size)
    except JudgeError as exc:
        if not shipped:
            raise
        raise JudgeError(f"the judge shipped for {task} was trained on another pair ({exc}); pass --judge with one "
                         "trained on this pair (autojudge mine, then autojudge train)") from None
    # The target reads the judge's layer from now on (a pair serves the judge loaded last;
    # decoding with an earlier one is refused: Judge.check_reads).
    pair.target.read_features_from(judge.feature_layer)
    return judge


def _described_reading(pair: ModelPair, layer: int | None) -> dict:
    """The pair's description as it will be once its target reads `layer`."""
    described = pair.describe()
    backend = {k: v for k, v in described["target_backend"].items() if k != "feature_layer"}
    return {**described, "target_backend": {**backend, **({"feature_layer": layer} if layer is not None else {})}}
