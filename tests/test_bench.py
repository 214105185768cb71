"""Methods (a mode on a runtime with a window) and `autojudge bench` on the evaluation harness."""

from __future__ import annotations

import re

import pytest

from autojudge.decoding.modes import DecodingOptions
from autojudge.evaluation.costmodel import PassCosts, check_against_runs
from autojudge.evaluation.methods import parse_method, parse_methods
from autojudge.evaluation.run import run_eval
from autojudge.runfiles import read_records
from tests.test_evaluation import constant_judge, run_cli
from tests.toy_task import ToyTask, tiny_pair


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


def test_a_method_is_spelled_once_and_names_its_baselines():
    assert parse_method("exact").name == "exact"  # an eval mode is a method of the same name
    assert parse_method(" llamacpp / topk:4 / w16 ").name == "llamacpp/topk:4/w16"
    assert parse_method("torch+torch/exact/w8").name == "torch/exact/w8"  # one spelling
    assert parse_method("judge@0.90/w8").name == "judge@0.9/w8"  # the mode's own canonical spelling
    mixed = parse_method("torch+llamacpp/fly:0.3:6/w32")
    assert mixed.name == "torch+llamacpp/fly/w32" and mixed.backends == ("torch", "llamacpp")
    # The target alone runs on the target's runtime; exact decoding at the same window.
    assert mixed.target_baseline == "torch/target"
    assert mixed.exact_baseline == "torch+llamacpp/exact/w32"
    assert parse_method("judge:0.2").target_baseline == "target"
    adaptive = parse_method("llamacpp/judge@0.9/w32/p.30")
    assert adaptive.name == "llamacpp/judge@0.9/w32/p0.3" and adaptive.draft_p_min == 0.3
    assert adaptive.exact_baseline == "llamacpp/exact/w32/p0.3"  # exact with the same drafts
    assert [m.lossless for m in parse_methods("target,llamacpp/exact/w4,topk:2,torch/assisted")] == \
        [True, True, False, False]


@pytest.mark.parametrize("bad, message", [
    ("exact:8", "the window after a slash"),  # the old benchmark grammar
    ("llamacpp/topk:4:16", "the window after a slash"),
    ("vllm/exact/w8", "not one of"),
    ("llamacpp/exact/w65", "1 to 64"),
    ("llamacpp/target/w8", "takes no window"),
    ("llamacpp/target/p0.5", "takes no window or p-min"),
    ("torch/assisted/p0.5", "takes no /pP"),
    ("llamacpp/exact/w8/p2", "write [runtime/]mode"),
    ("llamacpp/assisted", "torch/assisted"),
    ("a/b/c/d", "write [runtime/]mode"),
])
def test_bad_methods_are_refused_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_method(bad)


def test_methods_named_twice_are_refused():
    with pytest.raises(ValueError, match="more than once"):
        parse_methods("torch/exact/w8,torch+torch/exact/w8")


