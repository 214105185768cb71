"""Mining speed of this version against an older one's, on the same problems and budget.

The older version mines into a run directory of its own (its code from git, this
environment), one core each, e.g. for the version the mining-speed goal was set against:

    git worktree add /tmp/old 4b19bf7
    PYTHONPATH=/tmp/old/src taskset -c 1 .venv/bin/python -m autojudge mine --task gsm8k --window 0 \
        --limit 7 --max-new-tokens 1024 --out docs/bench/mining-gsm8k-1024/old-fast-4b19bf7
    python scripts/mining_speedup.py --bench docs/bench/mining-gsm8k-1024 \
        --old docs/bench/mining-gsm8k-1024/old-fast-4b19bf7 --out docs/bench/mining-speedup-gsm8k.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autojudge.runfiles import read_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", required=True, help="a bench-mining directory of this version")
    parser.add_argument("--old", required=True, help="the older version's mining run on the same problems")
    parser.add_argument("--out", required=True, help="Markdown file to write")
    args = parser.parse_args(argv)
    old = read_records(Path(args.old) / "problems.jsonl", repair=False)
    problems = {r["problem_id"] for r in old}
    runs = {"older version, fast": [(len(r["mismatches"]), sum(m["important"] for m in r["mismatches"]),
                                     r["seconds"]) for r in old]}
    for record in read_records(Path(args.bench) / "records.jsonl", repair=False):
        if record["problem"] in problems:
            runs.setdefault(f"this version, {record['method']}", []).append(
                (len(record["labels"]), sum(label[3] for label in record["labels"]), record["seconds"]))
    for side in sorted(Path(args.bench).glob("parallel-*")):
        records = [r for r in read_records(side / "problems.jsonl", repair=False) if r["problem_id"] in problems]
        runs[f"this version, {side.name.removeprefix('parallel-')}, side by side"] = [
            (len(r["mismatches"]), sum(m["important"] for m in r["mismatches"]), r["seconds"]) for r in records]
    old_meta = json.loads((Path(args.old) / "meta.json").read_text())
    base = _per_hour(runs["older version, fast"])
    lines = [f"{old_meta['task']}, the same {len(problems)} problems of {old_meta['split']}, <= "
             f"{old_meta['max_new_tokens']} new tokens, target on {old_meta['target_backend']['backend']}, one "
             f"core each; the older version: {Path(args.old).name}", "",
             "| mining | problems | labels | important | seconds | labels/hour | vs the older version's fast |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in runs.items():
        labels, important, seconds = (sum(col) for col in zip(*rows))
        lines.append(f"| {name} | {len(rows)} | {labels} | {important} ({important / labels:.1%}) | "
                     f"{seconds:.0f} | {3600 * labels / seconds:.0f} | {_per_hour(rows) / base:.2f}x |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _per_hour(rows: list[tuple[int, int, float]]) -> float:
    return 3600 * sum(r[0] for r in rows) / sum(r[2] for r in rows)


if __name__ == "__main__":
    sys.exit(main())
