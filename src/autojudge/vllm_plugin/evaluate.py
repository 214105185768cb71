"""`autojudge eval --engine vllm`: decoding modes through vLLM's offline `LLM`, batched
over problems, with the judge as the acceptance rule through this plugin.

Modes: "target" (vLLM without speculative decoding), "exact" (vLLM's strict
draft-model speculative decoding: no plugin settings at all) and the judge modes
(judge:T[:L], judge@R[:L]: the plugin's rule at that threshold and lookahead). Other
policies have no vLLM form here and are refused in one line.

Problems go in batches of `batch`: for each batch, every mode in turn gets an engine of
its own (one float32 pair in memory at a time) that generates the whole batch at once,
and each (mode, problem) record is appended to records.jsonl as soon as its batch ends.
A rerun with the same settings skips what is there, so a killed run resumes at the batch
it was in, and every finished batch holds every mode: the report compares modes on the
problems all of them finished, as autojudge's own eval does.

What vLLM counts is what the report shows: per request, vLLM's speculative-decoding
metrics (`per_request_spec_decode_metrics`: verification steps and accepted draft
tokens), from which a record's cycles (target passes) are its new tokens less its
accepted draft tokens, since every pass yields exactly one token of the target's own;
per batch, vLLM's engine counters (drafts, draft tokens, accepted tokens, per position)
in counters.jsonl, whose sums give tokens per verification step. Judge modes also log
the plugin's decisions, request by request, so that each record counts the mismatches
the judge kept. Batched seconds time many sequences at once: records are marked
`batched`, and the report leaves them out of tokens/s, as it does autojudge's batched runs.
"""

from __future__ import annotations

import gc
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from autojudge.decoding.modes import Mode
from autojudge.errors import AutojudgeError
from autojudge.evaluation.report import write_report
from autojudge.evaluation.run import by_judge, judged_apart
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import append_record, check_meta, host_description, read_records, run_lock
from autojudge.tasks.base import Task

# The policies this engine decodes (and "target", which has no policy).
POLICIES = ("exact", "judge")
COUNTERS = ("num_drafts", "num_draft_tokens", "num_accepted_tokens")


@dataclass(frozen=True)
class VllmEngine:
    """How vLLM is built for every mode: the pair (registered names or model
    directories), the draft window, and what a CPU engine may take."""

    draft: str
    target: str
    window: int
    dtype: str = "float32"
    kv_cache_bytes: int = 2 << 30  # KV cache reserved per engine (on a CPU, bytes of RAM)
    enforce_eager: bool = True  # no torch.compile: an engine starts in seconds, and a layer hook runs

    def describe(self) -> dict:
        return {"engine": "vllm", "vllm": _vllm_version(), "draft": self.draft, "target": self.target,
                "dtype": self.dtype}


def check_modes(modes: list[Mode]) -> None:
    """Refuse, in one line, a mode with no vLLM form here."""
    other = [m.name for m in modes if not m.is_target and m.policy not in POLICIES]
    if other:
        raise AutojudgeError(f"--engine vllm decodes target, exact and judge modes; not {', '.join(other)} "
                             "(run those with --engine autojudge)")


def run_vllm_eval(task: Task, split: str, modes: list[Mode], out: str | Path, engine: VllmEngine,
                  max_new_tokens: int, *, judge_path: str | None = None, limit: int | None = None,
                  batch: int = 16, report_only: bool = False):
    """Decode what is missing (unless `report_only`), batch by batch; write the report.
    Returns the report's rows (evaluation.rows.ModeSummary)."""
    check_modes(modes)
    judge = None
    if any(m.needs_judge for m in modes):
        if judge_path is None:
            raise AutojudgeError("judge modes through vLLM need --judge: a judge trained on the torch runtime's "
                                 "target features (docs/vllm.md); the shipped llama.cpp ones do not fit vLLM")
        from autojudge.judge.model import Judge
        judge = Judge.load(judge_path)
    fingerprint = judge.fingerprint() if judge is not None else None
    thresholds = {m.name: m.threshold(judge) for m in modes if m.needs_judge}
    names = [m.name for m in modes]
    out = Path(out)
    meta = {"task": task.name, "split": split, **engine.describe(), "window": engine.window,
            "max_new_tokens": max_new_tokens}
    title = f"{task.name} {split} through vLLM, window {engine.window}"

    def report(records: list[dict], others: list[dict]):
        rows = write_report(records, names, out, title=title, meta={**meta, "judge": fingerprint},
                            judged_earlier=by_judge(others, names))
        _append_counters(out, names, fingerprint)
        return rows

    with run_lock(out, "evaluation"):
        check_meta(out, meta, "evaluation")
        records_path = out / "records.jsonl"
        records, others = judged_apart(read_records(records_path), fingerprint)
        done = {(r["mode"], r["problem"]) for r in records}
        problems = task.load(split)[:limit]
        if not report_only:
            pending = [p for p in problems if any((m, p.id) not in done for m in names)]
            if pending:
                tokenizer = _tokenizer(engine.target)
                run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
                append_record(out / "runs.jsonl", {"run": run, "host": host_description(), "parallel": batch})
            for start in range(0, len(pending), batch):
                chunk = pending[start:start + batch]
                for mode in modes:
                    todo = [p for p in chunk if (mode.name, p.id) not in done]
                    if not todo:
                        continue
                    for record in _decode_batch(task, todo, mode, engine, max_new_tokens, tokenizer, judge_path,
                                                thresholds.get(mode.name), fingerprint, run, out):
                        append_record(records_path, record)
                        records.append(record)
                        done.add((record["mode"], record["problem"]))
                # The report so far after every batch: a long run shows its numbers as it goes.
                report(records, others)
        return report(records, others)


