"""Regeneration methods side by side on the same problems: speed and label agreement.

    autojudge bench-mining --task gsm8k --n 20 --methods plain,fast,fast+rejoin:8 --out DIR

Each problem is mined by every method in turn, from cold caches, on one process, so
labels per hour compare like with like. Exact methods give the same labels (on torch
exactly; on llama.cpp up to its near-ties, which different pass shapes round apart);
a shortcut may not. Agreement is counted on the mismatches both runs visit (same
position, target and draft token): once two runs label one mismatch differently, their
responses part, and later mismatches are not comparable.

The run is resumable like every long job here: DIR/records.jsonl gets one line per
(problem, method) as soon as it is mined, a rerun mines only what is missing (more
problems or methods may be added), and DIR/summary.md is rewritten from the records.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from autojudge.decoding.engine import is_cut
from autojudge.errors import AutojudgeError
from autojudge.mining.algorithm import mine_problem
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mine, mining_meta
from autojudge.mining.store import RECORDED_LATER
from autojudge.models.backend import ModelPair
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import append_record, check_meta, read_records, run_lock
from autojudge.tasks.base import Task, can_rejoin

# The first answer from the target alone: the regeneration methods are what is compared.
BENCH_OPTIONS = MiningOptions(window=0)


def bench_mining(pair: ModelPair, task: Task, split: str, n: int, out: str | Path,
                 options: MiningOptions = BENCH_OPTIONS, *, parallel: int = 1,
                 methods: Sequence[str] = ("plain", "fast"), side_by_side: Sequence[str] | None = None) -> list[dict]:
    """Mine the first n problems of `split` with each method (what `out` lacks), then
    summarize: one row per method, agreement counted against the first. `options` give
    the budget and the first answer's window; each method, the regeneration (its name
    read by `MiningOptions.from_method`). With `parallel` > 1, the problems are also
    mined `parallel` side by side with each method of `side_by_side` (default: the
    last), each into out/parallel-METHOD (a mining run, resumable the same way)."""
    out = Path(out)
    options = options.resolved(task)
    settings = {method: options.with_method(method) for method in methods}
    side_by_side = list(side_by_side or methods[-1:]) if parallel > 1 else []
    if set(side_by_side) - set(methods):
        raise AutojudgeError(f"side by side: {', '.join(sorted(set(side_by_side) - set(methods)))} "
                             "is not among the methods")
    if any(chosen.rejoin for chosen in settings.values()) and not can_rejoin(task):
        raise AutojudgeError(f"rejoin needs a task that says which edits are interchangeable; {task.name} does not")
    with run_lock(out, "mining benchmark"):
        meta = mining_meta(pair, task, split, options)
        del meta["regeneration"]  # each record names its own
        check_meta(out, meta, "mining benchmark", recorded_later=RECORDED_LATER)
        path = out / "records.jsonl"
        records = read_records(path)
        done = {(r["problem"], r["method"]) for r in records}
        problems = task.load(split)[:n]
        todo = [(p, m) for p in problems for m in methods if (p.id, m) not in done]
        for problem, method in tqdm(todo, desc="bench mining", unit="run"):
            for model in (pair.target, pair.draft):
                model.reset()
            prompt_ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
            start = time.perf_counter()
            mined = mine_problem(pair, task, problem, prompt_ids, settings[method])
            record = {"problem": problem.id, "method": method, "seconds": time.perf_counter() - start,
                      "target_passes": mined.target_passes, "first_answer_stop": mined.first_answer_stop,
                      "labels": [[m.position, m.target_token, m.draft_token, m.important, m.regeneration_stop]
                                 for m in mined.mismatches]}
            append_record(path, record)
            records.append(record)
        ids = {p.id for p in problems}
        records = [r for r in records if r["problem"] in ids and r["method"] in settings]
        for method in side_by_side:
            store = mine(pair, task, split, str(out / f"parallel-{method}"), settings[method], limit=n,
                         parallel=parallel)
            records += [{"problem": r["problem_id"], "method": f"{method}, {parallel} side by side",
                         "seconds": r["seconds"],
                         "target_passes": r["target_passes"], "first_answer_stop": r.get("first_answer_stop"),
                         "labels": [[m["position"], m["target_token"], m["draft_token"], m["important"],
                                     m.get("regeneration_stop")] for m in r["mismatches"]]}
                        for r in store.records if r["problem_id"] in ids]
        rows = summarize_bench(records, methods[0])
        header = (f"{task.name}, problems of {split} mined by every method, "
                  f"<= {options.max_new_tokens} new tokens, target on {pair.target.describe()['backend']}")
        (out / "summary.md").write_text(bench_markdown(rows, header) + "\n")
        return rows


def summarize_bench(records: list[dict], reference: str) -> list[dict]:
    """One row per method over the problems every method has finished."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    by_method = {m: {r["problem"]: r for r in records if r["method"] == m} for m in methods}
    common = set.intersection(*(set(runs) for runs in by_method.values())) if by_method else set()
    rows = []
    for method in methods:
        runs = [by_method[method][p] for p in sorted(common)]
        labels = [label for r in runs for label in r["labels"]]
        seconds = sum(r["seconds"] for r in runs)
        shared = agreeing = alike = 0
        for r in runs:
            mine_, theirs = _keyed(r["labels"]), _keyed(by_method[reference][r["problem"]]["labels"])
            both = mine_.keys() & theirs.keys()
            shared += len(both)
            agreeing += sum(mine_[k] == theirs[k] for k in both)
            alike += mine_ == theirs
        rows.append({"method": method, "problems": len(runs), "labels": len(labels), "seconds": seconds,
                     "labels_per_hour": 3600 * len(labels) / seconds if seconds else 0.0,
                     "target_passes_per_label": sum(r["target_passes"] for r in runs) / max(len(labels), 1),
                     "important": sum(label[3] for label in labels),
                     "first_answers_cut": sum(is_cut(r["first_answer_stop"]) for r in runs),
                     "regenerations_cut": sum(is_cut(label[4]) for label in labels),
                     "rejoined": sum(label[4] == "rejoined" for label in labels),
                     "problems_alike": alike, "shared_labels": shared, "agreeing_labels": agreeing})
    return rows


def _keyed(labels: list) -> dict:
    return {(position, target, draft): important for position, target, draft, important, _ in labels}


def bench_markdown(rows: list[dict], header: str) -> str:
    reference = rows[0] if rows else None
    lines = [header + (f"; labels compared with {reference['method']}'s on the mismatches both visit"
                       if reference else ""), "",
             "| regeneration | problems | labels | important | seconds | labels/hour | target passes/label | "
             "first answers cut | regenerations cut | re-joined | problems labelled alike | labels agreeing |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['problems']} | {r['labels']} | {r['important']} | {r['seconds']:.0f} | "
              f"{r['labels_per_hour']:.0f} | {r['target_passes_per_label']:.1f} | {r['first_answers_cut']} | "
              f"{r['regenerations_cut']} | {r['rejoined']} | {r['problems_alike']}/{r['problems']} | "
              f"{r['agreeing_labels']}/{r['shared_labels']} |" for r in rows]
    for row in rows[1:] if reference and reference["labels_per_hour"] else ():
        lines.append(f"\n{row['method']} / {reference['method']}: "
                     f"{row['labels_per_hour'] / reference['labels_per_hour']:.2f}x labels/hour")
    return "\n".join(lines)