def test_runtimes_and_windows_side_by_side_through_the_evaluation_harness(pair, tmp_path):
    methods = ["torch/target", "torch/exact/w2", "torch/exact/w4", "torch/judge:0.6/w2", "torch/judge:0.6/w4",
               "torch/assisted", "torch/exact/w4/p0.99"]
    judge = constant_judge(pair, 0.5)  # P(important) 0.5 < 0.6: every draft token is kept
    rows = run_eval(None, ToyTask(), "all", methods, tmp_path, DecodingOptions(window=16, max_new_tokens=12),
                    limit=2, judge=judge,
                    runtimes={"torch": pair})
    assert [r.mode for r in rows] == methods and all(r.problems == 2 for r in rows)
    by = {r.mode: r for r in rows}
    records = read_records(tmp_path / "records.jsonl")
    assert len(records) == 14 and len({r["run"] for r in records}) == 1
    # Every lossless method gives the target's tokens on torch, bit-exact across pass shapes.
    for name in ("torch/exact/w2", "torch/exact/w4", "torch/assisted", "torch/exact/w4/p0.99"):
        assert by[name].identical_to_target == 1.0 and by[name].accuracy == by["torch/target"].accuracy
    # Each method drafts its own window: accepting everything, a cycle emits W + 1 tokens
    # (12 tokens: 3+3+3+3 at w2, 5+5+2 at w4), unless a stop token comes first.
    full = [r for r in records if r["mode"].startswith("torch/judge") and r["stop_reason"] == "length"]
    assert len(full) >= 2
    for r in full:
        assert r["cycles"] == {"torch/judge:0.6/w2": 4, "torch/judge:0.6/w4": 3}[r["mode"]]
    # Each lossy method is set against exact decoding of its own window.
    for window in (2, 4):
        judged, exact = by[f"torch/judge:0.6/w{window}"], by[f"torch/exact/w{window}"]
        assert judged.against_exact.accepted == pytest.approx(judged.mean_accepted / exact.mean_accepted)
        assert judged.against_target.speed_problems == 2 and judged.threshold == 0.6
    # A draft p-min of 0.99 stops a random draft after about one token: fewer draft passes.
    drafts = {m: sum(r["draft_forwards"] for r in records if r["mode"] == m) for m in methods}
    assert drafts["torch/exact/w4/p0.99"] < drafts["torch/exact/w4"]
    # Resumed: nothing decoded again.
    run_eval(None, ToyTask(), "all", methods, tmp_path, DecodingOptions(window=16, max_new_tokens=12),
             limit=2, judge=judge,
             runtimes={"torch": pair})
    assert len(read_records(tmp_path / "records.jsonl")) == 14
    main_table = (tmp_path / "summary.md").read_text().split("Tokens/s, a column per machine")[0]
    assert main_table.count("| torch/") == 7


def test_a_method_on_a_runtime_without_a_pair_is_refused(pair, tmp_path):
    with pytest.raises(ValueError, match="no pair loaded for llamacpp"):
        run_eval(None, ToyTask(), "all", ["llamacpp/exact/w4"], tmp_path, runtimes={"torch": pair})


def test_the_cost_model_check_charges_each_method_on_its_own_backends():
    costs = {"torch": {"t": PassCosts("t", {1: 0.5, 5: 0.6}), "d": PassCosts("d", {1: 0.1})},
             "llamacpp": {"t": PassCosts("t", {1: 0.2, 5: 0.4}), "d": PassCosts("d", {1: 0.05})}}
    run = {"new_tokens": 10, "seconds": 3.0, "prefill_seconds": 1.0, "target_forwards": 3, "draft_forwards": 10}
    table = check_against_runs([{**run, "mode": "torch+llamacpp/exact/w4"}, {**run, "mode": "exact"},
                                {**run, "mode": "torch/assisted"}], costs, "d", "t")
    # 2 verifications of 5 tokens on torch (0.6 s) + 10 llama.cpp draft passes (0.05 s) = 1.7 s
    assert "| torch+llamacpp/exact/w4 | 5.00 | 5.88 | 1.18 |" in table
    assert "| exact |" not in table and "assisted" not in table  # no runtime; another library's loop


def test_bench_command_refuses_a_bad_method_before_loading_anything(tmp_path):
    done = run_cli("bench", "--methods", "torch/target,exact:8", "--out", str(tmp_path / "b"),
                   "--draft", str(tmp_path / "none"), "--target", str(tmp_path / "none"), env_home=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "the window after a slash" in done.stderr


def test_bench_command_end_to_end(tmp_path, tiny_target_dir, tiny_draft_dir):
    out = tmp_path / "bench"
    done = run_cli("bench", "--task", "tests.toy_task:ToyTask", "--split", "all", "--n", "2",
                   "--methods", "torch/target,torch/exact/w4", "--max-new-tokens", "10", "--out", str(out),
                   "--draft", str(tiny_draft_dir), "--target", str(tiny_target_dir), "--linear", "default",
                   env_home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| torch/exact/w4 | 2 |" in done.stdout and (out / "tradeoff.png").exists()