def _decode_batch(task: Task, problems: list, mode: Mode, engine: VllmEngine, max_new_tokens: int, tokenizer,
                  judge_path: str | None, threshold: float | None, fingerprint: str | None, run: str,
                  out: Path) -> list[dict]:
    """One engine for `mode`, all of `problems` generated at once; their records, and a
    line of vLLM's counters for the batch in counters.jsonl."""
    from vllm import LLM, SamplingParams

    extra: dict = {}
    log = None
    if not mode.is_target:
        extra["speculative_config"] = {"model": _model_dir(engine.draft), "method": "draft_model",
                                       "num_speculative_tokens": engine.window}
        extra["per_request_spec_decode_metrics"] = "summary"
    if mode.needs_judge:
        # Named without the mode's ":" and "@", which some file systems refuse.
        tag = mode.name.replace(":", "-").replace("@", "-at-")
        log = out / "judge-log" / f"{run}-{tag}-from-{problems[0].id}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)  # a batch killed before its records were written starts over
        settings = {"judge": judge_path, "threshold": threshold, "log": str(log)}
        if mode.values[1:] and mode.values[1]:
            settings["lookahead"] = int(mode.values[1])
        extra["additional_config"] = {"autojudge": settings}
    prompts = [{"prompt_token_ids": chat_prompt_ids(tokenizer, task.messages(p))} for p in problems]
    # Room for the longest prompt, its budget and a window past it, and no more: vLLM
    # refuses a context length its KV cache cannot hold once (the target's own is 32k).
    extra["max_model_len"] = max(len(p["prompt_token_ids"]) for p in prompts) + max_new_tokens + engine.window + 1
    llm = LLM(model=_model_dir(engine.target), dtype=engine.dtype, seed=0, enforce_eager=engine.enforce_eager,
              kv_cache_memory_bytes=engine.kv_cache_bytes, disable_log_stats=False, **extra)
    try:
        # Greedy, as autojudge's eval; vLLM stops at the model's end of sequence.
        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0)
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - start
        counters = _spec_counters(llm)
    finally:
        # The engine's models freed before the next mode's load: two float32 pairs at once
        # would not fit a small machine. (The in-process core, or the core's process.)
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
    judged = _judged_by_request(log) if log is not None else {}
    records = []
    for problem, output in zip(problems, outputs):
        completion = output.outputs[0]
        ids = list(completion.token_ids)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        metrics = completion.spec_decode_metrics.to_dict() if completion.spec_decode_metrics is not None else None
        accepted = metrics["num_accepted_draft_tokens"] if metrics else 0
        record = {"mode": mode.name, "problem": problem.id, "run": run, "correct": task.is_correct(text, problem),
                  "answer": task.extract_answer(text, problem), "new_tokens": len(ids),
                  # Every target pass yields one token of its own; the rest are accepted drafts.
                  "cycles": max(len(ids) - accepted, 1), "seconds": seconds, "batched": len(problems),
                  "accepted_mismatches": judged.get(output.request_id, 0),
                  "stop_reason": "eos" if completion.finish_reason == "stop" else completion.finish_reason,
                  "judge": fingerprint if mode.needs_judge else None, "threshold": threshold,
                  "engine": "vllm", "spec_decode": metrics, "token_ids": ids, "text": text}
        if hasattr(task, "follows_format"):
            record["follows_format"] = task.follows_format(text)
        records.append(record)
    append_record(out / "counters.jsonl", {"mode": mode.name, "run": run, "judge": records[0]["judge"],
                                           "problems": [p.id for p in problems], "seconds": seconds,
                                           "new_tokens": sum(r["new_tokens"] for r in records), **counters})
    return records


