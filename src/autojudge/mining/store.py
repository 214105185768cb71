"""A mining run's directory: resumable, and safe against kill -9 at any moment.

    meta.json                     what produced the run (task, pair, runtimes, layout)
    problems.jsonl                one line per finished problem, with all its labels
                                  ("skipped": why, for a prompt that does not fit)
    features/<problem>.safetensors  draft and target hidden states and logit features,
                                  one row per label
    summary.json                  labels, important share, answers cut by the budget

A problem counts as done only when its line is in problems.jsonl. Its feature file is
written first, under a temporary name renamed into place, then the line is appended
and fsynced; a kill between the two leaves a feature file that the rerun overwrites.
A torn last line (killed mid-write) is dropped on open (see autojudge.runfiles). So nothing is lost or counted
twice, and no file is ever half-written.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from autojudge.decoding.engine import is_cut
from autojudge.errors import AutojudgeError
from autojudge.mining.algorithm import MinedProblem
from autojudge.runfiles import append_record, check_meta, read_records

FEATURE_DTYPE = torch.float16
# meta.json keys that runs mined before they were recorded lack (see runfiles.check_meta):
# such a run resumes, and trains beside newer ones, as "not recorded".
RECORDED_LATER = ("task_fingerprint",)


class MiningStore:
    def __init__(self, root: str | Path, meta: dict):
        self.root = Path(root)
        self.features = self.root / "features"
        self.features.mkdir(parents=True, exist_ok=True)
        self.lines = self.root / "problems.jsonl"
        check_meta(self.root, meta, "mining run", recorded_later=RECORDED_LATER)
        self.records = read_records(self.lines)

    def done(self) -> set[int]:
        return {r["problem_id"] for r in self.records}

    def add(self, mined: MinedProblem, seconds: float, skipped: str | None = None) -> None:
        """Write one finished problem; `skipped` says why a problem gave no response."""
        if mined.mismatches:
            tensors = {"draft": torch.stack(mined.draft_features).to("cpu", FEATURE_DTYPE).contiguous(),
                       "target": torch.stack(mined.target_features).to("cpu", FEATURE_DTYPE).contiguous()}
            if mined.logit_features:  # a few numbers per label: kept in float32
                tensors["logits"] = torch.stack(mined.logit_features).to("cpu", torch.float32).contiguous()
            final = self.features / f"{mined.problem_id}.safetensors"
            tmp = final.with_suffix(".tmp")
            save_file(tensors, str(tmp))
            os.replace(tmp, final)
        record = {"problem_id": mined.problem_id, "answer": mined.answer, "response": mined.response,
                  "target_passes": mined.target_passes, "seconds": seconds,
                  "first_answer_stop": mined.first_answer_stop, "response_stop": mined.response_stop,
                  "first_answer_tokens": mined.first_answer_tokens,
                  "mismatches": [asdict(m) for m in mined.mismatches]}
        if skipped:
            record["skipped"] = skipped
        append_record(self.lines, record)
        self.records.append(record)
        # Derived from problems.jsonl, rewritten whole: a reader never sees half of it.
        tmp = self.root / "summary.json.tmp"
        tmp.write_text(json.dumps(self.summary(), indent=2) + "\n")
        os.replace(tmp, self.root / "summary.json")

    def load_features(self, problem_id: int) -> dict[str, torch.Tensor]:
        return load_file(str(self.features / f"{problem_id}.safetensors"))

    def summary(self) -> dict:
        return mining_summary(self.records)


def labelled_problems(runs: list[str | Path], task: str, split: str) -> set[int]:
    """The problems other mining runs of `task` and `split` already hold, so that a new run
    can leave them out (say, mining the rest of a split with another feature layer)."""
    ids = set()
    for run in runs:
        meta_path = Path(run) / "meta.json"
        if not meta_path.is_file():
            raise AutojudgeError(f"{run}: not a mining run (no meta.json)")
        meta = json.loads(meta_path.read_text())
        if (meta.get("task"), meta.get("split")) != (task, split):
            raise AutojudgeError(f"{run} mined {meta.get('task')}/{meta.get('split')}, not {task}/{split}")
        ids |= {r["problem_id"] for r in read_records(Path(run) / "problems.jsonl", repair=False)}
    return ids


def mining_summary(records: list[dict]) -> dict:
    """Labels, the important share, how many answers the budget cut short, and (with
    confirmation) how many important labels a second regeneration overturned.

    Cut means stopped at the budget (or the context) rather than by itself: such an
    "answer" is whatever stands last at the cut, so its labels mean little. Runs mined
    before stop reasons were recorded count as unknown.
    """
    labelled = [m for r in records for m in r["mismatches"]]
    regenerated = [m for m in labelled if m.get("regeneration_stop") is not None]
    first = [r["first_answer_stop"] for r in records if r.get("first_answer_stop") and not r.get("skipped")]
    hours = sum(r["seconds"] for r in records) / 3600
    summary = {
        "problems": len(records), "labels": len(labelled),
        "important_fraction": sum(m["important"] for m in labelled) / len(labelled) if labelled else None,
        "first_answers_cut": _share(first), "regenerations_cut": _share([m["regeneration_stop"] for m in regenerated]),
        "hours": hours, "labels_per_hour": len(labelled) / hours if hours else None,
        "target_passes_per_label": sum(r["target_passes"] for r in records) / len(labelled) if labelled else None,
    }
    # With --confirm: how many important labels a second regeneration was asked about,
    # and how many it overturned (the first regeneration's change was the runtime's noise).
    confirmations = [m["confirmed"] for m in labelled if m.get("confirmed") is not None]
    if confirmations:
        summary["confirmation"] = {"asked": len(confirmations), "overturned": confirmations.count(False)}
    return summary


def _share(stops: list[str]) -> dict:
    cut = sum(is_cut(s) for s in stops)
    return {"cut": cut, "of": len(stops), "fraction": cut / len(stops) if stops else None}
