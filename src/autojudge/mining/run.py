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
    """Everything that changes the labels or the features; a resumed run must match it."""
    return {"task": task.name, **pair.describe(), "max_new_tokens": max_new_tokens,
            "features": {"draft": pair.draft.hidden_size, "target": pair.target.hidden_size,
                         "dtype": str(FEATURE_DTYPE).removeprefix("torch."),
                         "position": "after reading the draft token, final norm"}}


def mine(pair: ModelPair, task: Task, split: str, out: str, *, limit: int | None = None,
         max_new_tokens: int = 256, window: int = 4, fast: bool = True) -> MiningStore:
    store = MiningStore(out, mining_meta(pair, task, max_new_tokens))
    problems = task.load(split)[:limit]
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
