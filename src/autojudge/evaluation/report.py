"""An evaluation's report: summary.json, summary.csv, summary.md and tradeoff.png.

The work is split by kind, data flowing one way: statistics.py (the numbers) ->
rows.py (one typed summary row per mode) -> render.py (the text) and plot.py (the plot).
"""

from __future__ import annotations

from pathlib import Path

from autojudge.evaluation.plot import plot
from autojudge.evaluation.render import summary_json, summary_markdown, write_csv
from autojudge.evaluation.rows import (
    ModeSummary,
    earlier_judges,
    operating_point,
    summarize,
    target_speed_by_run,
)
from autojudge.runfiles import read_records


def write_report(records: list[dict], modes: list[str], out: Path, *, title: str, meta: dict,
                 judged_earlier: dict[str, list[dict]] | None = None) -> list[ModeSummary]:
    """The report on `records`; `judged_earlier`, {fingerprint: judge-mode records} of
    judges since retrained, adds each one's comparison (summary.md, summary.json and a
    plot tradeoff-judge-<fingerprint>.png of its own)."""
    rows = summarize(records, modes)
    best = operating_point(rows)
    earlier = earlier_judges(records, modes, judged_earlier or {})
    (out / "summary.json").write_text(summary_json(rows, best, meta, earlier))
    write_csv(rows, out / "summary.csv")
    runs = out / "runs.jsonl"  # absent for evaluations begun before runs named their host
    hosts = {r["run"]: r["host"] for r in read_records(runs)} if runs.exists() else {}
    (out / "summary.md").write_text(summary_markdown(rows, best, target_speed_by_run(records, hosts), earlier) + "\n")
    plot(rows, out / "tradeoff.png", f"{title}, {rows[0].problems} problems")
    for e in earlier:
        plot(e.rows, out / f"tradeoff-judge-{e.judge[:8]}.png",
             f"{title}, judge {e.judge[:8]}, {e.problems} problems")
    return rows
