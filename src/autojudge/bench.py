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
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from autojudge.decoding.engine import generate
from autojudge.decoding.modes import mode_policy
from autojudge.models.backend import CausalLM
from autojudge.models.loading import (
    ModelPair,
    check_same_vocabulary,
    load_model,
    load_tokenizer,
    share_logits,
    stop_token_ids,
)
from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from autojudge.models.runtime import RuntimeOptions
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import append_record, read_records, run_lock
from autojudge.tasks.datasets import load_gsm8k
from autojudge.tasks.gsm8k import GSM8K

# Where each method's models run: (target backend, draft backend).
RUNTIMES = {"torch": ("torch", "torch"), "llamacpp": ("llamacpp", "llamacpp"),
            "mixed": ("torch", "llamacpp")}


@dataclass(frozen=True)
class Method:
    name: str  # "torch/target", "torch/assisted", "llamacpp/exact:8", "mixed/topk:4:16"
    runtime: str  # a key of RUNTIMES
    kind: str  # "target", "assisted" or "speculative"
    policy: str | None = None
    window: int = 0


def parse_methods(spec: str, default_runtime: str = "torch") -> list[Method]:
    """Comma-separated [runtime/]method: target, assisted, exact:W, topk:K:W."""
    methods = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        runtime, _, rest = item.rpartition("/")
        runtime = runtime or default_runtime
        name = f"{runtime}/{rest}"
        parts = rest.split(":")
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r} in {item!r}; choose one of {', '.join(RUNTIMES)}")
        if rest in ("target", "assisted"):
            if rest == "assisted" and runtime != "torch":
                raise ValueError("'assisted' is transformers' own generation: torch/assisted only")
            methods.append(Method(name, runtime, rest))
        elif parts[0] == "exact" and len(parts) == 2:
            methods.append(Method(name, runtime, "speculative", "exact", int(parts[1])))
        elif parts[0] == "topk" and len(parts) == 3:
            methods.append(Method(name, runtime, "speculative", f"topk:{parts[1]}", int(parts[2])))
        else:
            raise ValueError(f"unknown bench method {item!r}; use target, assisted, exact:W, topk:K:W")
    return methods


