"""Run decoding modes over a task split, one problem at a time, resumable.

All modes run on a problem before the next problem starts, so slow drift of a noisy
machine hits every mode alike, and every mode starts with empty caches. Each
(mode, problem) result is appended to records.jsonl as soon as it exists; a rerun
with the same settings skips what is there (more modes or problems may be added).

Accuracy and tokens per cycle do not depend on the machine, tokens/s does. Every
record therefore names the run (one call of run_eval) that measured it, and the
report sets a mode's speed only against baselines measured in the same run. So
that such baselines exist, a problem that gets any mode decoded in a timed run gets
its baselines (target, exact) decoded again in that run too (a batched run is not
timed: it decodes only what is missing).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping

from tqdm.auto import tqdm

from autojudge.decoding.modes import DecodingOptions, decode
from autojudge.errors import AutojudgeError
from autojudge.evaluation.adapters import ADAPTERS
from autojudge.evaluation.methods import Method, parse_method, parse_methods
from autojudge.evaluation.report import report_title, write_report
from autojudge.evaluation.rows import ModeSummary
from autojudge.evaluation.statistics import stalled
from autojudge.models.backend import ModelPair
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import append_record, check_meta, host_description, read_records, run_lock
from autojudge.tasks.base import Problem, Task, task_budget
from autojudge.workers import run_side_by_side


def run_eval(pair: ModelPair | None, task: Task, split: str, modes: list[str | Method], out: str | Path,
             options: DecodingOptions | None = None, *, limit: int | None = None, judge=None,
             report_only: bool = False, parallel: int = 1, rescore: bool = False, retime: bool = False,
             runtimes: Mapping[str, ModelPair] | None = None) -> list[ModeSummary]:
    """Decode what is missing (unless `report_only`), then write the report (with
    `rescore`, scoring every record's text again with the task's current rules; the
    records file keeps what was scored when it was decoded).

    `options` default to EVAL_OPTIONS at the task's budget. `modes` are methods
    (autojudge.evaluation.methods): a mode name runs on `pair` with `options`; a method
    that names a runtime (llamacpp/exact/w8) runs on `runtimes[runtime]`, with its own
    window where it names one: a benchmark's side-by-side comparison of runtimes and
    windows (`pair` may then be None).

    `parallel` > 1 (llama.cpp) decodes that many problems side by side, their passes
    merged into shared llama.cpp passes (autojudge.models.batching): a run's accuracy
    and tokens per cycle come faster, but its seconds are shared between sequences, so
    such records are marked `batched` and the report leaves them out of tokens/s.

    A judge-mode record carries the judge's fingerprint. After retraining the judge, a
    rerun decodes the judge modes again, with the baselines on the same problems, and
    keeps every other mode's records; records of another judge stay in the file, and
    the report sets them apart (write_report's `judged_earlier`).

    `retime` decodes again, with its baselines, every (mode, problem) whose latest
    record stalled (statistics.stalled: paused, or its core shared), so that it times
    something. Only on request: on a core that is shared now, it would stall again.
    """
    methods = parse_methods(modes)
    runtimes = dict(runtimes or {})
    missing_runtimes = sorted({m.runtime for m in methods if m.runtime is not None} - set(runtimes))
    if missing_runtimes or (pair is None and any(m.runtime is None for m in methods)):
        raise ValueError(f"no pair loaded for {', '.join(missing_runtimes) or 'the modes without a runtime'}")
    check_retime(retime, parallel, report_only)
    if parallel > 1 and runtimes:
        raise ValueError("methods on named runtimes are timed single-stream: parallel must be 1")
    options = eval_options(options, task)
    described = decoding_description(pair) if pair is not None else {}
    if runtimes:
        described["runtimes"] = {name: decoding_description(p) for name, p in runtimes.items()}
    fingerprint = judge.fingerprint() if judge is not None else None
    thresholds = judge_thresholds(methods, judge)
    by_name = {m.name: m for m in methods}

    def decode_locally(queue: list[tuple[Problem, list[str]]], run: str, keep: Callable[[dict], None]) -> None:
        register_run(out, run, host_description(), parallel)
        lock = threading.Lock()  # guards the queue

        def work(worker: ModelPair) -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    problem, problem_modes = queue.pop(0)
                for mode in problem_modes:  # every mode of a problem in turn, in one thread
                    method = by_name[mode]
                    keep(decode_record(runtimes.get(method.runtime, worker), task, problem, method, options,
                                       judge if method.needs_judge else None, fingerprint, thresholds.get(mode),
                                       run, parallel))

        run_side_by_side(pair, parallel, work)

    return evaluate(task, split, methods, out, options, described, fingerprint, decode_locally, limit=limit,
                    report_only=report_only, rescore=rescore, retime=retime, remeasure=parallel == 1)


# Decodes a queue of (problem, the modes to decode on it) as run `run`, handing each
# record to `keep` as soon as it exists: locally (run_eval) or on Ray actors.
DecodeQueue = Callable[[list[tuple[Problem, list[str]]], str, Callable[[dict], None]], None]


def evaluate(task: Task, split: str, methods: list[Method], out: str | Path, options: DecodingOptions,
             described: dict, fingerprint: str | None, decode_queue: DecodeQueue, *, limit: int | None = None,
             report_only: bool = False, rescore: bool = False, retime: bool = False,
             remeasure: bool = True) -> list[ModeSummary]:
    """The run directory's side of an evaluation, whoever decodes: check the settings
    against the directory's, find what is missing, have `decode_queue` decode it (each
    record appended as it comes), write the report. `remeasure`: a timed run decodes the
    baselines again on every problem it decodes anything of (see the module's docstring)."""
    modes = [m.name for m in methods]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"task": task.name, "split": split, **described, "window": options.window,
            "max_new_tokens": options.max_new_tokens}
    if options.draft_p_min:  # adaptive draft lengths (absent from fixed-window runs' meta)
        meta["draft_p_min"] = options.draft_p_min
    if options.draft_length != "fixed":  # the controller (absent from fixed-length runs' meta)
        meta["draft_length"] = options.draft_length
    if options.drafter != "model":  # a lookup drafter (absent from draft-model runs' meta)
        meta["drafter"] = options.drafter
    with run_lock(out, "evaluation"):
        check_meta(out, meta, "evaluation")
        records_path = out / "records.jsonl"
        records, others = judged_apart(read_records(records_path), fingerprint)
        done = {(r["mode"], r["problem"]) for r in records}
        if retime:  # the latest record of a (mode, problem) stands for it in the report
            latest = {(r["mode"], r["problem"]): r for r in records}
            done -= {key for key, record in latest.items() if stalled(record)}
        _check_judge(others, done, modes, fingerprint, records_path, report_only)

        by_name = {m.name: m for m in methods}
        problems = task.load(split)[:limit]
        missing = set() if report_only else {(m, p.id) for p in problems for m in modes} - done
        # Any mode missing, a baseline included (a kill between target and exact), brings
        # both baselines back, so that the run holds every pair its ratios need. A batched
        # run times nothing, so it has no ratio to pair and decodes only what is missing.
        again = {problem for _, problem in missing} if remeasure else set()
        todo = [(p, m) for p in problems for m in modes
                if (m, p.id) in missing or (p.id in again and by_name[m].lossless)]
        run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        bar = tqdm(total=len(todo), desc=f"eval {task.name}/{split}", unit="run")
        lock = threading.Lock()  # guards the records file and the bar

        def keep(record: dict) -> None:
            with lock:
                append_record(records_path, record)
                records.append(record)
                bar.set_postfix(problem=record["problem"], mode=record["mode"])
                bar.update()

        queue = [(p, [m for q, m in todo if q.id == p.id]) for p in dict.fromkeys(p for p, _ in todo)]
        if queue:
            decode_queue(queue, run, keep)
        bar.close()
        if rescore:  # the task's scoring changed since: score every kept text again
            by_id = {p.id: p for p in task.load(split)}
            for record in records + others:
                problem = by_id[record["problem"]]
                record["correct"] = task.is_correct(record["text"], problem)
                record["answer"] = task.extract_answer(record["text"], problem)
        listed = list(dict.fromkeys(reported_earlier(out) + modes))
        present = {r["mode"] for r in records}
        return write_report(records, [m for m in listed if m in present or m in modes], out,
                            title=report_title(meta, methods), meta={**meta, "judge": fingerprint},
                            judged_earlier=by_judge(others, listed))


