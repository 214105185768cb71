"""The training-free rules' features for labels already mined, without mining again.

FLy decides from the target's top-3 entropy at the mismatch and from how many of the
next draft tokens the target then matches (decoding/features.py, RULE_FEATURES). A
mining run records neither, so this reads them afterwards, the way a verification pass
would have: for each label at position t, with the draft token d in place,

    target: the logits after prompt + response[:t]           -> top-3 entropy at t
    draft:  d, then LOOKAHEAD_CAP greedy tokens after it      -> its own continuation
    target: one pass over d and that continuation             -> how many it matches

The response recorded for a problem is its final one: every swap kept before a label
sits at the same place, and each label's prefix is response[:t] (mining only ever
changes the text after a label's position). A problem whose response does not tokenize
back to its labels' tokens is left out and counted.

Written per problem under <run>/rules/<problem>.safetensors, renamed into place whole,
so a killed pass resumes with nothing lost or done twice; `autojudge train` reads them
as the feature group "rules" when every labelled problem has its file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from autojudge.decoding.features import LOOKAHEAD_CAP, RULE_FEATURES, rule_features
from autojudge.errors import AutojudgeError
from autojudge.models.backend import ModelPair, keep_shared_prefix
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import RULE_FEATURES_DIR, read_records
from autojudge.tasks.base import Task


@dataclass
class RulePassSummary:
    problems: int  # problems with labels in the run
    written: int  # rule files written by this call
    untokenizable: list[int]  # problems whose response does not give back its labels' tokens
    disagreements: int  # labels where a model's argmax at t is not the mined token (near-ties)


def response_ids(tokenizer, record: dict) -> list[int] | None:
    """The final response's token ids, if tokenizing its text again gives back the tokens
    the labels stand on (the kept token at every mismatch); else None."""
    ids = tokenizer(record["response"], add_special_tokens=False)["input_ids"]
    for m in record["mismatches"]:
        kept = m["target_token"] if m["important"] else m["draft_token"]
        if m["position"] >= len(ids) or ids[m["position"]] != kept:
            return None
    return ids


@torch.inference_mode()
def problem_rule_features(pair: ModelPair, prompt: list[int], response: list[int],
                          mismatches: list[dict]) -> tuple[torch.Tensor, int]:
    """[labels, len(RULE_FEATURES)] for one problem's labels, and how many labels found a
    model's argmax at t other than the mined token (llama.cpp's pass shapes move near-ties)."""
    out = torch.empty(len(mismatches), len(RULE_FEATURES))
    disagreements = 0
    for k, m in enumerate(mismatches):
        seq = prompt + response[:m["position"]]
        # The target's distribution at t: read the last prefix token again (cache kept).
        keep = keep_shared_prefix(pair.target, seq, len(seq) - 1)
        at_t = pair.target.forward(seq[keep:], n_logits=1).logits[-1]
        keep = keep_shared_prefix(pair.draft, seq, len(seq) - 1)
        draft_at_t = pair.draft.forward(seq[keep:], n_logits=1).logits[-1]
        disagreements += int(int(at_t.argmax()) != m["target_token"] or int(draft_at_t.argmax()) != m["draft_token"])
        # The draft's own continuation after its token, as it would have drafted it.
        continuation, token = [], m["draft_token"]
        for _ in range(LOOKAHEAD_CAP):
            token = int(pair.draft.forward([token], n_logits=1).logits[-1].argmax())
            continuation.append(token)
        # One verification pass over the draft token and its continuation.
        after = pair.target.forward([m["draft_token"], *continuation], n_logits=LOOKAHEAD_CAP + 1).logits
        logits = torch.cat([at_t[None], after[:-1]])
        drafted = torch.tensor([m["draft_token"], *continuation])
        out[k] = rule_features(logits, drafted == logits.argmax(dim=-1))[0]
    return out, disagreements


def add_rule_features(pair: ModelPair, task: Task, run_dir: str | Path, limit: int | None = None,
                      progress: bool = True) -> RulePassSummary:
    """Write the rule features of every labelled problem of a mining run that lacks them."""
    root = Path(run_dir)
    if not (root / "problems.jsonl").is_file():
        raise AutojudgeError(f"{run_dir}: not a mining run (no problems.jsonl)")
    out_dir = root / RULE_FEATURES_DIR
    out_dir.mkdir(exist_ok=True)
    problems = {p.id: p for p in task.load(json.loads((root / "meta.json").read_text())["split"])}
    records = [r for r in read_records(root / "problems.jsonl", repair=False) if r["mismatches"]]
    todo = [r for r in records[:limit] if not (out_dir / f"{r['problem_id']}.safetensors").exists()]
    summary = RulePassSummary(len(records), 0, [], 0)
    for record in tqdm(todo, desc="rule features", unit="problem", disable=not progress):
        ids = response_ids(pair.tokenizer, record)
        if ids is None:
            summary.untokenizable.append(record["problem_id"])
            continue
        prompt = chat_prompt_ids(pair.tokenizer, task.messages(problems[record["problem_id"]]))
        features, disagreements = problem_rule_features(pair, prompt, ids, record["mismatches"])
        final = out_dir / f"{record['problem_id']}.safetensors"
        save_file({"rules": features.contiguous()}, str(final.with_suffix(".tmp")))
        os.replace(final.with_suffix(".tmp"), final)
        summary.written += 1
        summary.disagreements += disagreements
    return summary

