"""Does the judge accept inside vLLM what it accepts in autojudge's own torch engine?

For each problem a judge mode of an `autojudge eval --engine vllm` run decoded, this
decodes the same prompt with autojudge's engine on the torch runtime: the same float32
pair, judge, threshold, lookahead and window. vLLM's first token comes from its
prefill, before any draft, so autojudge's engine is given that token and drafts from
there (as in tests/test_vllm_plugin.py): both then draft and verify the same windows,
and the two texts are equal exactly when every acceptance decision was. Reported per
problem: whether the tokens are identical, where they first differ, and the mismatches
each engine's judge kept. One line per problem in --out's .jsonl (resumable: a rerun
skips the problems done); the markdown summary is written at the end.

Run it in .venv-vllm after the eval (one float32 pair in memory at a time):

    taskset -c 0 env OMP_NUM_THREADS=1 .venv-vllm/bin/python scripts/vllm_judge_agreement.py \
        --run docs/eval/vllm-gsm8k --mode judge@0.9 --judge data/judges/gsm8k-torch-layer18.safetensors \
        --limit 10 --out docs/eval/vllm-gsm8k/agreement
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from autojudge.decoding import generate
from autojudge.decoding.modes import parse_mode
from autojudge.decoding.policies import JudgePolicy
from autojudge.judge.shipped import load_judge
from autojudge.models.loading import load_pair
from autojudge.models.runtime import RuntimeOptions
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import append_record, read_records
from autojudge.tasks import get_task


def compare(pair, judge, prompt: list[int], record: dict, window: int, lookahead: int) -> dict:
    theirs = record["token_ids"]
    policy = JudgePolicy(judge, record["threshold"], lookahead)
    # A window past vLLM's length: vLLM drafts whole windows to its last step, then cuts.
    ours = generate(pair.target, prompt + theirs[:1], draft=pair.draft, policy=policy, window=window,
                    max_new_tokens=max(len(theirs) - 1, 1) + window, stop_ids=pair.stop_ids).token_ids
    ours = theirs[:1] + ours
    n = min(len(theirs), len(ours))
    first = next((i for i in range(n) if theirs[i] != ours[i]), None)
    return {"problem": record["problem"], "mode": record["mode"], "threshold": record["threshold"],
            "vllm_tokens": len(theirs), "identical": first is None, "first_difference": first,
            "vllm_judged": record.get("accepted_mismatches")}


def summary(rows: list[dict], mode: str) -> str:
    same = sum(r["identical"] for r in rows)
    lines = [f"# The judge inside vLLM against autojudge's torch engine ({mode})", "",
             f"{same} of {len(rows)} problems decode to identical tokens in both engines (the same pair in "
             "float32, judge, threshold and window; autojudge's engine given vLLM's first token). Identical "
             "tokens mean the judge kept the same draft tokens at every step.", "",
             "| problem | vLLM tokens | identical | first difference at | mismatches vLLM's judge kept |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['vllm_tokens']} | {'yes' if r['identical'] else 'no'} | "
                     f"{'-' if r['first_difference'] is None else r['first_difference']} | {r['vllm_judged']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="an `autojudge eval --engine vllm` run directory")
    parser.add_argument("--mode", required=True, help="one of its judge modes, e.g. judge@0.9")
    parser.add_argument("--judge", required=True, help="the judge file that run used")
    parser.add_argument("--limit", type=int, help="the first N problems that mode decoded")
    parser.add_argument("--task", help="the run's task as get_task takes it (default: the name its meta records)")
    parser.add_argument("--out", required=True, help="PREFIX: writes PREFIX.jsonl (resumable) and PREFIX.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    run = Path(args.run)
    meta = json.loads((run / "meta.json").read_text())
    mode = parse_mode(args.mode)
    lookahead = int(mode.values[1]) if len(mode.values) > 1 else 0
    records = [r for r in read_records(run / "records.jsonl", repair=False) if r["mode"] == mode.name]
    if not records:
        raise SystemExit(f"{run}: no records of mode {mode.name}")
    records = records[:args.limit] if args.limit else records
    out = Path(args.out + ".jsonl")
    done = {r["problem"] for r in read_records(out)} if out.exists() else set()
    task = get_task(args.task or meta["task"])
    problems = {p.id: p for p in task.load(meta["split"])}
    pair = load_pair(meta["draft"], meta["target"], RuntimeOptions(backend="torch"))
    judge = load_judge(pair, args.judge)
    if records[0].get("judge") not in (None, judge.fingerprint()):
        raise SystemExit(f"{args.judge} is not the judge of {run}'s {mode.name} records")
    for record in records:
        if record["problem"] in done:
            continue
        prompt = chat_prompt_ids(pair.tokenizer, task.messages(problems[record["problem"]]))
        row = compare(pair, judge, prompt, record, meta["window"], lookahead)
        append_record(out, row)
        print(json.dumps(row), flush=True)
    rows = [r for r in read_records(out) if r["mode"] == mode.name]
    Path(args.out + ".md").write_text(summary(rows, mode.name))
    print(summary(rows, mode.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
