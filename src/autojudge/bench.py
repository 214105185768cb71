"""Side-by-side speed benchmark on GSM8K eval problems, interleaved, resumable.

Every method runs on the same problem before the next problem starts, so slow drift
of a noisy machine hits all methods alike. Each (method, problem) result is appended
to records.jsonl as soon as it exists; a rerun skips what is there, so a killed run
loses at most the problem in flight. The summary compares methods only on problems
that all of them finished.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from autojudge.decoding.engine import generate
from autojudge.decoding.policies import policy_from_name
from autojudge.models.loading import ModelPair, load_pair
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks.datasets import load_gsm8k
from autojudge.tasks.gsm8k import GSM8K


@dataclass(frozen=True)
class Method:
    name: str  # "target", "assisted", "exact:8", "topk:4:16"
    policy: str | None = None  # None for the two non-speculative baselines
    window: int = 0


def parse_methods(spec: str) -> list[Method]:
    methods = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        parts = name.split(":")
        if name in ("target", "assisted"):
            methods.append(Method(name))
        elif parts[0] == "exact" and len(parts) == 2:
            methods.append(Method(name, "exact", int(parts[1])))
        elif parts[0] == "topk" and len(parts) == 3:
            methods.append(Method(name, f"topk:{parts[1]}", int(parts[2])))
        else:
            raise ValueError(f"unknown bench method {name!r}; use target, assisted, exact:W, topk:K:W")
    return methods


def run_method(pair: ModelPair, method: Method, prompt_ids: list[int], max_new_tokens: int) -> dict:
    if method.name == "assisted":
        return _hf_assisted(pair, prompt_ids, max_new_tokens)
    result = generate(
        pair.target, prompt_ids,
        draft=pair.draft if method.policy else None,
        policy=policy_from_name(method.policy) if method.policy else None,
        window=method.window, max_new_tokens=max_new_tokens, stop_ids=pair.stop_ids,
    )
    return {"token_ids": result.token_ids, **result.stats.to_dict()}


def _hf_assisted(pair: ModelPair, prompt_ids: list[int], max_new_tokens: int) -> dict:
    """transformers' own assisted generation, as a user would call it, on the same models."""
    calls = {"target": 0, "draft": 0}
    hooks = [pair.target.model.register_forward_pre_hook(lambda *_: calls.__setitem__("target", calls["target"] + 1)),
             pair.draft.model.register_forward_pre_hook(lambda *_: calls.__setitem__("draft", calls["draft"] + 1))]
    input_ids = torch.tensor([prompt_ids])
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            out = pair.target.model.generate(
                input_ids, attention_mask=torch.ones_like(input_ids), assistant_model=pair.draft.model,
                do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=sorted(pair.stop_ids),
                pad_token_id=pair.tokenizer.pad_token_id,
            )
        seconds = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    tokens = out[0, len(prompt_ids):].tolist()
    while tokens and tokens[-1] == pair.tokenizer.pad_token_id and tokens[-1] not in pair.stop_ids:
        tokens.pop()
    cycles = max(calls["target"] - 1, 1)  # the first call is the prefill
    return {"token_ids": tokens, "new_tokens": len(tokens), "seconds": seconds,
            "tokens_per_second": len(tokens) / seconds, "cycles": cycles,
            "mean_accepted": len(tokens) / cycles, "target_forwards": calls["target"],
            "draft_forwards": calls["draft"]}


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    with open(path) as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill: everything before it is whole
    return records


def append_record(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def repair_tail(path: Path, records: list[dict]) -> None:
    """Rewrite the file without a torn last line, so appends start on a clean line."""
    if path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.replace(tmp, path)


def summarize(records: list[dict], methods: list[Method]) -> list[dict]:
    by_problem: dict[int, dict[str, dict]] = {}
    for record in records:
        by_problem.setdefault(record["problem"], {})[record["method"]] = record
    complete = [runs for runs in by_problem.values() if all(m.name in runs for m in methods)]
    rows = []
    target_tps = None
    for method in methods:
        runs = [r[method.name] for r in complete]
        tokens = sum(r["new_tokens"] for r in runs)
        seconds = sum(r["seconds"] for r in runs)
        cycles = sum(r["cycles"] for r in runs)
        tps = tokens / seconds if seconds else 0.0
        if method.name == "target":
            target_tps = tps
        same = [r["token_ids"] == p["target"]["token_ids"] for r, p in zip(runs, complete) if "target" in p]
        rows.append({
            "method": method.name, "problems": len(runs), "new_tokens": tokens,
            "tokens_per_second": tps, "mean_accepted": tokens / cycles if cycles else 0.0,
            "speedup_vs_target": tps / target_tps if target_tps else None,
            "identical_to_target": sum(same) / len(same) if same else None,
            "accuracy": sum(r["correct"] for r in runs) / len(runs) if runs else None,
            "answer_found": sum(r["answer"] is not None for r in runs) / len(runs) if runs else None,
            "mean_length": tokens / len(runs) if runs else None,
        })
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| method | problems | tok/s | tokens/pass | speed-up vs target | identical to target | accuracy |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['speedup_vs_target']:.2f}x" if r["speedup_vs_target"] else "-"
        same = f"{r['identical_to_target']:.0%}" if r["identical_to_target"] is not None else "-"
        accuracy = f"{r['accuracy']:.0%}" if r["accuracy"] is not None else "-"
        lines.append(f"| {r['method']} | {r['problems']} | {r['tokens_per_second']:.2f} | "
                     f"{r['mean_accepted']:.2f} | {ratio} | {same} | {accuracy} |")
    return "\n".join(lines)


def run_bench(args) -> int:
    methods = parse_methods(args.methods)
    needs_draft = any(m.name != "target" for m in methods)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    records = read_records(records_path)
    repair_tail(records_path, records)
    done = {(r["method"], r["problem"]) for r in records}

    task = GSM8K()
    problems = load_gsm8k("eval")[: args.n]
    pair = load_pair(args.draft if needs_draft else None, args.target, linear=args.linear)
    todo = [(p, m) for p in problems for m in methods if (m.name, p.id) not in done]
    for problem, method in tqdm(todo, desc="bench", unit="run"):
        prompt_ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
        result = run_method(pair, method, prompt_ids, args.max_new_tokens)
        text = pair.tokenizer.decode(result["token_ids"], skip_special_tokens=True)
        record = {"method": method.name, "problem": problem.id, "prompt_tokens": len(prompt_ids),
                  "answer": task.extract_answer(text), "correct": task.is_correct(text, problem), **result}
        append_record(records_path, record)
        records.append(record)

    rows = summarize(records, methods)
    table = markdown_table(rows)
    meta = {"pair": pair.describe(), "methods": [m.name for m in methods], "max_new_tokens": args.max_new_tokens,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (out / "summary.md").write_text(table + "\n")
    print(table)
    return 0
