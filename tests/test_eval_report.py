"""The evaluation report: its statistics, speed ratios, tables and plot, from records."""

from __future__ import annotations

import csv
import json
import re

import pytest

from autojudge.evaluation.render import markdown_table
from autojudge.evaluation.report import write_report
from autojudge.evaluation.rows import Machines, operating_point, summarize
from autojudge.evaluation.statistics import paired_difference, problems_to_resolve, wilson
from autojudge.runfiles import append_record, read_records


def test_speed_ratios_pair_records_measured_in_the_same_run():
    def record(mode, problem, run, seconds):
        return {"mode": mode, "problem": problem, "run": run, "correct": True, "new_tokens": 10,
                "cycles": 5, "seconds": seconds, "accepted_mismatches": 0}

    # Run "slow": every mode on a slow machine. Run "fast", on a machine twice as fast:
    # the judge again, with its baselines. Run "late": the judge once more on problem 3,
    # without baselines.
    records = [record(m, p, "slow", s) for p in range(4)
               for m, s in (("target", 1.0), ("exact", 2.0), ("topk:2", 1.0), ("judge:0.5", 1.0))]
    records += [record(m, p, "fast", s) for p in range(4)
                for m, s in (("target", 0.5), ("exact", 1.0), ("judge:0.5", 0.25))]
    records.append(record("judge:0.5", 3, "late", 0.1))
    rows = {r.mode: r for r in summarize(records, ["target", "exact", "topk:2", "judge:0.5"])}
    # topk:2 runs as fast as the target of its own (slow) run, not half as fast as the
    # latest, fast target.
    assert rows["topk:2"].against_target.speed == pytest.approx(1.0)
    assert rows["topk:2"].against_exact.speed == pytest.approx(2.0)
    assert rows["topk:2"].against_target.speed_problems == 4
    # The judge's latest records: runs fast (problems 0-2) and late (problem 3, no baseline).
    assert rows["judge:0.5"].against_target.speed == pytest.approx(2.0)
    assert rows["judge:0.5"].against_target.speed_problems == 3
    # Its tok/s, were the three runs one machine: run fast's 30 tokens in 0.75 s and run
    # late's 10 in 0.1 s, each run counting by its records: (3 x 40 + 1 x 100) / 4.
    one_machine = Machines({"slow": "m", "fast": "m", "late": "m"}, unknown_runs=0)
    one = {r.mode: r for r in summarize(records, ["target", "exact", "topk:2", "judge:0.5"], one_machine)}
    assert one["judge:0.5"].tokens_per_second == pytest.approx(55.0)
    # Not knowing the machines of the runs, the report gives no tok/s at all.
    assert rows["judge:0.5"].tokens_per_second is None and rows["judge:0.5"].speed_by_machine == ()
    table = markdown_table(list(rows.values()))
    assert "| 2.00x (3/4) | 4.00x (3/4) |" in table and "more than one run" in table
    # Records from before runs were recorded (no "run") count as one run.
    legacy = [{k: v for k, v in r.items() if k != "run"} for r in records[:16]]
    legacy_rows = summarize(legacy, ["target", "topk:2"])
    assert legacy_rows[1].against_target.speed == pytest.approx(1.0) and legacy_rows[1].runs == "unnamed"
    assert "more than one run" not in markdown_table(legacy_rows)


