"""What makes a mined mismatch "important": the label definitions a judge can train on.

    answer-changed    Algorithm 1 as published: the target's answer after the swap is not
                      equivalent to its own answer. On a small target this also marks
                      harmless swaps after which the reasoning wanders elsewhere, mostly
                      on problems it gets wrong anyway.
    correctness-lost  the swap costs a right answer: the target's own answer passes the
                      task's checker against the gold answer (`is_correct`) and the
                      swapped response's does not. A swap on a problem the target gets
                      wrong can lose nothing, so it is never important.
    contrast          answer-changed, and the answer survives a sampled continuation from
                      the same place with the target's own token kept (`autojudge
                      contrast-labels`): where that nudge changes the answer too, the
                      position is chaotic and the change says nothing about the token.

Every definition is computed from what mining recorded (contrast from one extra
regeneration per important label), so a mined run serves all of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autojudge.errors import AutojudgeError
from autojudge.runfiles import CONTRAST_FILE, read_records

LABEL_DEFINITIONS = ("answer-changed", "correctness-lost", "contrast")


def mined_labels(run_dirs: list) -> list[tuple[dict, dict]]:
    """(problem record, mismatch) per label, in the order `load_mined` reads them."""
    return [(record, m) for run in run_dirs
            for record in read_records(Path(run) / "problems.jsonl", repair=False) for m in record["mismatches"]]


def define_labels(data, run_dirs: list, definition: str, task) -> tuple[object, np.ndarray]:
    """`data` (MinedData of `run_dirs`, read whole) labelled by `definition`, with the
    labels it can decide; and the bool mask of those labels within `data`."""
    if definition not in LABEL_DEFINITIONS:
        raise AutojudgeError(f"unknown label definition {definition!r}; choose one of {', '.join(LABEL_DEFINITIONS)}")
    rows = mined_labels(run_dirs)
    if len(rows) != len(data.important):
        raise AutojudgeError("the mining runs changed while their labels were read; read them again")
    known = np.ones(len(rows), dtype=bool)
    if definition == "answer-changed":
        important = data.important.copy()
    elif definition == "correctness-lost":
        important = correctness_lost(rows, task, {p.id: p for p in task.load(data.meta["split"])})
    else:
        important, known = contrasted(rows, run_dirs)
    relabelled = data.select(known)
    relabelled.important = important[known]
    return relabelled, known


def correctness_lost(rows: list[tuple[dict, dict]], task, problems: dict) -> np.ndarray:
    """Important where the target's own response is right and the swapped one is not."""
    right = target_right(rows, task, problems)
    # An unimportant swap gave an equivalent answer: it cannot have changed correctness.
    return np.array([m["important"] and right[record["problem_id"]]
                     and not task.is_correct(m["alt_response"], problems[record["problem_id"]])
                     for record, m in rows], dtype=bool)


def target_right(rows: list[tuple[dict, dict]], task, problems: dict) -> dict[int, bool]:
    """Whether the target's own response to each problem passes the task's checker."""
    if not callable(getattr(task, "is_correct", None)):
        raise AutojudgeError(f"task {task.name} has no gold answers to check (no is_correct): correctness-lost "
                             "cannot be computed for it; train with --labels answer-changed")
    return {record["problem_id"]: bool(task.is_correct(record["response"], problems[record["problem_id"]]))
            for record, _ in rows}


def contrasted(rows: list[tuple[dict, dict]], run_dirs: list) -> tuple[np.ndarray, np.ndarray]:
    """(important, known): known where every important label of the problem has its
    contrast regeneration; important where the answer changed and the nudge kept it."""
    nudged = {}
    for run in run_dirs:
        for line in read_records(Path(run) / CONTRAST_FILE, repair=False):
            nudged[(line["problem_id"], line["position"])] = line["same"]
    if not nudged:
        raise AutojudgeError(f"no contrast regenerations in {', '.join(map(str, run_dirs))}; "
                             "run `autojudge contrast-labels --data ...` first")
    complete = {}
    for record, m in rows:
        pid = record["problem_id"]
        complete[pid] = complete.get(pid, True) and (not m["important"] or (pid, m["position"]) in nudged)
    known = np.array([complete[record["problem_id"]] for record, _ in rows], dtype=bool)
    important = np.array([m["important"] and nudged.get((record["problem_id"], m["position"]), False)
                          for record, m in rows], dtype=bool)
    return important, known


def label_shares(rows: list[tuple[dict, dict]], important: np.ndarray, task, problems: dict) -> dict:
    """The share of important labels, and the share of those on problems the target gets wrong."""
    right = target_right(rows, task, problems)
    on_wrong = [not right[record["problem_id"]] for (record, _), imp in zip(rows, important) if imp]
    return {"labels": len(rows), "important": int(important.sum()), "important_share": float(important.mean()),
            "important_on_wrong_problems": float(np.mean(on_wrong)) if on_wrong else None}
