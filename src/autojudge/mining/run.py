"""Mine a task split into a store, one problem at a time, with a progress bar."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from autojudge.mining.algorithm import mine_problem
from autojudge.mining.store import FEATURE_DTYPE, MiningStore
from autojudge.models.loading import ModelPair
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks.base import Task


def mining_meta(pair: ModelPair, task: Task, max_new_tokens: int) -> dict:
    """Everything that changes the labels or the features; a resumed run must match it.

    Thread counts are left out: a run may resume on another machine.
    """
    described = {key: ({k: v for k, v in value.items() if k != "threads"} if isinstance(value, dict) else value)
                 for key, value in pair.describe().items()}
    meta = {"task": task.name, **described, "max_new_tokens": max_new_tokens,
            "features": {"draft": pair.draft.hidden_size, "target": pair.target.hidden_size,
                         "dtype": str(FEATURE_DTYPE).removeprefix("torch."),
                         "position": "after reading the draft token, final norm"}}
    if getattr(task, "settled", None):  # labels after the settle point keep the response
        meta["settled_answers"] = "labelled without regeneration"
    return meta


def mine(pair: ModelPair, task: Task, split: str, out: str, *, limit: int | None = None,
         max_new_tokens: int = 256, window: int = 4, fast: bool = True,
         shard: tuple[int, int] = (1, 1)) -> MiningStore:
    """Mine the first `limit` problems of `split`, or shard i of n of them (every n-th
    from the i-th), so that n processes, each with its own `out`, share the work;
    `autojudge train` reads several run directories at once."""
    store = MiningStore(out, mining_meta(pair, task, max_new_tokens))
    index, count = shard
    problems = task.load(split)[:limit][index - 1::count]
    done = store.done()
    todo = [p for p in problems if p.id not in done]
    labels = sum(len(r["mismatches"]) for r in store.records)
    important = sum(m["important"] for r in store.records for m in r["mismatches"])
    bar = tqdm(todo, desc=f"mine {task.name}/{split}", unit="problem", initial=len(problems) - len(todo),
               total=len(problems))
    for problem in bar:
        start = time.perf_counter()
        mined = mine_problem(pair, task, problem, chat_prompt_ids(pair.tokenizer, task.messages(problem)),
                             max_new_tokens=max_new_tokens, window=window, fast=fast)
        store.add(mined, time.perf_counter() - start)
        labels += len(mined.mismatches)
        important += sum(m.important for m in mined.mismatches)
        bar.set_postfix(mismatches=labels, important=f"{important / max(labels, 1):.1%}")
    return store


def bench_mining(pair: ModelPair, task: Task, split: str, n: int, max_new_tokens: int) -> list[dict]:
    """Plain vs fast mining on the same problems, in one run: labels/hour, passes/label.

    Each problem is mined both ways from cold caches; the labels must agree (on torch
    exactly; on llama.cpp up to its near-ties, reported as `labels_equal`).
    """
    rows = {name: {"mode": name, "problems": 0, "labels": 0, "seconds": 0.0, "target_passes": 0}
            for name in ("plain", "fast")}
    equal = []
    for problem in tqdm(task.load(split)[:n], desc="bench mining", unit="problem"):
        prompt_ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
        labels = {}
        for name in ("plain", "fast"):
            for model in (pair.target, pair.draft):
                model.reset()
            start = time.perf_counter()
            mined = mine_problem(pair, task, problem, prompt_ids, max_new_tokens=max_new_tokens,
                                 window=0, fast=name == "fast")
            row = rows[name]
            row["problems"] += 1
            row["seconds"] += time.perf_counter() - start
            row["labels"] += len(mined.mismatches)
            row["target_passes"] += mined.target_passes
            labels[name] = [(m.position, m.draft_token, m.important) for m in mined.mismatches]
        equal.append(labels["plain"] == labels["fast"])
    for row in rows.values():
        row["labels_per_hour"] = 3600 * row["labels"] / row["seconds"] if row["seconds"] else 0.0
        row["target_passes_per_label"] = row["target_passes"] / row["labels"] if row["labels"] else None
        row["labels_equal"] = f"{sum(equal)}/{len(equal)} problems"
    return list(rows.values())
