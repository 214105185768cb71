"""A mining run's directory: resumable, and safe against kill -9 at any moment.

    meta.json                     what produced the run (task, pair, runtimes, layout)
    problems.jsonl                one line per finished problem, with all its labels
                                  ("skipped": why, for a prompt that does not fit)
    features/<problem>.safetensors  draft and target hidden states, one row per label

A problem counts as done only when its line is in problems.jsonl. Its feature file is
written first, under a temporary name renamed into place, then the line is appended
and fsynced; a kill between the two leaves a feature file that the rerun overwrites.
A torn last line (killed mid-write) is dropped on open (see autojudge.runfiles). So nothing is lost or counted
twice, and no file is ever half-written.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from autojudge.runfiles import append_record, check_meta, read_records
from autojudge.mining.algorithm import MinedProblem

FEATURE_DTYPE = torch.float16


class MiningStore:
    def __init__(self, root: str | Path, meta: dict):
        self.root = Path(root)
        self.features = self.root / "features"
        self.features.mkdir(parents=True, exist_ok=True)
        self.lines = self.root / "problems.jsonl"
        check_meta(self.root, meta, "mining run")
        self.records = read_records(self.lines)

    def done(self) -> set[int]:
        return {r["problem_id"] for r in self.records}

    def add(self, mined: MinedProblem, seconds: float, skipped: str | None = None) -> None:
        """Write one finished problem; `skipped` says why a problem gave no response."""
        if mined.mismatches:
            tensors = {"draft": torch.stack(mined.draft_features).to("cpu", FEATURE_DTYPE).contiguous(),
                       "target": torch.stack(mined.target_features).to("cpu", FEATURE_DTYPE).contiguous()}
            final = self.features / f"{mined.problem_id}.safetensors"
            tmp = final.with_suffix(".tmp")
            save_file(tensors, str(tmp))
            os.replace(tmp, final)
        record = {"problem_id": mined.problem_id, "answer": mined.answer, "response": mined.response,
                  "target_passes": mined.target_passes, "seconds": seconds,
                  "mismatches": [asdict(m) for m in mined.mismatches]}
        if skipped:
            record["skipped"] = skipped
        append_record(self.lines, record)
        self.records.append(record)

    def load_features(self, problem_id: int) -> dict[str, torch.Tensor]:
        return load_file(str(self.features / f"{problem_id}.safetensors"))
