"""An evaluation's report: summary.json, summary.csv, summary.md and tradeoff.png.

The work is split by kind, data flowing one way: statistics.py (the numbers) ->
rows.py (one typed summary row per mode) -> render.py (the text) and plot.py (the plot).
"""

from __future__ import annotations

from pathlib import Path

from autojudge.evaluation.methods import Method, parse_methods
from autojudge.evaluation.plot import plot
from autojudge.evaluation.render import summary_json, summary_markdown, write_csv
from autojudge.evaluation.rivals import against_rivals, rivals_table
from autojudge.evaluation.rows import Machines, ModeSummary, earlier_judges, operating_point, summarize
from autojudge.runfiles import read_records


def report_title(meta: dict, methods: list[Method]) -> str:
    """The plot's title: task and split, and the window unless every method names its own."""
    return f"{meta['task']} {meta['split']}" + ("" if all(m.window for m in methods) else f", window {meta['window']}")


# The training-free rules a judge mode has to beat (docs/judge/README.md).
RIVAL_POLICIES = ("fly", "typical")


def rivals_section(records: list[dict], modes: list[str]) -> str:
    """Each judge mode against each training-free rule of `modes`, on the problems those
    two decoded (the table above keeps only the problems every mode finished); "" when
    the report has no judge mode or no rule."""
    methods = parse_methods(modes)
    judged = [m.name for m in methods if m.needs_judge]
    rivals = [m.name for m in methods if m.mode is not None and m.mode.policy in RIVAL_POLICIES]
    if not judged or not rivals:
        return ""
    return ("\n\n### Judge modes against the training-free rules\n\n"
            "Each judge mode against each rule on the problems the two decoded: the paired accuracy "
            "difference, judge minus rule, with its 95% interval (Newcombe), and the tokens each keeps per "
            "cycle on those problems.\n\n" + rivals_table(against_rivals(records, judged, rivals)))


def write_report(records: list[dict], modes: list[str], out: Path, *, title: str, meta: dict,
                 judged_earlier: dict[str, list[dict]] | None = None) -> list[ModeSummary]:
    """The report on `records`; `judged_earlier`, {fingerprint: judge-mode records} of
    judges since retrained, adds each one's comparison (summary.md, summary.json and a
    plot tradeoff-judge-<fingerprint>.png of its own)."""
    # runs.jsonl is absent for evaluations begun before runs named their host.
    hosts = {r["run"]: r["host"] for r in read_records(out / "runs.jsonl")}
    every_record = records + [r for judged in (judged_earlier or {}).values() for r in judged]
    machines = Machines.of(every_record, hosts)
    rows = summarize(records, modes, machines)
    best = operating_point(rows)
    earlier = earlier_judges(records, modes, judged_earlier or {}, machines)
    (out / "summary.json").write_text(summary_json(rows, best, meta, earlier))
    write_csv(rows, out / "summary.csv")
    versus = rivals_section(records, modes)
    (out / "summary.md").write_text(summary_markdown(rows, best, machines, earlier) + versus + "\n")
    plot(rows, out / "tradeoff.png", f"{title}, {rows[0].problems} problems")
    for e in earlier:
        plot(e.rows, out / f"tradeoff-judge-{e.judge[:8]}.png",
             f"{title}, judge {e.judge[:8]}, {e.problems} problems")
    return rows
