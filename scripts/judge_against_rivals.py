"""Judge modes against the training-free rules, decoded: each judge mode of an evaluation
report beside each rival rule (FLy, typical acceptance, Top-K) on the problems the two
decoded, with the paired accuracy difference (judge minus rival, 95% interval) and the
tokens per cycle of each. The report itself pairs every mode with exact decoding only.

    python scripts/judge_against_rivals.py --run docs/eval/humaneval-q4_0-w32 \
        --modes judge-or-fly@0.95,judge@0.95 --rivals fly,fly:0.2:3,typical --out table.md

Judge modes count the records of one judge: the one the report's summary.json names,
or, with `--judge PREFIX`, an earlier one (a judge retrained mid-evaluation leaves its
records in records.jsonl). A (mode, problem) decoded more than once counts its latest
record, as the report does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from script_report import publish

from autojudge.evaluation.rivals import against_rivals, rivals_table
from autojudge.evaluation.run import judged_apart, needs_judge
from autojudge.runfiles import read_records

RIVALS = "fly,fly:0.2:3,typical"


class Refused(Exception):
    """A one-line reason the comparison cannot be made."""


def report_judge(run: Path) -> str | None:
    """The fingerprint of the judge the report stands on: summary.json's, else meta.json's."""
    for name in ("summary.json", "meta.json"):
        path = run / name
        if path.exists():
            meta = json.loads(path.read_text())
            meta = meta.get("meta", meta)
            if meta.get("judge"):
                return meta["judge"]
    return None


def chosen_judge(records: list[dict], run: Path, prefix: str | None) -> str | None:
    """The full fingerprint of `prefix` among the records' judges, or the report's judge."""
    if prefix is None:
        return report_judge(run)
    judges = sorted({r["judge"] for r in records if r.get("judge")})
    matching = [j for j in judges if j.startswith(prefix)]
    if len(matching) != 1:
        found = "no" if not matching else "several"
        raise Refused(f"{found} judge in {run} starts with {prefix!r} (judges there: "
                      f"{', '.join(j[:12] for j in judges) or 'none'})")
    return matching[0]


def comparison(run: Path, modes: list[str] | None, rivals: list[str], judge_prefix: str | None) -> list[str]:
    """The report's lines: which records, then the table."""
    if not run.is_dir():
        raise Refused(f"no report directory {run}")
    every = read_records(run / "records.jsonl", repair=False)
    if not every:
        raise Refused(f"no records in {run / 'records.jsonl'}")
    judge = chosen_judge(every, run, judge_prefix)
    records, _ = judged_apart(every, judge)
    present = list(dict.fromkeys(r["mode"] for r in every))
    kept = set(r["mode"] for r in records)
    if modes is None:
        modes = [m for m in present if m.startswith("judge") and m in kept]
        if not modes:
            raise Refused(f"no judge mode in {run} has records of judge {str(judge)[:12]}")
    for mode in modes + rivals:
        if mode not in present:
            raise Refused(f"mode {mode!r} has no records in {run} (modes there: {', '.join(present)})")
        if mode not in kept:
            raise Refused(f"mode {mode!r} has no records of judge {str(judge)[:12]} in {run} "
                          "(an earlier judge's: --judge PREFIX)")
    judged = sum(needs_judge(r["mode"]) and r["mode"] in modes for r in records)
    return [f"Records of {run}: judge modes decoded by judge {str(judge)[:12]}... ({judged} records); "
            "each pair on the problems both decoded, the latest record of each (mode, problem).", "",
            rivals_table(against_rivals(records, modes, rivals))]


def split(names: str) -> list[str]:
    return [name.strip() for name in names.split(",") if name.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="an evaluation report directory (docs/eval/<run>)")
    parser.add_argument("--modes", help="judge modes, comma-separated (default: every mode named judge...)")
    parser.add_argument("--rivals", default=RIVALS, help=f"rival rules, comma-separated (default {RIVALS})")
    parser.add_argument("--judge", help="an earlier judge's fingerprint prefix (default: the report's judge)")
    parser.add_argument("--out", help="write the Markdown table here too")
    args = parser.parse_args(argv)
    try:
        if args.out and not Path(args.out).parent.is_dir():
            raise Refused(f"no directory {Path(args.out).parent} to write {args.out} in")
        lines = comparison(Path(args.run), split(args.modes) if args.modes else None, split(args.rivals), args.judge)
    except Refused as reason:
        print(f"judge_against_rivals: {reason}", file=sys.stderr)
        return 2
    return publish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
