"""The default pair in two GGUF formats, side by side in one run: accuracy and tokens/s.

Both pairs are loaded once; every problem is decoded by every (pair, method), interleaved
problem by problem so that all see the same machine, and set against the Q4_K_M target
alone. Records are appended as they finish and a killed run resumes:

    taskset -c 1 python scripts/formats_bench.py --n 50 --out docs/bench/formats-gsm8k

Pin it to one core: each model runs one llama.cpp thread per core it may use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from autojudge.decoding.engine import is_cut
from autojudge.decoding.modes import DecodingOptions, decode, parse_mode
from autojudge.evaluation.statistics import paired_accuracy_difference, wilson
from autojudge.judge.shipped import load_judge
from autojudge.models.loading import load_pair
from autojudge.models.registry import DRAFT, DRAFT_Q4_0, TARGET, TARGET_Q4_0
from autojudge.models.runtime import RuntimeOptions
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import append_record, read_records
from autojudge.tasks import get_task
from autojudge.tasks.base import task_budget

PAIRS = {"q4_k_m": (DRAFT.name, TARGET.name), "q4_0": (DRAFT_Q4_0.name, TARGET_Q4_0.name)}
REFERENCE = ("q4_k_m", "target")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--n", type=int, default=50, help="the first N problems of the eval split")
    parser.add_argument("--methods", default="q4_k_m:target,q4_0:target,q4_k_m:exact/w15,q4_0:exact/w3,"
                                              "q4_0:exact/w7,q4_0:topk:4/w7,q4_0:judge@0.9/w7",
                        help="comma-separated FORMAT:MODE[/wW]")
    parser.add_argument("--out", required=True, help="run directory: records.jsonl and summary.md")
    args = parser.parse_args(argv)

    methods = []
    for spec in args.methods.split(","):
        pair_name, _, rest = spec.partition(":")
        mode, _, window = rest.rpartition("/w") if "/w" in rest else (rest, "", "1")
        methods.append((pair_name, mode, int(window)))
    if ("q4_k_m", "target", 1) not in methods:
        raise SystemExit("the methods must include q4_k_m:target, the reference")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    earlier = read_records(records_path) if records_path.exists() else []
    done = {(r["pair"], r["method"], r["problem"]) for r in earlier}

    task = get_task(args.task)
    problems = task.load("eval")[: args.n]
    budget = task_budget(task)
    pairs = {name: load_pair(*PAIRS[name], RuntimeOptions(backend="llamacpp")) for name in {m[0] for m in methods}}
    # The judge shipped for the task (trained on the Q4_K_M pair; it serves the Q4_0 copies).
    judges = {name: load_judge(pair, task=task.name) for name, pair in pairs.items()
              if any(m[0] == name and parse_mode(m[1]).needs_judge for m in methods)}
    warm_up = chat_prompt_ids(pairs["q4_k_m"].tokenizer, task.messages(problems[0]))
    for pair_name, mode, window in methods:  # untimed: first passes pay for page faults
        decode(pairs[pair_name], warm_up, mode, DecodingOptions(window=window, max_new_tokens=16),
               judge=judges.get(pair_name))
    with tqdm(total=len(problems) * len(methods), unit="run") as bar:
        for problem in problems:
            ids = chat_prompt_ids(pairs["q4_k_m"].tokenizer, task.messages(problem))
            for pair_name, mode, window in methods:
                name = method_name(mode, window)
                if (pair_name, name, problem.id) not in done:
                    generation = decode(pairs[pair_name], ids, mode,
                                        DecodingOptions(window=window, max_new_tokens=budget),
                                        judge=judges.get(pair_name))
                    text = pairs[pair_name].tokenizer.decode(generation.token_ids, skip_special_tokens=True)
                    append_record(records_path, {
                        "pair": pair_name, "method": name, "problem": problem.id,
                        "correct": task.is_correct(text, problem), "answer": task.extract_answer(text, problem),
                        "stop_reason": generation.stop_reason, "tokens": generation.stats.new_tokens,
                        "cycles": generation.stats.cycles, "seconds": generation.stats.seconds})
                bar.update()
    summary = summarize(read_records(records_path), methods)
    (out / "summary.md").write_text(summary + "\n")
    print(summary)
    return 0


def method_name(mode: str, window: int) -> str:
    """A method's name in the records: the mode, and its window unless it drafts nothing."""
    return mode if parse_mode(mode).is_target else f"{mode}/w{window}"


def summarize(records: list[dict], methods) -> str:
    by = {}
    for r in records:
        by.setdefault((r["pair"], r["method"]), {})[r["problem"]] = r
    reference = by[REFERENCE]
    common = set(reference)
    for pair_name, mode, window in methods:
        common &= set(by.get((pair_name, method_name(mode, window)), {}))
    problems = sorted(common)
    ref_speed = sum(reference[p]["tokens"] for p in problems) / sum(reference[p]["seconds"] for p in problems)
    lines = [f"GSM8K, the first {len(problems)} eval problems, every (format, method) side by side in one run, "
             "one llama.cpp thread; speed against the Q4_K_M target alone", "",
             "| format | method | accuracy (95% CI) | vs Q4_K_M target, paired (95% CI) | answers unlike it | "
             "cut by the budget | tokens/cycle | tok/s | speed vs Q4_K_M target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for pair_name, mode, window in methods:
        runs = by[pair_name, method_name(mode, window)]
        rows = [runs[p] for p in problems]
        correct = [r["correct"] for r in rows]
        low, high = wilson(sum(correct), len(correct))
        # This method's accuracy minus the reference's, on the same problems.
        difference, diff_low, diff_high = paired_accuracy_difference(rows, [reference[p] for p in problems])
        unlike = sum(runs[p]["answer"] != reference[p]["answer"] for p in problems)
        tokens, seconds = sum(r["tokens"] for r in rows), sum(r["seconds"] for r in rows)
        accuracy = sum(correct) / len(correct)
        lines.append(f"| {pair_name} | {rows[0]['method']} | {accuracy:.1%} ({low:.1%}-{high:.1%}) | "
                     f"{difference:+.1%} ({diff_low:+.1%} to {diff_high:+.1%}) | "
                     f"{unlike}/{len(rows)} | {sum(is_cut(r['stop_reason']) for r in rows)}/{len(rows)} | "
                     f"{tokens / sum(r['cycles'] for r in rows):.2f} | {tokens / seconds:.2f} | "
                     f"{tokens / seconds / ref_speed:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