def reported_earlier(out: Path) -> list[str]:
    """The modes the directory's last report showed: a run that adds a mode to an
    evaluation reports it beside them, not alone (those without records of this run's
    judge go to the earlier judges' tables)."""
    try:
        return [row["mode"] for row in json.loads((out / "summary.json").read_text())["rows"]]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: this run's modes
        return []


def judged_apart(records: list[dict], fingerprint: str | None) -> tuple[list[dict], list[dict]]:
    """`records` split in two: those of the judge `fingerprint` names, with every record
    that no judge decodes; and the judge-mode records of other judges."""
    current, others = [], []
    for r in records:
        (current if not needs_judge(r["mode"]) or r.get("judge") == fingerprint else others).append(r)
    return current, others


def by_judge(others: list[dict], modes: list[str]) -> dict[str, list[dict]]:
    """Other judges' records of `modes`, {fingerprint: its records}: write_report's `judged_earlier`."""
    judged: dict[str, list[dict]] = {}
    for record in others:
        if record["mode"] in modes:
            judged.setdefault(record["judge"], []).append(record)
    return judged


def eval_options(options: DecodingOptions | None, task: Task) -> DecodingOptions:
    """`options`, or EVAL_OPTIONS at the task's budget."""
    return options or replace(EVAL_OPTIONS, max_new_tokens=task_budget(task))


def register_run(out: str | Path, run: str, host: str, parallel: int = 1) -> None:
    """Note which machine measured run `run`'s seconds, for the report's speeds by run."""
    append_record(Path(out) / "runs.jsonl", {"run": run, "host": host, "parallel": parallel})


