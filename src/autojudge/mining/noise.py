"""The label noise floor: null swaps, regenerations that swap in the target's own token.

A null swap regenerates the target's answer from a position t with y[t] itself "swapped
in", through the same regeneration path as a real label (the old answer proposed as a
draft, verified many tokens per pass). In exact arithmetic it returns y unchanged; on
a runtime whose numbers depend on a pass's shape (llama.cpp: a one-token pass and a
multi-token pass differ in the last bits), it may not, and every changed answer is a
label that would read "important" for no reason. The share of changed answers is the
floor under any label's meaning.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from autojudge.errors import AutojudgeError
from autojudge.mining.algorithm import Miner
from autojudge.mining.options import MiningOptions
from autojudge.models.backend import ModelPair, common_prefix_length
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import append_record, check_meta, read_records, run_lock
from autojudge.tasks.base import Task, compare


@dataclass
class NullSwap:
    problem_id: int
    position: int
    tokens_changed: bool  # the regenerated response differs from the first answer somewhere
    first_difference: int | None  # tokens after the swap where it does
    answer_changed: bool
    seconds: float


# A null swap: the first answer from the target alone, the regeneration on the fast path.
NULL_SWAP_OPTIONS = MiningOptions(window=0)


def null_swaps(pair: ModelPair, task: Task, split: str, n_problems: int, per_problem: int, out: str | Path,
               options: MiningOptions = NULL_SWAP_OPTIONS, *, seed: int = 0) -> list[NullSwap]:
    """`per_problem` null swaps at random positions of the target's answer to each of the
    first `n_problems` problems of `split` that have an answer.

    `options`: the budget, and the regeneration path (fast, or plain); the first answer
    comes from the target alone (window 0), and neither the re-join shortcut nor
    confirmation applies to a null swap.

    Resumable: out/records.jsonl gets one line per problem (its swaps) as soon as it is
    done, and a rerun does only the problems it lacks.
    """
    if options.window or options.rejoin or options.confirm:
        raise AutojudgeError("null swaps take the first answer from the target alone and regenerate without "
                             f"re-join or confirmation; got window {options.window}, {options.regeneration}")
    out = Path(out)
    options = options.resolved(task)
    with run_lock(out, "noise-floor run"):
        meta = {"task": task.name, "split": split, **pair.describe(machine=False),
                "max_new_tokens": options.max_new_tokens, "per_problem": per_problem, "seed": seed,
                "regeneration": options.regeneration}
        check_meta(out, meta, "noise-floor run")
        path = out / "records.jsonl"
        records = read_records(path)
        done = {r["problem"] for r in records}
        problems = task.load(split)[:n_problems]
        for problem in tqdm([p for p in problems if p.id not in done], desc="null swaps", unit="problem"):
            miner = Miner(pair, task, problem, chat_prompt_ids(pair.tokenizer, task.messages(problem)), options)
            y, _ = miner.first_answer()
            answer = task.extract_answer(miner.decode(y), problem)
            swaps = []
            if answer is not None and len(y) >= 2:
                rng = random.Random(f"{seed}-{problem.id}")  # the same positions however the run is split
                for t in sorted(rng.sample(range(len(y) - 1), min(per_problem, len(y) - 1))):
                    start = time.perf_counter()
                    alt, _ = miner.regeneration(t, y[t])
                    same = common_prefix_length(alt, y)
                    alt_text = miner.decode(alt)
                    changed = not compare(task, problem, alt_text, task.extract_answer(alt_text, problem),
                                          miner.decode(y), answer).same
                    swaps.append(asdict(NullSwap(problem.id, t, alt != y, None if alt == y else same - t - 1,
                                                 changed, time.perf_counter() - start)))
            record = {"problem": problem.id, "swaps": swaps}
            append_record(path, record)
            records.append(record)
        ids = {p.id for p in problems}
        return [NullSwap(**swap) for r in records if r["problem"] in ids for swap in r["swaps"]]


def null_swap_markdown(swaps: list[NullSwap], header: str) -> str:
    n = len(swaps)
    changed_tokens = [s for s in swaps if s.tokens_changed]
    changed_answers = sum(s.answer_changed for s in swaps)
    gaps = sorted(s.first_difference for s in changed_tokens)
    median = gaps[len(gaps) // 2] if gaps else None
    problems = len({s.problem_id for s in swaps})
    return "\n".join([
        header, "",
        "| null swaps | problems | response changed | answer changed | median tokens to the first change | "
        "seconds per regeneration |", "|---|---|---|---|---|---|",
        f"| {n} | {problems} | {len(changed_tokens)} ({len(changed_tokens) / max(n, 1):.1%}) | "
        f"{changed_answers} ({changed_answers / max(n, 1):.1%}) | {'-' if median is None else median} | "
        f"{sum(s.seconds for s in swaps) / max(n, 1):.1f} |",
    ])
