"""Judge decoding modes and the evaluation harness, on tiny random models."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from autojudge.decoding.modes import DecodingOptions, decode, parse_mode
from autojudge.errors import AutojudgeError
from autojudge.evaluation.render import markdown_table, summary_markdown
from autojudge.evaluation.report import write_report
from autojudge.evaluation.rows import operating_point, summarize, target_speed_by_run
from autojudge.evaluation.run import run_eval
from autojudge.evaluation.statistics import paired_difference, problems_to_resolve, wilson
from autojudge.judge.model import Judge
from autojudge.judge.train import load_borrowed, load_mined, train_judge
from autojudge.mining.bench import bench_mining
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mine
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import append_record, read_records
from tests.toy_task import RejoiningToyTask, SettlingToyTask, ToyTask, tiny_pair


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


def constant_judge(pair, p_important: float, kind: type[Judge] = Judge) -> Judge:
    """A judge that fits `pair` and says P(important) = p_important everywhere."""
    d, t = pair.draft.hidden_size, pair.target.hidden_size
    bias = float(torch.logit(torch.tensor(p_important)))
    meta = {"pair": pair.describe(), "features": "both", "hidden": {"draft": d, "target": t},
            "validation_auc": 0.5, "thresholds": [{"threshold": 0.3, "recall": 1.0, "accept_rate": 0.0},
                                                  {"threshold": 0.7, "recall": 0.0, "accept_rate": 1.0}]}
    return kind(torch.zeros(d + t), torch.ones(d + t), torch.zeros(d + t), bias, meta)


class StallingJudge(Judge):
    """Waits at every call without using the CPU, as a decode paused mid-way (SIGSTOP) or
    sharing its core with another job waits: its wall clock runs on, its CPU time does not."""

    def prob_important(self, parts):
        time.sleep(1.1)
        return super().prob_important(parts)


def test_judge_mode_names_parse_and_bad_ones_are_refused(pair):
    by_threshold, by_recall = parse_mode("judge:0.2"), parse_mode("judge@0.9")
    assert (by_threshold.by_recall, by_threshold.values[0]) == (False, 0.2)
    assert (by_recall.by_recall, by_recall.values[0]) == (True, 0.9)
    for bad in ("judge:", "judge:x", "judge:1.5", "judge@-1"):
        with pytest.raises(ValueError):
            parse_mode(bad)
    with pytest.raises(ValueError, match="needs a judge"):
        parse_mode("judge:0.1").policy_for()
    judge = constant_judge(pair, 0.5)
    assert parse_mode("judge@1.0").policy_for(judge).threshold == 0.3  # the threshold table's recall-1 row
    assert parse_mode("judge@0.0").policy_for(judge).threshold == 0.7


def test_judge_mode_spans_lossless_to_accepting_every_draft_token(pair):
    task = ToyTask()
    ids = chat_prompt_ids(pair.tokenizer, task.messages(task.load("all")[0]))
    target = decode(pair, ids, "target", DecodingOptions(max_new_tokens=40))
    judge = constant_judge(pair, 0.5)
    strict = decode(pair, ids, "judge:0.5", DecodingOptions(window=8, max_new_tokens=40), judge=judge)
    assert strict.token_ids == target.token_ids and strict.stats.accepted_mismatches == 0
    loose = decode(pair, ids, "judge:0.6", DecodingOptions(window=8, max_new_tokens=40), judge=judge)
    assert loose.stats.accepted_mismatches > 0
    assert loose.stats.mean_accepted > strict.stats.mean_accepted


def test_eval_writes_every_report_and_resumes_without_repeating(pair, tmp_path, capsys):
    task, out = ToyTask(), tmp_path / "eval"
    modes = ["target", "exact", "topk:2", "judge:0.5", "judge:0.6"]
    judge = constant_judge(pair, 0.5)
    rows = run_eval(pair, task, "all", modes, out, DecodingOptions(window=6, max_new_tokens=24), limit=3, judge=judge)
    records = read_records(out / "records.jsonl")
    assert len(records) == 3 * len(modes)
    by = {(r["mode"], r["problem"]): r for r in records}
    for problem in range(3):  # lossless modes reproduce the target's own output
        assert by["exact", problem]["token_ids"] == by["target", problem]["token_ids"]
        assert by["judge:0.5", problem]["token_ids"] == by["target", problem]["token_ids"]
    assert [r.mode for r in rows] == modes and all(r.problems == 3 for r in rows)
    assert [r.threshold for r in rows] == [None, None, None, 0.5, 0.6]
    summary = {r.mode: r for r in rows}
    assert summary["target"].mean_accepted == 1.0
    assert summary["judge:0.6"].mean_accepted > summary["exact"].mean_accepted
    assert summary["exact"].accuracy_vs_exact is None  # exact is the reference
    assert summary["judge:0.5"].accuracy_vs_exact == 0.0  # lossless: the same answers
    for name in ("summary.json", "summary.csv", "summary.md", "tradeoff.png"):
        assert (out / name).stat().st_size > 0
    assert "earlier_judges" not in json.loads((out / "summary.json").read_text())  # one judge so far
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "summary.csv") as handle:
        assert [row["mode"] for row in csv.DictReader(handle)] == modes

    # A rerun with one more problem decodes only that problem.
    run_eval(pair, task, "all", modes, out, DecodingOptions(window=6, max_new_tokens=24), limit=4, judge=judge)
    records = read_records(out / "records.jsonl")
    assert len(records) == 4 * len(modes)
    assert len({(r["mode"], r["problem"]) for r in records}) == len(records)
    # Other settings on the same directory are refused.
    with pytest.raises(Exception, match="other settings"):
        run_eval(pair, task, "all", modes, out, DecodingOptions(window=7, max_new_tokens=24), limit=4, judge=judge)
    # Another judge (say, retrained): the judge modes are decoded again, with the speed
    # baselines on the same problems in the same run; topk:2 is kept. The report counts
    # only the new judge's records. It reads a middle layer of the target: that feeds the
    # judge and changes no token, so the evaluation resumes.
    pair.target.read_features_from(1)
    try:
        retrained = constant_judge(pair, 0.65)  # calls every mismatch important at 0.6 too
        capsys.readouterr()
        rows = run_eval(pair, task, "all", modes, out, DecodingOptions(window=6, max_new_tokens=24),
                        limit=4, judge=retrained)
    finally:
        pair.target.read_features_from(None)
    assert retrained.feature_layer == 1 and "feature_layer" not in json.loads((out / "meta.json").read_text())
    assert "judge:0.5, judge:0.6 are decoded again" in capsys.readouterr().out
    records = read_records(out / "records.jsonl")
    new = records[4 * len(modes):]
    assert sorted((r["mode"], r["problem"]) for r in new) == sorted(
        (m, p) for m in ("target", "exact", "judge:0.5", "judge:0.6") for p in range(4))
    assert {r["judge"] for r in new if r["mode"].startswith("judge")} == {retrained.fingerprint()}
    assert retrained.fingerprint() != judge.fingerprint()
    assert len({r["run"] for r in new}) == 1
    assert new[0]["run"] not in {r["run"] for r in records[:4 * len(modes)]}
    # Each run that decoded something named its machine once; the report-only calls below add none.
    runs = read_records(out / "runs.jsonl")
    assert [r["run"] for r in runs] == list(dict.fromkeys(r["run"] for r in records))
    assert all(f"{os.cpu_count()} cores" in r["host"] for r in runs)
    assert all(row.problems == 4 and row.against_target.speed_problems == 4 for row in rows)
    first_runs = ", ".join(sorted({r["run"] for r in records[:4 * len(modes)]}))  # the first run and its rerun
    assert {row.mode: row.runs for row in rows} == {"target": new[0]["run"], "exact": new[0]["run"],
                                                           "topk:2": first_runs, "judge:0.5": new[0]["run"],
                                                           "judge:0.6": new[0]["run"]}
    # The earlier judge's comparison stays in the report, from its own records: until a
    # retrained judge has caught up, it stands on more problems than the current one.
    summary = json.loads((out / "summary.json").read_text())
    [earlier] = summary["earlier_judges"]
    old_records = {(r["mode"], r["problem"]): r for r in records[:4 * len(modes)]}
    assert earlier["judge"] == judge.fingerprint() and earlier["problems"] == 4
    by_mode = {row["mode"]: row for row in earlier["rows"]}
    for mode in ("judge:0.5", "judge:0.6"):
        assert by_mode[mode]["runs"] == first_runs
        assert by_mode[mode]["accuracy"] == sum(old_records[mode, p]["correct"] for p in range(4)) / 4
    assert f"### Earlier judge {judge.fingerprint()[:12]}" in (out / "summary.md").read_text()
    # And, mode by mode, the current judge against it on the problems both decoded.
    heads = {h["mode"]: h for h in earlier["head_to_head"]}
    new_records = {(r["mode"], r["problem"]): r for r in new}
    for mode in ("judge:0.5", "judge:0.6"):
        assert heads[mode]["problems"] == 4
        assert heads[mode]["accuracy"] == sum(new_records[mode, p]["correct"] for p in range(4)) / 4
        assert heads[mode]["earlier_accuracy"] == sum(old_records[mode, p]["correct"] for p in range(4)) / 4
        assert heads[mode]["difference"]["accuracy_difference"] == pytest.approx(
            heads[mode]["accuracy"] - heads[mode]["earlier_accuracy"])
    # At 0.6 the earlier judge kept every mismatch and the retrained one keeps none: the
    # tokens per cycle fall to exact decoding's; at 0.5 both were lossless.
    assert heads["judge:0.6"]["mean_accepted"] == pytest.approx(
        sum(new_records["exact", p]["new_tokens"] for p in range(4)) / sum(new_records["exact", p]["cycles"]
                                                                          for p in range(4)))
    assert heads["judge:0.6"]["mean_accepted"] < heads["judge:0.6"]["earlier_mean_accepted"]
    assert heads["judge:0.5"]["mean_accepted"] == heads["judge:0.5"]["earlier_mean_accepted"]
    assert "The current judge against it, mode by mode" in (out / "summary.md").read_text()
    assert (out / f"tradeoff-judge-{judge.fingerprint()[:8]}.png").read_bytes()[:4] == b"\x89PNG"

    # A report from a judge that decoded none of the judge records would compare no
    # problem at all: refused, and the report on disk stays as it is.
    report = (out / "summary.json").read_bytes()
    with pytest.raises(AutojudgeError, match="judge:0.5, judge:0.6 were decoded by another judge"):
        run_eval(pair, task, "all", modes, out, DecodingOptions(window=6, max_new_tokens=24), limit=4,
                 judge=constant_judge(pair, 0.45), report_only=True)
    assert (out / "summary.json").read_bytes() == report
    assert run_eval(pair, task, "all", modes, out, DecodingOptions(window=6, max_new_tokens=24), limit=4, judge=judge,
                    report_only=True)[-1].problems == 4  # the first judge's records are still there
    assert len(read_records(out / "runs.jsonl")) == len(runs)

    # Killed between a problem's target and exact decodes: the rerun decodes both again,
    # so exact's speed still pairs with a target of its own run on every problem.
    baselines, out = ["target", "exact"], tmp_path / "baselines"
    run_eval(pair, task, "all", baselines, out, DecodingOptions(window=6, max_new_tokens=24), limit=2)
    records = read_records(out / "records.jsonl")
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:-1]))
    rows = run_eval(pair, task, "all", baselines, out, DecodingOptions(window=6, max_new_tokens=24), limit=2)
    resumed = read_records(out / "records.jsonl")[len(records) - 1:]
    assert [(r["mode"], r["problem"]) for r in resumed] == [("target", 1), ("exact", 1)]
    assert rows[1].against_target.speed_problems == 2


class StricterToyTask(ToyTask):
    """The toy task after a change to its scoring: nothing is correct any more."""

    def is_correct(self, text, problem):
        return False


def test_rescoring_reports_with_the_tasks_current_rules(pair, tmp_path):
    out = tmp_path / "rescore"
    rows = run_eval(pair, ToyTask(), "all", ["target"], out, DecodingOptions(window=4, max_new_tokens=16), limit=4)
    decoded = (out / "records.jsonl").read_bytes()
    assert rows[0].accuracy > 0  # the toy answers are right a third of the time: some are, here
    kept = run_eval(pair, StricterToyTask(), "all", ["target"], out, DecodingOptions(window=4, max_new_tokens=16),
                    limit=4,
                    report_only=True)
    assert kept[0].accuracy == rows[0].accuracy  # without rescore: scored as decoded
    rescored = run_eval(pair, StricterToyTask(), "all", ["target"], out, DecodingOptions(window=4, max_new_tokens=16),
                        limit=4,
                        report_only=True, rescore=True)
    assert rescored[0].accuracy == 0 and rescored[0].problems == 4
    assert (out / "records.jsonl").read_bytes() == decoded  # the records keep what was decoded


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
    # Its tok/s: run fast's 30 tokens in 0.75 s and run late's 10 in 0.1 s, each run
    # counting by its records: (3 x 40 + 1 x 100) / 4.
    assert rows["judge:0.5"].tokens_per_second == pytest.approx(55.0)
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
    assert rows["target"].tokens_per_second == pytest.approx((3 * 10.0 + 10 / 3) / 4)
    speeds = target_speed_by_run(records, {"slow": "AMD EPYC, 2 cores, AVX2"})
    assert [(s.run, s.problems, s.tokens_per_second) for s in speeds] == [("fast", 3, 10.0),
                                                                          ("slow", 1, pytest.approx(10 / 3))]
    text = summary_markdown(list(rows.values()), None, speeds)
    assert ("The target alone ran at 3.3 (run slow, 1 problem; AMD EPYC, 2 cores, AVX2) to "
            "10.0 (run fast, 3 problems) tok/s") in text
    assert "ran at" not in summary_markdown(list(rows.values()), None, speeds[:1])


def test_a_stalled_decode_is_left_out_of_the_speeds(pair, tmp_path):
    modes = ["target", "exact", "judge:0.6"]
    rows = run_eval(pair, ToyTask(), "all", modes, tmp_path, DecodingOptions(window=6, max_new_tokens=24), limit=2,
                    judge=constant_judge(pair, 0.5, kind=StallingJudge))
    records = {(r["mode"], r["problem"]): r for r in read_records(tmp_path / "records.jsonl")}
    assert all(0 < r["cpu_seconds"] for r in records.values())
    judged = [records["judge:0.6", p] for p in range(2)]
    assert all(r["seconds"] > 1.5 * r["cpu_seconds"] for r in judged)  # the judge ran at least once a decode
    judge_row = {r.mode: r for r in rows}["judge:0.6"]
    assert judge_row.tokens_per_second is None
    assert judge_row.against_target.speed is None and judge_row.against_target.speed_problems == 0
    assert judge_row.problems == 2 and judge_row.mean_accepted > 1  # still counted for everything else

    # A plain rerun leaves the stalled records alone; --retime decodes them again, with
    # their baselines, in a run of its own (same judge parameters, so the same fingerprint).
    calm_judge = constant_judge(pair, 0.5)
    run_eval(pair, ToyTask(), "all", modes, tmp_path, DecodingOptions(window=6, max_new_tokens=24), limit=2,
             judge=calm_judge)
    assert len(read_records(tmp_path / "records.jsonl")) == 6
    rows = run_eval(pair, ToyTask(), "all", modes, tmp_path, DecodingOptions(window=6, max_new_tokens=24), limit=2,
                    judge=calm_judge, retime=True)
    retimed = read_records(tmp_path / "records.jsonl")[6:]
    assert sorted((r["mode"], r["problem"]) for r in retimed) == sorted((m, p) for m in modes for p in range(2))
    assert len({r["run"] for r in retimed}) == 1 and retimed[0]["run"] != records["target", 0]["run"]
    judge_row = {r.mode: r for r in rows}["judge:0.6"]
    assert judge_row.tokens_per_second is not None and judge_row.against_target.speed_problems == 2
    # Nothing stalled is left, so a second retime decodes nothing.
    run_eval(pair, ToyTask(), "all", modes, tmp_path, DecodingOptions(window=6, max_new_tokens=24), limit=2,
             judge=calm_judge, retime=True)
    assert len(read_records(tmp_path / "records.jsonl")) == 12
    with pytest.raises(ValueError, match="single-stream"):
        run_eval(pair, ToyTask(), "all", modes, tmp_path, limit=2, judge=calm_judge, retime=True, parallel=2)


def test_speed_ratios_leave_out_records_whose_clock_ran_without_them():
    def record(mode, problem, seconds, cpu_seconds):
        return {"mode": mode, "problem": problem, "run": "r", "correct": True, "new_tokens": 10, "cycles": 5,
                "seconds": seconds, "cpu_seconds": cpu_seconds, "accepted_mismatches": 0}

    records = [record("target", p, 1.0, 0.98) for p in range(3)]
    # Problem 0's exact decode was paused for 600 s. Problem 1's ran at 1.5x its CPU time, the
    # limit; problem 2's at 3x, but only 1 s longer than its CPU time (a hiccup, not a stall).
    records += [record("exact", 0, 600.5, 0.5), record("exact", 1, 3.0, 2.0), record("exact", 2, 1.5, 0.5)]
    row = {r.mode: r for r in summarize(records, ["target", "exact"])}["exact"]
    assert row.tokens_per_second == pytest.approx(20 / 4.5)
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


def test_trained_judge_on_mined_tiny_data_drives_decoding(pair, tmp_path):
    store = mine(pair, ToyTask(), "all", str(tmp_path / "mined"), MiningOptions(max_new_tokens=40))
    assert store.records
    judge, meta = train_judge(load_mined(tmp_path / "mined"), c_grid=(1e-2, 1.0))
    judge.save(tmp_path / "judge.safetensors")
    loaded = Judge.load(tmp_path / "judge.safetensors")
    loaded.check_compatible(pair.describe(), pair.draft.hidden_size, pair.target.hidden_size)
    task = ToyTask()
    ids = chat_prompt_ids(pair.tokenizer, task.messages(task.load("all")[1]))
    result = decode(pair, ids, "judge:1.0", DecodingOptions(window=8, max_new_tokens=24), judge=loaded)
    assert result.stats.new_tokens == 24


def test_bench_mining_runs_plain_and_fast_on_the_same_problems_and_resumes(pair, tmp_path):
    out = tmp_path / "bench"
    rows = bench_mining(pair, RejoiningToyTask(), "all", 2, out, MiningOptions(max_new_tokens=24, window=0))
    plain, fast = rows
    assert plain["labels"] == fast["labels"] > 0
    assert plain["problems_alike"] == fast["problems_alike"] == 2
    assert fast["agreeing_labels"] == fast["shared_labels"] == fast["labels"]
    # A rerun with one more problem and one more method mines only what is missing.
    lines = (out / "records.jsonl").read_text().splitlines()
    rows = bench_mining(pair, RejoiningToyTask(), "all", 3, out, MiningOptions(max_new_tokens=24, window=0),
                        methods=("plain", "fast", "fast+rejoin:4"))
    added = (out / "records.jsonl").read_text().splitlines()[len(lines):]
    assert sorted((json.loads(r)["problem"], json.loads(r)["method"]) for r in added) == \
        sorted([(2, "plain"), (2, "fast")] + [(p, "fast+rejoin:4") for p in range(3)])
    assert [r["problems"] for r in rows] == [3, 3, 3]
    assert "| fast+rejoin:4 | 3 |" in (out / "summary.md").read_text()
    with pytest.raises(AutojudgeError, match="unknown regeneration method 'fast\\+rejoin:0'"):
        bench_mining(pair, RejoiningToyTask(), "all", 1, out, methods=("plain", "fast+rejoin:0"))
    with pytest.raises(AutojudgeError, match="side by side: fast is not among the methods"):
        bench_mining(pair, RejoiningToyTask(), "all", 1, out, parallel=2, methods=("plain",), side_by_side=("fast",))


def run_cli(*args, env_home):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "AUTOJUDGE_HOME": str(env_home)}
    return subprocess.run([sys.executable, "-m", "autojudge", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_generate_judge_mode_from_the_command_line(pair, tmp_path, tiny_target_dir, tiny_draft_dir):
    judge = constant_judge(pair, 0.5)
    judge.save(tmp_path / "fits.safetensors")
    models = ["--draft", str(tiny_draft_dir), "--target", str(tiny_target_dir), "--linear", "default",
              "--backend", "torch", "--max-new-tokens", "16"]
    done = run_cli("generate", "--prompt", "hello", *models, "--mode", "judge", "--judge",
                   str(tmp_path / "fits.safetensors"), "--threshold", "0.6", "--json", env_home=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["threshold"] == 0.6 and report["stats"]["accepted_mismatches"] >= 0
    assert len(report["token_ids"]) == 16

    foreign = Judge(judge.mean, judge.scale, judge.weight, judge.bias,
                    {**judge.meta, "pair": {**judge.meta["pair"], "target": "another-model"}})
    foreign.save(tmp_path / "foreign.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    for path, message in (("foreign.safetensors", "does not fit the loaded pair"),
                          ("corrupt.safetensors", "not a readable judge file"),
                          ("missing.safetensors", "no such judge file")):
        done = run_cli("generate", "--prompt", "hello", *models, "--mode", "judge", "--judge",
                       str(tmp_path / path), env_home=tmp_path)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    done = run_cli("generate", "--prompt", "hello", *models, "--threshold", "0.3", env_home=tmp_path)
    assert done.returncode == 1 and "go with --mode judge" in done.stderr


def test_shards_split_the_problems_and_train_reads_them_together(pair, tmp_path):
    first = mine(pair, ToyTask(), "all", str(tmp_path / "s1"), MiningOptions(max_new_tokens=24), shard=(1, 2))
    second = mine(pair, ToyTask(), "all", str(tmp_path / "s2"), MiningOptions(max_new_tokens=24), shard=(2, 2))
    assert sorted(first.done()) == [0, 2, 4] and sorted(second.done()) == [1, 3, 5]
    both = load_mined([tmp_path / "s1", tmp_path / "s2"])
    labelled = {r["problem_id"] for r in first.records + second.records if r["mismatches"]}
    assert set(both.problem.tolist()) == labelled
    with pytest.raises(Exception, match="repeats problems"):
        load_mined([tmp_path / "s1", tmp_path / "s1"])
    # Target features recomputed on another runtime (scripts/layer_probe.py) join mined
    # ones of the same layer; any other setting that differs is refused.
    meta_path = tmp_path / "s2" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "features": {**meta["features"], "target_recomputed": "torch"}}))
    assert set(load_mined([tmp_path / "s1", tmp_path / "s2"]).problem.tolist()) == labelled
    meta_path.write_text(json.dumps({**meta, "max_new_tokens": 25}))
    with pytest.raises(AutojudgeError, match="s2 was mined with other settings than"):
        load_mined([tmp_path / "s1", tmp_path / "s2"])
    meta_path.write_text(json.dumps(meta))
    # Training reads a run that is still mining: a half-written last line is left out,
    # and the run's file is left as it is (the miner repairs it when it resumes).
    records = tmp_path / "s1" / "problems.jsonl"
    with open(records, "a") as handle:
        handle.write('{"problem_id": 6, "mismatch')
    torn = records.read_bytes()
    assert set(load_mined([tmp_path / "s1"]).problem.tolist()) == labelled & {0, 2, 4}
    assert records.read_bytes() == torn
    lost = next(r["problem_id"] for r in second.records if r["mismatches"])
    (tmp_path / "s2" / "features" / f"{lost}.safetensors").unlink()
    with pytest.raises(AutojudgeError, match=f"features of problem {lost} are unreadable"):
        load_mined([tmp_path / "s2"])


def test_labels_of_a_smaller_budget_are_reused_only_where_both_texts_ended(pair, tmp_path):
    from dataclasses import replace

    from autojudge.judge.train import load_reused
    # Random models seldom end a text: stopping at a few frequent characters too, some
    # texts end within the short budget and some are cut.
    stops = {pair.tokenizer.convert_tokens_to_ids(c) for c in "aeiostnrl"}
    pair = replace(pair, stop_ids=pair.stop_ids | stops)
    short = mine(pair, ToyTask(), "all", str(tmp_path / "short"), MiningOptions(max_new_tokens=6))
    mine(pair, ToyTask(), "all", str(tmp_path / "full"), MiningOptions(max_new_tokens=24))
    data = load_mined([tmp_path / "full"])
    reused = load_reused([tmp_path / "short"], data)
    expected = []
    for record in short.records:  # the rule, spelled out on the recorded stops
        compared_with = record["first_answer_stop"]  # how the text a label compares with ended
        for m in record["mismatches"]:
            if compared_with != "length" and m["regeneration_stop"] != "length":
                expected.append((record["problem_id"], m["important"]))
            if not m["important"]:  # a kept swap: later labels compare with its regeneration
                compared_with = m["regeneration_stop"]
    assert sorted(zip(reused.problem.tolist(), reused.important.tolist())) == sorted(expected)
    labels = sum(len(r["mismatches"]) for r in short.records)
    assert 0 < len(expected) < labels  # some labels kept, some left out
    with pytest.raises(AutojudgeError, match="smaller budget"):
        load_reused([tmp_path / "full"], load_mined([tmp_path / "short"]))
    _, meta = train_judge(data, features="hidden", reused=reused)
    assert meta["reused"] == {**meta["reused"], "mismatches": len(expected), "max_new_tokens": 6}
    assert meta["validation"]["mismatches"] == len(data.important)
    assert meta["train"]["mismatches"] == len(data.important) + len(expected)
    # The command line: the report says what was reused. Runs that have logit features lend
    # them too; older runs, mined before they were recorded, cannot.
    from autojudge.cli import main
    out = tmp_path / "judge.safetensors"
    assert main(["train", "--data", str(tmp_path / "full"), "--reuse", str(tmp_path / "short"),
                 "--out", str(out), "--report", str(tmp_path / "auc")]) == 0
    assert Judge.load(out).meta["reused"]["mismatches"] == len(expected)
    assert f"With {len(expected)} reused labels" in (tmp_path / "auc.md").read_text()
    assert (tmp_path / "auc.png").stat().st_size > 0
    assert main(["train", "--data", str(tmp_path / "full"), "--reuse", str(tmp_path / "short"),
                 "--features", "all", "--out", str(out)]) == 0
    assert Judge.load(out).meta["train"]["mismatches"] == len(data.important) + len(expected)
    with pytest.raises(AutojudgeError, match="reused labels have no logit features"):
        train_judge(data, features="all", reused=replace(reused, logits=None))


def test_labels_of_another_task_train_beside_and_are_never_scored(pair, tmp_path, capsys):
    """--borrow: another task's labels join every fold's training, apart from the data's
    problems (their ids made negative); AUC and thresholds come from the data alone."""
    from autojudge.cli import main
    mine(pair, ToyTask(), "all", str(tmp_path / "own"), MiningOptions(max_new_tokens=24))
    mine(pair, SettlingToyTask(), "all", str(tmp_path / "other"), MiningOptions(max_new_tokens=24))
    data, other = load_mined([tmp_path / "own"]), load_mined([tmp_path / "other"])
    borrowed = load_borrowed([tmp_path / "other"], data)
    assert sorted(borrowed.problem.tolist()) == sorted((-1 - other.problem).tolist())
    assert (borrowed.problem < 0).all() and borrowed.important.tolist() == other.important.tolist()
    _, meta = train_judge(data, features="all", reused=borrowed)
    assert meta["borrowed"]["task"] == "toy-settling" and meta["borrowed"]["mismatches"] == len(other.important)
    assert meta["validation"]["mismatches"] == len(data.important)
    assert meta["train"]["mismatches"] == len(data.important) + len(other.important)
    with pytest.raises(AutojudgeError, match="holds toy labels, as the data does"):
        load_borrowed([tmp_path / "own"], data)
    meta_path = tmp_path / "other" / "meta.json"
    mined_meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**mined_meta, "target_backend": {**mined_meta["target_backend"],
                                                                       "feature_layer": 1}}))
    with pytest.raises(AutojudgeError, match="another pair, runtime, feature layer or layout"):
        load_borrowed([tmp_path / "other"], data)
    meta_path.write_text(json.dumps(mined_meta))
    # The command line: the report sets the AUC with them against without, with an interval.
    out = tmp_path / "judge.safetensors"
    assert main(["train", "--data", str(tmp_path / "own"), "--borrow", str(tmp_path / "other"),
                 "--features", "target+logits", "--out", str(out), "--report", str(tmp_path / "auc")]) == 0
    report = (tmp_path / "auc.md").read_text()
    assert f"With {len(other.important)} borrowed labels of" in report and "toy-settling problems" in report
    assert "target+logits: " in report and "95% bootstrap by problem" in report
    assert Judge.load(out).meta["borrowed"]["task"] == "toy-settling"
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "own"), "--borrow", str(tmp_path / "other"), "--reuse",
                 str(tmp_path / "other"), "--out", str(out)]) == 1
    assert "give one of them" in capsys.readouterr().err


def test_eval_command_end_to_end(pair, tmp_path, tiny_target_dir, tiny_draft_dir):
    constant_judge(pair, 0.5).save(tmp_path / "judge.safetensors")
    out = tmp_path / "eval-cli"
    done = run_cli("eval", "--task", "tests.toy_task:ToyTask", "--split", "all", "--limit", "2",
                   "--modes", "target,exact,topk:2,judge:0.6", "--window", "4", "--max-new-tokens", "12",
                   "--judge", str(tmp_path / "judge.safetensors"), "--out", str(out),
                   "--draft", str(tiny_draft_dir), "--target", str(tiny_target_dir), "--linear", "default",
                   "--backend", "torch", env_home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| judge:0.6 | 2 |" in done.stdout
    assert (out / "tradeoff.png").exists() and len(read_records(out / "records.jsonl")) == 8
    # A target-only run names the draft too, so other modes can join it later.
    models = ["--draft", str(tiny_draft_dir), "--target", str(tiny_target_dir), "--linear", "default",
              "--backend", "torch"]
    for modes in ("target", "target,exact"):
        done = run_cli("eval", "--task", "tests.toy_task:ToyTask", "--split", "all", "--limit", "1",
                       "--modes", modes, "--window", "4", "--max-new-tokens", "8", "--out", str(tmp_path / "grow"),
                       *models, env_home=tmp_path)
        assert done.returncode == 0, done.stderr
    assert len(read_records(tmp_path / "grow" / "records.jsonl")) == 3  # target, then target and exact
    bad = run_cli("eval", "--task", "tests.toy_task:ToyTask", "--split", "all", "--modes", "exact,judge:2",
                  "--out", str(tmp_path / "x"), "--draft", str(tiny_draft_dir), "--target", str(tiny_target_dir),
                  env_home=tmp_path)
    assert bad.returncode == 1 and "must lie in [0, 1]" in bad.stderr


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
