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

from autojudge.decoding import defaults
from autojudge.decoding.features import TARGET_LOGIT_FEATURES
from autojudge.decoding.modes import DecodingOptions, decode, parse_mode
from autojudge.errors import AutojudgeError
from autojudge.evaluation.run import run_eval
from autojudge.judge.model import Judge
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import read_records
from tests.toy_task import ToyTask, tiny_pair


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


def target_only_judge(pair, p_important: float) -> Judge:
    """A judge of the target's numbers alone (a lookup drafter's) that says P(important) = p_important."""
    t = pair.target.hidden_size
    width = t + len(TARGET_LOGIT_FEATURES)
    bias = float(torch.logit(torch.tensor(p_important)))
    meta = {"pair": pair.describe(), "features": "target+target-logits",
            "hidden": {"draft": pair.draft.hidden_size, "target": t}, "validation_auc": 0.5,
            "thresholds": [{"threshold": 0.3, "recall": 1.0, "accept_rate": 0.0},
                           {"threshold": 0.7, "recall": 0.0, "accept_rate": 1.0}]}
    return Judge(torch.zeros(width), torch.ones(width), torch.zeros(width), bias, meta)


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


def test_a_run_that_adds_a_mode_reports_it_beside_the_earlier_ones(pair, tmp_path):
    task, out, options = ToyTask(), tmp_path / "eval", DecodingOptions(window=6, max_new_tokens=16)
    judge = constant_judge(pair, 0.5)
    run_eval(pair, task, "all", ["target", "exact", "fly", "judge:0.6"], out, options, limit=2, judge=judge)
    rows = run_eval(pair, task, "all", ["topk:2"], out, options, limit=2, judge=judge)
    every = ["target", "exact", "fly", "judge:0.6", "topk:2"]
    assert [r.mode for r in rows] == every
    assert [row["mode"] for row in json.loads((out / "summary.json").read_text())["rows"]] == every
    assert rows[-1].accuracy_vs_exact is not None  # paired with exact, as if decoded in one run
    assert len(read_records(out / "records.jsonl")) == 2 * len(every)  # nothing decoded twice
    # The judge mode against the training-free rule, on the problems the two decoded.
    text = (out / "summary.md").read_text()
    assert "### Judge modes against the training-free rules" in text and "| judge:0.6 | fly | 2 |" in text
    # Retrained, the judge adds a mode: the earlier judge's modes keep their table, judge:0.6 included.
    retrained = constant_judge(pair, 0.55)
    rows = run_eval(pair, task, "all", ["judge-or-fly:0.6"], out, options, limit=2, judge=retrained)
    assert [r.mode for r in rows] == ["target", "exact", "fly", "topk:2", "judge-or-fly:0.6"]
    earlier = json.loads((out / "summary.json").read_text())["earlier_judges"]
    assert len(earlier) == 1 and "judge:0.6" in [row["mode"] for row in earlier[0]["rows"]]


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


def run_cli(*args, env_home):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "AUTOJUDGE_HOME": str(env_home)}
    return subprocess.run([sys.executable, "-m", "autojudge", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_generate_judge_mode_from_the_command_line(pair, tmp_path, tiny_target_dir, tiny_draft_dir):
    judge = constant_judge(pair, 0.5)
    judge.save(tmp_path / "fits.safetensors")
    models = ["--draft", str(tiny_draft_dir), "--target", str(tiny_target_dir), "--linear", "default",
              "--backend", "torch", "--max-new-tokens", "16", "--window", "4", "--draft-p-min", "0"]
    done = run_cli("generate", "--prompt", "hello", *models, "--mode", "judge", "--judge",
                   str(tmp_path / "fits.safetensors"), "--threshold", "0.6", "--json", env_home=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # The judge's P(important) = 0.5 is below 0.6: the command decodes as the library does in judge:0.6.
    alone = decode(pair, chat_prompt_ids(pair.tokenizer, [{"role": "user", "content": "hello"}]), "judge:0.6",
                   DecodingOptions(window=4, max_new_tokens=16, draft_p_min=0.0), judge=judge)
    assert report["mode"] == "judge:0.6" and report["threshold"] == 0.6 and report["token_ids"] == alone.token_ids
    assert report["stats"]["accepted_mismatches"] == alone.stats.accepted_mismatches
    assert len(report["token_ids"]) == 16
    # By recall, the mode prints back as written, with the threshold its judge's table gives beside it.
    done = run_cli("generate", "--prompt", "hello", *models, "--mode", "judge", "--judge",
                   str(tmp_path / "fits.safetensors"), "--recall", "1.0", env_home=tmp_path)
    assert done.returncode == 0 and "[judge@1.0 (T=0.3)] 16 tokens" in done.stdout, done.stderr
    # Neither: the measured best judge mode.
    done = run_cli("generate", "--prompt", "hello", *models, "--mode", "judge", "--judge",
                   str(tmp_path / "fits.safetensors"), "--json", env_home=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout)["mode"] == defaults.JUDGE_MODE, done.stderr

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
