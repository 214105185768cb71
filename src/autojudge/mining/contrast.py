"""Contrast regenerations: does the answer survive a nudge where no token was swapped?

Algorithm 1 calls a swap important when the target's answer changes after it. On a small
target the answer also changes after harmless swaps, because its later reasoning is
unstable there. For each important label at position t this samples one continuation
from the same place with the target's own token kept (temperature CONTRAST_TEMPERATURE,
seeded by problem and position): if that nudge changes the answer too, the position is
chaotic, and the swap's change says nothing about the token. The "contrast" label
definition (autojudge.judge.labels) keeps as important only the swaps whose nudge kept
the answer.

One line per label in <run>/contrast.jsonl, appended and fsynced as each finishes, so a
killed pass resumes with nothing lost or done twice. It costs one target-alone
regeneration per important label.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from autojudge.decoding.engine import generate
from autojudge.decoding.sampling import Sampling
from autojudge.errors import AutojudgeError
from autojudge.mining.rule_features import response_ids
from autojudge.models.backend import ModelPair
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import CONTRAST_FILE, append_record, read_records
from autojudge.tasks.base import Task, compare, settled_check

CONTRAST_TEMPERATURE = 0.7


def contrast_labels(pair: ModelPair, task: Task, run_dir: str | Path, budget: int, split: str,
                    limit: int | None = None, temperature: float = CONTRAST_TEMPERATURE,
                    progress: bool = True) -> dict:
    """Regenerate the nudge of every important label of the run's first `limit` labelled
    problems that lacks one; returns {"labels", "kept", "seconds", "untokenizable"} for this call."""
    root = Path(run_dir)
    if not (root / "problems.jsonl").is_file():
        raise AutojudgeError(f"{run_dir}: not a mining run (no problems.jsonl)")
    out = root / CONTRAST_FILE
    done = {(r["problem_id"], r["position"]) for r in read_records(out)}
    problems = {p.id: p for p in task.load(split)}
    records = [r for r in read_records(root / "problems.jsonl", repair=False) if r["mismatches"]][:limit]
    todo = [(r, m) for r in records for m in r["mismatches"]
            if m["important"] and (r["problem_id"], m["position"]) not in done]
    summary = {"labels": 0, "kept": 0, "seconds": 0.0, "untokenizable": 0}
    settled = settled_check(task)
    for record, m in tqdm(todo, desc="contrast", unit="label", disable=not progress):
        ids = response_ids(pair.tokenizer, record)
        if ids is None:
            summary["untokenizable"] += 1
            continue
        problem = problems[record["problem_id"]]
        head = ids[:m["position"] + 1]  # the target's own token at the label's position, kept
        prompt = chat_prompt_ids(pair.tokenizer, task.messages(problem))
        start = time.perf_counter()
        stop_when = None
        if settled is not None:
            def stop_when(new: list[int]) -> bool:
                return settled(pair.tokenizer.decode(head + new, skip_special_tokens=True), problem)
        generation = generate(pair.target, prompt + head, max_new_tokens=max(1, budget - len(head)),
                              stop_ids=pair.stop_ids, stop_when=stop_when,
                              sampling=Sampling(temperature, seed=record["problem_id"] * 100_003 + m["position"]))
        text = pair.tokenizer.decode(head + generation.token_ids, skip_special_tokens=True)
        answer = task.extract_answer(text, problem)
        same = compare(task, problem, record["response"], record["answer"], text, answer).same
        seconds = time.perf_counter() - start
        append_record(out, {"problem_id": record["problem_id"], "position": m["position"], "same": bool(same),
                            "answer": answer, "stop": generation.stop_reason, "temperature": temperature,
                            "tokens": len(generation.token_ids), "seconds": seconds})
        summary["labels"] += 1
        summary["kept"] += int(same)
        summary["seconds"] += seconds
    return summary