def _spec_counters(llm) -> dict:
    """vLLM's speculative-decoding counters of this engine (zero without drafts)."""
    found = {m.name.removeprefix("vllm:spec_decode_"): m.values if hasattr(m, "values") else m.value
             for m in llm.get_metrics() if m.name.startswith("vllm:spec_decode")}
    return {**{k: int(found.get(k, 0)) for k in COUNTERS},
            "num_accepted_tokens_per_pos": [int(v) for v in found.get("num_accepted_tokens_per_pos", [])]}


def _judged_by_request(log: Path) -> dict[str, int]:
    """{vLLM's request id as the caller gave it: mismatches the judge kept}, from the
    plugin's log (the engine appends "-" and 8 characters of its own to each id)."""
    judged: dict[str, int] = {}
    if not log.exists():
        return judged
    for line in log.read_text().splitlines():
        step = json.loads(line)
        for request, count in zip(step.get("requests", []), step["judged"]):
            key = request.rsplit("-", 1)[0]
            judged[key] = judged.get(key, 0) + count
    return judged


def counters_table(out: Path, modes: list[str], fingerprint: str | None) -> str:
    """Tokens per verification step by vLLM's engine counters, per mode, summed over
    the batches of records.jsonl's current judge (markdown)."""
    lines = ["| mode | problems | drafts | draft tokens | accepted | tokens per step | accepted share | "
             "accepted by position |", "|---|---|---|---|---|---|---|---|"]
    for mode in modes:
        rows = [c for c in read_records(out / "counters.jsonl") if c["mode"] == mode
                and (c.get("judge") is None or c["judge"] == fingerprint)]
        if not rows:
            continue
        sums = {k: sum(r[k] for r in rows) for k in COUNTERS}
        width = max((len(r["num_accepted_tokens_per_pos"]) for r in rows), default=0)
        by_position = [sum(r["num_accepted_tokens_per_pos"][i] for r in rows
                           if i < len(r["num_accepted_tokens_per_pos"])) for i in range(width)]
        drafts = sums["num_drafts"]
        per_step = f"{1 + sums['num_accepted_tokens'] / drafts:.3f}" if drafts else "1 (no drafts)"
        share = f"{sums['num_accepted_tokens'] / sums['num_draft_tokens']:.1%}" if sums["num_draft_tokens"] else "-"
        positions = ", ".join(f"{n / drafts:.2f}" for n in by_position) if drafts else "-"
        lines.append(f"| {mode} | {sum(len(r['problems']) for r in rows)} | {drafts} | {sums['num_draft_tokens']} "
                     f"| {sums['num_accepted_tokens']} | {per_step} | {share} | {positions} |")
    return "\n".join(lines)


def _append_counters(out: Path, modes: list[str], fingerprint: str | None) -> None:
    """summary.md gains vLLM's own counters (write_report wrote the rest)."""
    summary = out / "summary.md"
    text = summary.read_text().rstrip("\n")
    summary.write_text(text + "\n\n## vLLM's speculative-decoding counters\n\nSummed over the batches "
                       "(counters.jsonl; every batch a fresh engine). Tokens per step is 1 + accepted / drafts; "
                       "accepted by position is the share of drafts whose i-th draft token was kept.\n\n"
                       + counters_table(out, modes, fingerprint) + "\n")


def _model_dir(name: str) -> str:
    """A directory vLLM loads: a registered model's float32 copy made for vLLM, or the
    given directory (vLLM checks it)."""
    from autojudge.models.registry import REGISTERED
    if name in REGISTERED:
        from autojudge.vllm_plugin.models import vllm_model_dir
        return str(vllm_model_dir(name))
    return name


def _tokenizer(name: str):
    from autojudge.models.loading import load_tokenizer
    return load_tokenizer(name)


def _vllm_version() -> str:
    try:
        import vllm
    except ImportError:
        raise AutojudgeError("--engine vllm needs vLLM: run it in .venv-vllm (make test-vllm creates it; "
                             "docs/vllm.md)") from None
    return vllm.__version__
