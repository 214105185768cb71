"""Judge modes against the training-free rules, pair by pair (evaluation/rivals.py and
scripts/judge_against_rivals.py), on records made by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autojudge.evaluation.rivals import against_rivals, rivals_table
from autojudge.evaluation.rows import summarize
from autojudge.evaluation.statistics import paired_accuracy_difference
from autojudge.runfiles import append_record

SCRIPT = Path(__file__).parents[1] / "scripts" / "judge_against_rivals.py"


def record(mode, problem, correct, new_tokens=10, cycles=2, run="r", judge=None):
    return {"mode": mode, "problem": problem, "run": run, "correct": correct, "new_tokens": new_tokens,
            "cycles": cycles, "seconds": 1.0, "accepted_mismatches": 0, "judge": judge}


def test_a_judge_mode_meets_a_rival_on_the_problems_both_decoded_only():
    # The judge decoded problems 0-3, fly 2-5: they share 2 and 3. What either decoded
    # alone is far off (wrong, 1 token a cycle or 100), so it would show if it counted.
    records = [record("judge@0.9", 0, False, 10, 10), record("judge@0.9", 1, False, 10, 10),
               record("judge@0.9", 2, True, 30, 2), record("judge@0.9", 3, True, 10, 2),
               record("fly", 2, True, 20, 2), record("fly", 3, False, 20, 4),
               record("fly", 4, True, 100, 1), record("fly", 5, True, 100, 1)]
    [row] = against_rivals(records, ["judge@0.9"], ["fly"])
    assert (row.mode, row.rival, row.problems) == ("judge@0.9", "fly", 2)
    assert row.accuracy == 1.0 and row.rival_accuracy == 0.5
    assert row.tokens_per_cycle == pytest.approx(40 / 4)  # (30 + 10) / (2 + 2)
    assert row.rival_tokens_per_cycle == pytest.approx(40 / 6)  # (20 + 20) / (2 + 4)
    assert row.ratio == pytest.approx(10 / (40 / 6))
    shared = [r for r in records if r["problem"] in (2, 3)]
    judged = [r for r in shared if r["mode"] == "judge@0.9"]
    fly = [r for r in shared if r["mode"] == "fly"]
    assert (row.difference, row.low, row.high) == paired_accuracy_difference(judged, fly)
    assert row.difference == 0.5 and row.low < 0 < 0.5 < row.high  # one problem of two: a wide interval


def test_the_difference_and_its_interval_are_the_paired_ones_problem_by_problem():
    # 40 problems, each mode right on 30: unpaired, no difference; paired, the judge is
    # right where the rival is wrong on 10, and the other way round on 10.
    judge = [record("judge@0.95", p, p % 4 != 0) for p in range(40)]
    rival = [record("typical", p, p % 4 != 1) for p in range(40)]
    [row] = against_rivals(rival + judge, ["judge@0.95"], ["typical"])  # order of modes in the file: no matter
    assert row.problems == 40
    assert (row.difference, row.low, row.high) == paired_accuracy_difference(judge, rival)
    assert row.difference == 0.0 and row.low < -0.1 and row.high > 0.1
    # Every mode against every rival, modes outer; a rival with no problem in common says so.
    rows = against_rivals(judge + rival, ["judge@0.95"], ["typical", "fly"])
    assert [(r.rival, r.problems) for r in rows] == [("typical", 40), ("fly", 0)]
    assert rows[1].difference is None and rows[1].tokens_per_cycle is None and rows[1].ratio is None


def test_a_problem_decoded_in_several_runs_counts_the_record_the_report_counts():
    # The judge decoded problem 0 twice: right in run "a", then wrong in run "b" with
    # other tokens. The report counts the latest; so must the comparison.
    records = [record("judge@0.8", 0, True, 10, 5, run="a"), record("fly", 0, True, 10, 2, run="a"),
               record("judge@0.8", 1, True, 12, 3, run="a"), record("fly", 1, False, 12, 2, run="a"),
               record("judge@0.8", 0, False, 40, 2, run="b")]
    [row] = against_rivals(records, ["judge@0.8"], ["fly"])
    report = {r.mode: r for r in summarize(records, ["judge@0.8", "fly"])}
    assert row.problems == report["judge@0.8"].problems == 2
    assert row.accuracy == report["judge@0.8"].accuracy == 0.5
    assert row.tokens_per_cycle == report["judge@0.8"].mean_accepted == pytest.approx(52 / 5)
    assert row.rival_tokens_per_cycle == report["fly"].mean_accepted
    assert row.difference == report["judge@0.8"].accuracy - report["fly"].accuracy == 0.0


def test_the_table_reads_as_the_reports_tables_do():
    records = [record("judge@0.9", p, p != 0, 30, 2) for p in range(4)]
    records += [record("fly", p, p > 1, 20, 2) for p in range(4)]
    text = rivals_table(against_rivals(records, ["judge@0.9"], ["fly"]))
    lines = text.splitlines()
    assert lines[0] == ("| judge mode | rival | problems | judge accuracy | rival accuracy | "
                        "judge minus rival (95% interval) | tokens/cycle judge | rival | ratio |")
    assert lines[1] == "|" + "---|" * 9
    assert lines[2].startswith("| judge@0.9 | fly | 4 | 75.0% | 50.0% | +25.0 pt (")
    assert lines[2].endswith(" | 15.00 | 10.00 | 1.50x |")


def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])


def test_the_script_compares_one_judges_records_and_refuses_in_one_line(tmp_path):
    # Judge "new" (the report's) decoded problems 0-1; an earlier judge "old" 0-2.
    records = [record("fly", p, True) for p in range(3)]
    records += [record("judge@0.9", p, p == 0, judge="old") for p in range(3)]
    records += [record("judge@0.9", p, True, judge="new") for p in range(2)]
    for r in records:
        append_record(tmp_path / "records.jsonl", r)
    (tmp_path / "summary.json").write_text('{"meta": {"judge": "new"}, "rows": []}')
    done = run_script("--run", str(tmp_path), "--rivals", "fly", "--out", str(tmp_path / "t.md"))
    assert done.returncode == 0, done.stderr
    assert "| judge@0.9 | fly | 2 | 100.0% | 100.0% | +0.0 pt" in (tmp_path / "t.md").read_text()
    earlier = run_script("--run", str(tmp_path), "--rivals", "fly", "--judge", "ol")
    assert "| judge@0.9 | fly | 3 | 33.3% | 100.0% | -66.7 pt" in earlier.stdout
    for args, reason in [(["--run", str(tmp_path / "absent")], "no report directory"),
                         (["--run", str(tmp_path), "--modes", "judge@0.5"], "mode 'judge@0.5' has no records")]:
        refused = run_script(*args)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith(f"judge_against_rivals: {reason}") and refused.stderr.count("\n") == 1