def test_runs_on_machines_of_different_speeds_count_by_their_problems():
    def record(mode, problem, run, seconds):
        return {"mode": mode, "problem": problem, "run": run, "correct": True, "new_tokens": 10,
                "cycles": 5, "seconds": seconds, "accepted_mismatches": 0}

    # Run "fast": 3 problems where exact runs as fast as the target. Run "slow", on a
    # machine three times slower: 1 problem where exact runs at half the target's speed.
    records = [record(m, p, "fast", 1.0) for p in range(3) for m in ("target", "exact")]
    records += [record("target", 3, "slow", 3.0), record("exact", 3, "slow", 6.0)]
    rows = {r.mode: r for r in summarize(records, ["target", "exact"])}
    # By problems: (3 x 1.0 + 1 x 0.5) / 4. Pooling the seconds would give 40/9 over 40/6,
    # 0.67: the slow run's one problem counting as three.
    assert rows["exact"].against_target.speed == pytest.approx(0.875)
    assert rows["exact"].against_target.speed_problems == 4


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in `text`, each as its rows, {header: cell}."""
    tables = []
    for block in re.findall(r"(?:^\|.*\|\n?)+", text, re.M):
        header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in block.splitlines()]
        tables.append([dict(zip(header, cells)) for cells in rows])
    return tables


def test_two_hosts_tokens_per_second_never_share_a_column(tmp_path):
    def record(mode, problem, run, seconds):
        return {"mode": mode, "problem": problem, "run": run, "correct": True, "new_tokens": 10,
                "cycles": 5 if mode == "target" else 2, "seconds": seconds, "accepted_mismatches": 0}

    # The same modes on two hosts, one three times faster: the ratios agree (exact at half
    # the target's speed on both), the tokens/s do not. Two more runs named no host: they
    # may be any machines, the two hosts' or others.
    records = [record(m, p, "run-a", s) for p in range(2) for m, s in (("target", 1.0), ("exact", 2.0))]
    records += [record(m, p, "run-b", s / 3) for p in range(2, 5) for m, s in (("target", 1.0), ("exact", 2.0))]
    records += [record(m, p, run, s) for p, run in ((5, "run-c"), (6, "run-d"))
                for m, s in (("target", 1.0), ("exact", 2.0))]
    for run, host in (("run-a", "AMD EPYC, 2 cores, AVX2"), ("run-b", "AMD EPYC, 2 cores, AVX-512")):
        append_record(tmp_path / "runs.jsonl", {"run": run, "host": host, "parallel": 1})
    rows = {r.mode: r for r in write_report(records, ["target", "exact"], tmp_path, title="t", meta={})}
    assert rows["exact"].against_target.speed == pytest.approx(0.5)

    tables = markdown_tables((tmp_path / "summary.md").read_text())
    speed_columns = {header for table in tables for header in table[0] if "tok/s" in header}
    assert speed_columns == {"tok/s on AMD EPYC, 2 cores, AVX2", "tok/s on AMD EPYC, 2 cores, AVX-512"}
    [by_host] = [table for table in tables if "tok/s on AMD EPYC, 2 cores, AVX2" in table[0]]
    assert {row["mode"]: (row["tok/s on AMD EPYC, 2 cores, AVX2"], row["tok/s on AMD EPYC, 2 cores, AVX-512"])
            for row in by_host} == {"target": ("10.00 (2)", "30.00 (3)"), "exact": ("5.00 (2)", "15.00 (3)")}
    text = (tmp_path / "summary.md").read_text()
    assert "Left out of tokens/s, their machines unknown: 2 runs that named no host." in text
    # Nor do the summary's JSON and CSV hold a tok/s of no machine, or of run-c's and run-d's.
    by_host = {"tokens_per_second on AMD EPYC, 2 cores, AVX2", "tokens_per_second on AMD EPYC, 2 cores, AVX-512"}
    for row in json.loads((tmp_path / "summary.json").read_text())["rows"]:
        assert {key for key in row if "tokens_per_second" in key} == by_host
    with open(tmp_path / "summary.csv") as handle:
        assert {key for key in next(csv.reader(handle)) if "tokens_per_second" in key} == by_host
    # One run that named no host is one machine all the same: its figures stand alone.
    alone = tmp_path / "alone"
    alone.mkdir()
    write_report(records[-4:-2], ["target", "exact"], alone, title="t", meta={})
    [table] = [t for t in markdown_tables((alone / "summary.md").read_text()) if "tok/s on run run-c" in str(t[0])]
    assert [row["tok/s on run run-c (host not recorded)"] for row in table] == ["10.00 (1)", "5.00 (1)"]


def test_speed_ratios_leave_out_records_whose_clock_ran_without_them():
    def record(mode, problem, seconds, cpu_seconds):
        return {"mode": mode, "problem": problem, "run": "r", "correct": True, "new_tokens": 10, "cycles": 5,
                "seconds": seconds, "cpu_seconds": cpu_seconds, "accepted_mismatches": 0}

    records = [record("target", p, 1.0, 0.98) for p in range(3)]
    # Problem 0's exact decode was paused for 600 s. Problem 1's ran at 1.5x its CPU time, the
    # limit; problem 2's at 3x, but only 1 s longer than its CPU time (a hiccup, not a stall).
    records += [record("exact", 0, 600.5, 0.5), record("exact", 1, 3.0, 2.0), record("exact", 2, 1.5, 0.5)]
    row = {r.mode: r for r in summarize(records, ["target", "exact"])}["exact"]
    assert row.tokens_per_second == pytest.approx(20 / 4.5)  # the one run is one machine
    assert row.against_target.speed == pytest.approx((20 / 4.5) / 10) and row.against_target.speed_problems == 2
    # A stalled baseline takes its problem out of the ratio too.
    records[0] = record("target", 0, 5.0, 1.0)
    records[3] = record("exact", 0, 0.5, 0.5)
    row = {r.mode: r for r in summarize(records, ["target", "exact"])}["exact"]
    assert row.against_target.speed_problems == 2 and row.tokens_per_second == pytest.approx(30 / 5.0)


def test_the_report_draws_modes_without_a_parameter(tmp_path):
    # "fly" runs its default arguments; the plot once labelled points by splitting on ":".
    records = [{"mode": m, "problem": p, "run": "r", "correct": p % 2 == 0, "new_tokens": 10,
                "cycles": c, "seconds": 1.0, "accepted_mismatches": 0}
               for p in range(3) for m, c in (("target", 10), ("exact", 4), ("fly", 2))]
    rows = write_report(records, ["target", "exact", "fly"], tmp_path, title="t", meta={})
    assert [r.mean_accepted for r in rows] == [1.0, 2.5, 5.0]
    assert (tmp_path / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "summary.md").read_text()
    assert "Operating point (at most 1 point below exact): fly," in text
    # Three problems cannot tell 1 point: the report says how many could.
    paired = rows[2].paired_with_exact
    needed = problems_to_resolve(paired.ci_low, paired.ci_high, 3)
    assert needed > 1000 and f"would take about {round(needed, 2 - len(str(needed))):,} problems" in text
    # FLy now fails one problem in three that exact solves: no operating point, and the report says so.
    lossy = [dict(r, correct=False) if r["mode"] == "fly" and r["problem"] == 0 else r for r in records]
    write_report(lossy, ["target", "exact", "fly"], tmp_path, title="t", meta={})
    assert "Operating point (at most 1 point below exact): none" in (tmp_path / "summary.md").read_text()


def test_the_plot_draws_a_judge_with_lookahead_as_its_own_family():
    from autojudge.evaluation.plot import method_family
    names = ("judge@0.9", "judge:0.3", "judge@0.7:4", "llamacpp/judge:0.3:4/w8", "fly:0.2:3")
    assert [method_family(m) for m in names] == ["judge", "judge", "judge+lookahead", "judge+lookahead", "fly"]


def test_plot_labels_of_points_side_by_side_do_not_overlap(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autojudge.evaluation.plot import _label_points
    # Three modes of different families at nearly the same place, as judge@0.6, FLy and
    # typical acceptance sit on GSM8K.
    records = [{"mode": m, "problem": p, "run": "r", "correct": p < k, "new_tokens": t, "cycles": 10,
                "seconds": 1.0, "accepted_mismatches": 0}
               for p in range(10) for m, t, k in (("exact", 100, 5), ("judge:0.3", 195, 5), ("fly", 200, 5),
                                                  ("typical", 205, 5))]
    rows = [r for r in summarize(records, ["exact", "judge:0.3", "fly", "typical"]) if r.mode != "exact"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.plot([r.mean_accepted for r in rows] + [1, 40], [100 * r.accuracy for r in rows] + [0, 100], "o")
    _label_points(ax, rows)
    fig.canvas.draw()
    boxes = [text.get_window_extent() for text in ax.texts]
    assert len(boxes) == 3
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


def test_torn_last_line_is_dropped_and_appends_stay_whole(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"a": 1})
    append_record(path, {"a": 2})
    with open(path, "a") as handle:
        handle.write('{"a": 3, "b"')  # a kill mid-write
    assert read_records(path) == [{"a": 1}, {"a": 2}]
    append_record(path, {"a": 4})
    assert read_records(path) == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_wilson_interval_and_operating_point():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    records = []
    for problem in range(100):
        for mode, correct_below, tokens in (("exact", 60, 4.0), ("judge:0.1", 60, 6.0),
                                            ("judge:0.3", 59, 8.0), ("judge:0.5", 50, 12.0)):
            records.append({"mode": mode, "problem": problem, "correct": problem < correct_below,
                            "new_tokens": int(tokens * 10), "cycles": 10, "seconds": 1.0,
                            "accepted_mismatches": 0})
    rows = summarize(records, ["exact", "judge:0.1", "judge:0.3", "judge:0.5"])
    best = operating_point(rows)  # 1 point below exact is allowed, 10 points is not
    assert best.mode == "judge:0.3" and best.against_exact.accepted == pytest.approx(2.0)
    by_mode = {r.mode: r for r in rows}
    # judge:0.5 fails exactly the 10 problems 50-59 that exact decoding solves: a paired
    # difference of -10 points, whose interval excludes 0 although the two accuracies'
    # own intervals (50% and 60%, +-10 points each) overlap.
    assert by_mode["judge:0.5"].accuracy_vs_exact == pytest.approx(-0.10)
    assert by_mode["judge:0.5"].paired_with_exact.ci_high < 0
    assert by_mode["exact"].ci_low < by_mode["judge:0.5"].ci_high
    assert by_mode["judge:0.1"].accuracy_vs_exact == 0.0


def test_paired_difference_matches_the_published_interval():
    # Cavo et al. 2012, the worked example of Fagerland, Lydersen & Laake, "Statistical
    # Analysis of Contingency Tables", chapter 8: -0.0621 (95% CI -0.1186 to -0.0046).
    difference, low, high = paired_difference(59, 6, 16, 80)
    assert (difference, low, high) == pytest.approx((-0.0621, -0.1186, -0.0046), abs=1e-4)
    # Swapping the two methods mirrors the interval.
    assert paired_difference(59, 16, 6, 80) == pytest.approx((0.0621, 0.0046, 0.1186), abs=1e-4)
    # Positively correlated results make the paired interval narrower than the unpaired one.
    paired = paired_difference(55, 5, 5, 35)
    unpaired = paired_difference(36, 24, 24, 16)  # same accuracies (60%), independent results
    assert paired[0] == unpaired[0] == 0.0
    assert paired[2] - paired[1] < (unpaired[2] - unpaired[1]) * 0.6


def test_problems_to_resolve_one_point_matches_the_interval_at_that_size():
    # 18 of 100 answers changed; the same shares on the estimated number of problems
    # give a paired interval 1 point either side.
    _, low, high = paired_difference(40, 10, 8, 42)
    needed = problems_to_resolve(low, high, 100)
    k = needed / 100
    _, low, high = paired_difference(*(round(k * count) for count in (40, 10, 8, 42)))
    assert 0.0095 < (high - low) / 2 < 0.0105
    # An interval already narrow enough needs no more problems than it has.
    assert problems_to_resolve(-0.005, 0.005, 300) == 300


def test_the_report_counts_cut_answers_and_the_noise_floor_of_the_lossless_modes(tmp_path):
    # Four problems: exact's answer differs from the target's on one (the runtime's
    # rounding), Top-K's on two; one Top-K answer stopped at the budget.
    def record(mode, problem, answer, stop="eos"):
        return {"mode": mode, "problem": problem, "run": "r", "correct": answer == "1", "answer": answer,
                "new_tokens": 10, "cycles": 5, "seconds": 1.0, "accepted_mismatches": 0, "stop_reason": stop}

    records = [record("target", p, "1") for p in range(4)]
    records += [record("exact", p, "2" if p == 3 else "1") for p in range(4)]
    records += [record("topk:2", p, "3" if p in (0, 1) else ("2" if p == 3 else "1"),
                       "length" if p == 0 else "eos") for p in range(4)]
    rows = {r.mode: r for r in write_report(records, ["target", "exact", "topk:2"], tmp_path, title="t", meta={})}
    assert rows["topk:2"].cut_fraction == 0.25 and rows["exact"].cut_fraction == 0.0
    assert rows["topk:2"].paired_with_exact.answer_differs == 0.5
    assert rows["target"].paired_with_exact.answer_differs == 0.25
    summary = (tmp_path / "summary.md").read_text()
    assert "| 50.0% | 25.0% |" in summary  # Top-K: answers changed, answers cut
    assert "Noise floor: the two lossless modes (target alone, exact) give different answers on 25.0%" in summary


def test_a_report_is_rendered_again_from_its_run_directory_alone(tmp_path):
    from autojudge.evaluation.rerender import rerender

    def record(mode, problem, judge=None, correct=True):
        return {"mode": mode, "problem": problem, "run": "r", "correct": correct, "new_tokens": 10,
                "cycles": 2 if mode != "target" else 10, "seconds": 1.0, "accepted_mismatches": 0, "judge": judge}

    # The current judge "new" on two problems; an earlier judge "old" had decoded three.
    records = [record(m, p) for p in range(3) for m in ("target", "exact")]
    records += [record("judge:0.5", p, "new") for p in range(2)]
    records += [record("judge:0.5", p, "old", correct=p != 0) for p in range(3)]
    for r in records:
        append_record(tmp_path / "records.jsonl", r)
    meta = {"task": "gsm8k", "split": "eval", "window": 8, "judge": "new"}
    modes = ["target", "exact", "judge:0.5"]
    current = [r for r in records if r["judge"] != "old"]
    written = write_report(current, modes, tmp_path, title="gsm8k eval, window 8", meta=meta,
                           judged_earlier={"old": [r for r in records if r["judge"] == "old"]})
    report = {name: (tmp_path / name).read_text() for name in ("summary.md", "summary.json", "summary.csv")}
    for name in report:
        (tmp_path / name).write_text("stale")
    (tmp_path / "summary.json").write_text(report["summary.json"])  # it names the modes and the judge
    assert rerender(tmp_path) == written
    assert {name: (tmp_path / name).read_text() for name in report} == report
    assert written[2].problems == 2 and "### Earlier judge old" in report["summary.md"]