def run_method(pair: ModelPair, method: Method, prompt_ids: list[int], max_new_tokens: int) -> dict:
    # Every method starts cold: no prompt cache carried over from the previous method.
    for model in (pair.target, pair.draft):
        if model is not None:
            model.reset()
    if method.kind == "assisted":
        return _hf_assisted(pair, prompt_ids, max_new_tokens)
    result = generate(
        pair.target, prompt_ids,
        draft=pair.draft if method.kind == "speculative" else None,
        policy=mode_policy(method.policy) if method.policy else None,
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


def summarize(records: list[dict], methods: list[Method]) -> list[dict]:
    by_problem: dict[int, dict[str, dict]] = {}
    for record in records:
        by_problem.setdefault(record["problem"], {})[record["method"]] = record
    complete = [runs for runs in by_problem.values() if all(m.name in runs for m in methods)]
    rows = []
    speed = {}
    for method in methods:
        runs = [r[method.name] for r in complete]
        tokens = sum(r["new_tokens"] for r in runs)
        seconds = sum(r["seconds"] for r in runs)
        speed[method.name] = tokens / seconds if seconds else 0.0
    for method in methods:
        runs = [r[method.name] for r in complete]
        tokens = sum(r["new_tokens"] for r in runs)
        cycles = sum(r["cycles"] for r in runs)
        tps = speed[method.name]
        # The target's own greedy output on the same runtime as the method's target.
        baseline = f"{RUNTIMES[method.runtime][0]}/target"
        same = [r["token_ids"] == p[baseline]["token_ids"] for r, p in zip(runs, complete) if baseline in p]
        rows.append({
            "method": method.name, "problems": len(runs), "new_tokens": tokens,
            "tokens_per_second": tps, "mean_accepted": tokens / cycles if cycles else 0.0,
            "speedup_vs_target": tps / speed[baseline] if speed.get(baseline) else None,
            "speedup_vs_llamacpp_target": tps / speed["llamacpp/target"] if speed.get("llamacpp/target") else None,
            "identical_to_target": sum(same) / len(same) if same else None,
            "accuracy": sum(r["correct"] for r in runs) / len(runs) if runs else None,
            "answer_found": sum(r["answer"] is not None for r in runs) / len(runs) if runs else None,
            "follows_format": _share(runs, "follows_format"),
            "mean_length": tokens / len(runs) if runs else None,
        })
    return rows


def _share(runs: list[dict], key: str) -> float | None:
    """Fraction of runs where `key` is true, over the runs that recorded it."""
    known = [r[key] for r in runs if key in r]
    return sum(known) / len(known) if known else None


def markdown_table(rows: list[dict]) -> str:
    lines = ["| method | problems | tok/s | tokens/pass | vs same-runtime target | vs llama.cpp target "
             "| identical to target | accuracy | answer found | last line 'The answer is N' | mean length |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def ratio(value):
        return f"{value:.2f}x" if value else "-"

    for r in rows:
        same = f"{r['identical_to_target']:.0%}" if r["identical_to_target"] is not None else "-"
        accuracy = f"{r['accuracy']:.0%}" if r["accuracy"] is not None else "-"
        found = f"{r['answer_found']:.0%}" if r["answer_found"] is not None else "-"
        form = f"{r['follows_format']:.0%}" if r.get("follows_format") is not None else "-"
        length = f"{r['mean_length']:.0f}" if r["mean_length"] is not None else "-"
        lines.append(f"| {r['method']} | {r['problems']} | {r['tokens_per_second']:.2f} | "
                     f"{r['mean_accepted']:.2f} | {ratio(r['speedup_vs_target'])} | "
                     f"{ratio(r['speedup_vs_llamacpp_target'])} | {same} | {accuracy} | {found} | {form} | {length} |")
    return "\n".join(lines)


def load_runtimes(draft: str, target: str, methods: list[Method],
                  runtime_options: RuntimeOptions = RuntimeOptions()) -> dict[str, ModelPair]:
    """One pair per runtime the methods use, sharing loaded models between pairs. The
    methods' runtimes name the backends; `runtime_options` gives the rest (device,
    dtype, kernels)."""
    tokenizer = load_tokenizer(target)
    check_same_vocabulary(draft, load_tokenizer(draft), target, tokenizer)
    loaded: dict[tuple[str, str], CausalLM] = {}

    def model(name: str, backend: str) -> CausalLM:
        if (name, backend) not in loaded:
            loaded[name, backend] = load_model(name, replace(runtime_options, backend=backend))
        return loaded[name, backend]

    pairs = {}
    for runtime in dict.fromkeys(m.runtime for m in methods):
        target_backend, draft_backend = RUNTIMES[runtime]
        needs_draft = any(m.runtime == runtime and m.kind != "target" for m in methods)
        target_model = model(target, target_backend)
        draft_model = model(draft, draft_backend) if needs_draft else None
        if draft_model is not None:
            share_logits(draft_model, target_model, tokenizer)
        pairs[runtime] = ModelPair(draft_model, target_model, tokenizer, stop_token_ids(target, tokenizer))
    return pairs


@dataclass(frozen=True)
class BenchSettings:
    """What `autojudge bench` runs: the pair, the methods, the problems, where results go."""
    methods: str  # comma-separated, as parse_methods takes them
    n: int  # the first n GSM8K eval problems
    max_new_tokens: int
    out: str  # directory for records.jsonl (resumed when it exists), summary.md and summary.json
    draft: str = DEFAULT_DRAFT
    target: str = DEFAULT_TARGET
    runtime_options: RuntimeOptions = field(default_factory=RuntimeOptions)  # backends: the methods' runtimes


def run_bench(settings: BenchSettings) -> int:
    methods = parse_methods(settings.methods)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out, "benchmark"):
        records_path = out / "records.jsonl"
        records = read_records(records_path)
        done = {(r["method"], r["problem"]) for r in records}

        task = GSM8K()
        problems = load_gsm8k("eval")[: settings.n]
        pairs = load_runtimes(settings.draft, settings.target, methods, settings.runtime_options)
        todo = [(p, m) for p in problems for m in methods if (m.name, p.id) not in done]
        for problem, method in tqdm(todo, desc="bench", unit="run"):
            pair = pairs[method.runtime]
            prompt_ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
            result = run_method(pair, method, prompt_ids, settings.max_new_tokens)
            text = pair.tokenizer.decode(result["token_ids"], skip_special_tokens=True)
            record = {"method": method.name, "problem": problem.id, "prompt_tokens": len(prompt_ids),
                      "answer": task.extract_answer(text, problem), "correct": task.is_correct(text, problem),
                      "follows_format": task.follows_format(text), "text": text, **result}
            append_record(records_path, record)
            records.append(record)

    rows = summarize(records, methods)
    table = markdown_table(rows)
    meta = {"runtimes": {k: p.describe() for k, p in pairs.items()}, "methods": [m.name for m in methods],
            "max_new_tokens": settings.max_new_tokens, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count()}
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (out / "summary.md").write_text(table + "\n")
    print(table)
    return 0
