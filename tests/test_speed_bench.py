"""The speed bench (autojudge.evaluation.speed) on the tiny pair: every configuration runs,
the lossless ones give the target's own tokens, and a rerun resumes without decoding again."""

from __future__ import annotations

import pytest

from autojudge.decoding import defaults
from autojudge.evaluation.speed import default_configs, run_order, run_speed_bench, select_configs
from autojudge.runfiles import read_records
from tests.test_evaluation import constant_judge, target_only_judge
from tests.toy_task import ToyTask, tiny_pair


def test_the_speed_bench_runs_every_configuration_and_resumes(tiny_target_dir, tiny_draft_dir, tmp_path):
    pair = tiny_pair(tiny_target_dir, tiny_draft_dir)
    pairs, task = {"old": pair, "new": pair}, ToyTask()
    # P(important) 0.9: keeps no mismatch at 0.8's threshold. A lookup's reads the target alone.
    judges = {task.name: {"model": constant_judge(pair, 0.9), "lookup": target_only_judge(pair, 0.9)}}
    out = tmp_path / "bench"
    text = run_speed_bench(pairs, [task], out, n=2, judges=judges, max_new_tokens=12)
    records = read_records(out / "records.jsonl")
    configs = default_configs(judge=True)
    assert {r["config"] for r in records} == {c.name for c in configs}
    assert len(records) == 2 * len(configs)
    for config in configs:
        assert f"| toy | {config.name} | 2 |" in text
    by = {(r["config"], r["problem"]): r for r in records}
    for r in records:
        if r["config"].endswith("/exact"):  # lossless, whatever drafts: the target's own tokens
            assert r["token_ids"] == by[("target/new", r["problem"])]["token_ids"]
        if r["config"].startswith("lookup"):
            assert r["draft_forwards"] == 0
    # The defaults run as the commands would (on a CPU: the lookup under the controller,
    # no draft model pass); the old ones as they were.
    assert by[("defaults/exact", 0)]["options"]["window"] == defaults.WINDOW
    assert by[("model/exact", 0)]["options"]["draft_p_min"] == defaults.DRAFT_P_MIN
    assert (by[("defaults/exact", 0)]["drafter"], by[("defaults/exact", 0)]["draft_length"]) == ("lookup", "adaptive")
    assert by[("model/judge@0.8", 0)]["drafter"] == "model" and by[("model/exact", 0)]["draft_forwards"] > 0
    assert by[("lookup/judge@0.8", 0)]["drafter"] == "lookup" and by[("lookup/judge@0.8", 0)]["draft_forwards"] == 0
    assert by[("defaults/exact", 0)]["draft_forwards"] == 0
    assert by[("old-defaults/exact/w8", 0)]["options"]["draft_p_min"] == 0.0
    assert "| toy | target/new | 2 | " in text and "| 1.00x |" in text

    run_speed_bench(pairs, [task], out, n=2, judges=judges, max_new_tokens=12)
    assert len(read_records(out / "records.jsonl")) == len(records)  # nothing decoded twice


def test_the_order_of_configurations_is_shuffled_per_problem_and_stable():
    configs = default_configs(judge=True)
    orders = {tuple(c.name for c in run_order(configs, "gsm8k", problem)) for problem in range(12)}
    assert len(orders) > 1  # not one fixed order
    assert len({order[0] for order in orders}) > 1  # nor one configuration always first
    assert run_order(configs, "gsm8k", 5) == run_order(configs, "gsm8k", 5)  # a resumed run keeps it
    assert sorted(c.name for c in run_order(configs, "gsm8k", 5)) == sorted(c.name for c in configs)


def test_a_selection_of_configurations_brings_its_baselines():
    names = [c.name for c in select_configs("defaults/exact,old-defaults/exact/w8")]
    assert names == ["target/old", "target/new", "old-defaults/exact/w8", "defaults/exact"]
    with pytest.raises(ValueError, match="unknown configuration nope"):
        select_configs("nope")
