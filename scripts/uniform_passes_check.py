"""Uniform passes against the noise floor: does the target alone decode what exact speculative decoding does?

llama.cpp rounds a one-token pass differently from a many-token one, so the target
alone (one-token passes) and exact speculative decoding (many-token verification
passes) part ways at near-ties: that is the noise floor of every evaluation on it.
`--uniform-passes` reads each lone token together with the one before it, so that the
target's logits all come from many-token passes. This compares an evaluation run decoded
with it (modes target and exact) with the plain run of the same settings, on the problems
both hold: how often each decode gives the plain run's exact-decoding tokens and answer,
and the speed each costs.

    python scripts/uniform_passes_check.py --uniform docs/eval/gsm8k-q4_0-w32-uniform \
        --plain docs/eval/gsm8k-q4_0-w32 --out docs/eval/gsm8k-q4_0-w32-uniform/vs-plain.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from script_report import publish

from autojudge.evaluation.statistics import tokens_per_second
from autojudge.runfiles import read_records


def latest(run: Path) -> dict[tuple[str, int], dict]:
    """The latest record of each (mode, problem): a rerun's record replaces the earlier one."""
    return {(r["mode"], r["problem"]): r for r in read_records(run / "records.jsonl", repair=False)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uniform", required=True, type=Path, help="an eval run with --uniform-passes")
    parser.add_argument("--plain", required=True, type=Path, help="the same settings without it")
    parser.add_argument("--out", type=Path, help="write the report here too (markdown)")
    args = parser.parse_args(argv)
    uniform_meta, plain_meta = (json.loads((d / "meta.json").read_text()) for d in (args.uniform, args.plain))
    if not uniform_meta["target_backend"].get("uniform_passes") or plain_meta["target_backend"].get("uniform_passes"):
        raise SystemExit(f"{args.uniform} must be decoded with --uniform-passes and {args.plain} without")
    uniform_meta["target_backend"].pop("uniform_passes")
    if uniform_meta != plain_meta:
        raise SystemExit("the two runs differ in more than uniform passes (meta.json)")
    uniform, plain = latest(args.uniform), latest(args.plain)
    problems = sorted(p for mode, p in uniform if mode == "target" and ("exact", p) in uniform
                      and ("target", p) in plain and ("exact", p) in plain)
    if not problems:
        raise SystemExit("the runs share no problem decoded in modes target and exact by both")
    reference = [plain["exact", p] for p in problems]
    rows = [("the target alone, plain passes", [plain["target", p] for p in problems]),
            ("the target alone, uniform passes", [uniform["target", p] for p in problems]),
            ("exact speculative decoding, uniform passes", [uniform["exact", p] for p in problems]),
            ("exact speculative decoding, plain passes (the reference)", reference)]
    lines = [f"{args.uniform} (uniform passes) against {args.plain} (plain), on the {len(problems)} problems "
             "both decoded in modes target and exact; tokens/s of single-stream records, each run on its own", "",
             "| decode | same tokens as exact, plain | same answer | accuracy | tok/s |", "|---|---|---|---|---|"]
    for name, records in rows:
        speed = tokens_per_second(records)
        lines.append(f"| {name} | {sum(r['token_ids'] == e['token_ids'] for r, e in zip(records, reference))} | "
                     f"{sum(r['answer'] == e['answer'] for r, e in zip(records, reference))} | "
                     f"{sum(r['correct'] for r in records) / len(records):.1%} | "
                     f"{'-' if speed is None else f'{speed:.1f}'} |")
    return publish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