def decoding_description(pair: ModelPair) -> dict:
    """The pair as an evaluation's meta names it. Without thread counts: an evaluation
    resumes on other machines (each record names its run). Without the layer the target's
    features come from: it feeds the judge and changes no token, and each judge record
    carries its judge's fingerprint (a retrained judge may read another layer)."""
    described = pair.describe(machine=False)
    described["target_backend"] = {k: v for k, v in described["target_backend"].items() if k != "feature_layer"}
    return described


def check_retime(retime: bool, parallel: int, report_only: bool) -> None:
    """Retiming decodes single-stream: refused with side-by-side decoding or a report alone."""
    if retime and (parallel > 1 or report_only):
        raise ValueError("--retime decodes single-stream: drop --parallel and --report-only")


# What an evaluation decodes with unless told: a wider window than a single call's
# default (accepted runs are long on the default pair), at the task's budget.
EVAL_OPTIONS = DecodingOptions(window=16)


def decode_record(pair: ModelPair, task: Task, problem, method: Method, options: DecodingOptions, judge,
                   fingerprint: str | None, threshold: float | None, run: str, parallel: int) -> dict:
    if parallel == 1:
        # A timed run starts cold, so that every mode pays for its prompt alike. Batched
        # runs are not timed: they keep the prompt the previous mode read (the modes of a
        # problem run in turn on one sequence), a quarter of the work for 4 modes.
        for model in (pair.target, pair.draft):
            if model is not None:
                model.reset()
    prompt_ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
    # The process's CPU time beside the decode's wall-clock time tells a record that was
    # paused or shared its core (statistics.stalled) from one that ran alone.
    cpu_start = time.process_time()
    if method.adapter is not None:
        result = ADAPTERS[method.adapter].run(pair, prompt_ids, options.max_new_tokens)
    else:
        own = replace(options, window=method.window or options.window,
                      draft_p_min=options.draft_p_min if method.draft_p_min is None else method.draft_p_min)
        result = decode(pair, prompt_ids, method.mode, own, judge=judge)
    cpu_seconds = time.process_time() - cpu_start
    text = pair.tokenizer.decode(result.token_ids, skip_special_tokens=True)
    stats = result.stats
    record = {"mode": method.name, "problem": problem.id, "run": run, "correct": task.is_correct(text, problem),
              "answer": task.extract_answer(text, problem), "new_tokens": stats.new_tokens,
              "cycles": stats.cycles, "seconds": stats.seconds, "cpu_seconds": cpu_seconds,
              "accepted_mismatches": stats.accepted_mismatches, "stop_reason": result.stop_reason,
              "judge": fingerprint if judge is not None else None, "threshold": threshold,
              # What the cost model's check (autojudge costs --check) charges a run for.
              "prefill_seconds": stats.prefill_seconds, "target_forwards": stats.target_forwards,
              "draft_forwards": stats.draft_forwards, "token_ids": result.token_ids, "text": text}
    if parallel > 1:  # its seconds are shared with other sequences: not a single-stream speed
        record["batched"] = parallel
    if hasattr(task, "follows_format"):  # GSM8K: does the last line read "The answer is N"?
        record["follows_format"] = task.follows_format(text)
    return record


def judge_thresholds(methods: list[Method], judge) -> dict[str, float]:
    """{name: the threshold it runs at} of the judge modes among `methods`: recorded with
    each judge-mode run, so that a table can say which threshold judge@R stood for."""
    return {m.name: m.mode.threshold(judge) for m in methods if m.needs_judge}


def needs_judge(name: str) -> bool:
    try:
        method = parse_method(name)
    except ValueError:  # a mode this version no longer knows: not one of this run's
        return False
    return method.mode is not None and method.mode.needs_judge


def _check_judge(others: list[dict], done: set, modes: list[str], fingerprint: str | None,
                 records_path: Path, report_only: bool) -> None:
    """Say so when judge modes were decoded by another judge than the one given.

    Re-decoding them is right after retraining, but a report from the wrong judge would
    drop every judge record and, with them, every problem from the comparison.
    """
    stale = {r["mode"] for r in others if r["mode"] in modes}
    if not stale:
        return
    unmatched = sorted(stale - {mode for mode, _ in done})
    judges = sorted({str(r.get("judge"))[:12] for r in others if r["mode"] in stale})
    given = fingerprint[:12] if fingerprint else "none"
    if report_only and unmatched:
        raise AutojudgeError(
            f"{records_path}: the records of {', '.join(unmatched)} were decoded by another judge "
            f"(fingerprint {', '.join(judges)}..., given {given}...); pass the --judge that made them, "
            "or rerun without --report-only to decode them with this one")
    if not report_only:
        tqdm.write(f"{len(others)} judge-mode records in {records_path} come from another judge "
                   f"({', '.join(judges)}...): {', '.join(sorted(stale))} are decoded again with judge {given}...")
