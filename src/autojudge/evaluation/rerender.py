"""An evaluation's report written again from its run directory alone, loading no model.

`autojudge eval --report-only` loads the pair and the judge, so that it can check them
against the directory's settings; a report whose format has changed needs neither. Its
modes and its judge are those its last summary.json names, its records are scored as
they were decoded:

    python -m autojudge.evaluation.rerender docs/eval/gsm8k-q4_0-w32 docs/eval/humaneval-q4_0-w32
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from autojudge.evaluation.methods import parse_methods
from autojudge.evaluation.report import report_title, write_report
from autojudge.evaluation.rows import ModeSummary
from autojudge.evaluation.run import by_judge, judged_apart
from autojudge.runfiles import read_records


def rerender(out: str | Path) -> list[ModeSummary]:
    """summary.md, .json, .csv and the plots of run directory `out` again, from its
    records.jsonl and runs.jsonl, for the modes and judge of its summary.json."""
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    meta, modes = summary["meta"], [row["mode"] for row in summary["rows"]]
    records, others = judged_apart(read_records(out / "records.jsonl"), meta.get("judge"))
    return write_report(records, modes, out, title=report_title(meta, parse_methods(modes)), meta=meta,
                        judged_earlier=by_judge(others, modes))


def main(directories: list[str]) -> int:
    if not directories:
        print("usage: python -m autojudge.evaluation.rerender RUN_DIRECTORY...", file=sys.stderr)
        return 2
    for directory in directories:
        rows = rerender(directory)
        print(f"{directory}: {len(rows)} modes on {rows[0].problems} problems")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
