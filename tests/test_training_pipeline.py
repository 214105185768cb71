"""From mined labels to a trained judge: shards, reused labels, other tasks' labels, and
the judge decoding."""

from __future__ import annotations

import json

import pytest

from autojudge.decoding.modes import DecodingOptions, decode
from autojudge.errors import AutojudgeError
from autojudge.judge.model import Judge
from autojudge.judge.train import load_borrowed, load_mined, train_judge
from autojudge.mining.bench import bench_mining
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mine
from autojudge.prompting import chat_prompt_ids
from tests.toy_task import RejoiningToyTask, SettlingToyTask, ToyTask, tiny_pair


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


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
    # them too; older runs, mined before they were recorded, cannot. (--force: random models'
    # labels may cross-validate below chance, which train would refuse to write.)
    from autojudge.cli import main
    out = tmp_path / "judge.safetensors"
    assert main(["train", "--data", str(tmp_path / "full"), "--reuse", str(tmp_path / "short"),
                 "--out", str(out), "--report", str(tmp_path / "auc"), "--force"]) == 0
    assert Judge.load(out).meta["reused"]["mismatches"] == len(expected)
    assert f"With {len(expected)} reused labels" in (tmp_path / "auc.md").read_text()
    assert (tmp_path / "auc.png").stat().st_size > 0
    assert main(["train", "--data", str(tmp_path / "full"), "--reuse", str(tmp_path / "short"),
                 "--features", "all", "--out", str(out), "--force"]) == 0
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
                 "--features", "target+logits", "--out", str(out), "--report", str(tmp_path / "auc"), "--force"]) == 0
    report = (tmp_path / "auc.md").read_text()
    assert f"With {len(other.important)} borrowed labels of" in report and "toy-settling problems" in report
    assert "target+logits: " in report and "95% bootstrap by problem" in report
    assert Judge.load(out).meta["borrowed"]["task"] == "toy-settling"
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "own"), "--borrow", str(tmp_path / "other"), "--reuse",
                 str(tmp_path / "other"), "--out", str(out)]) == 1
    assert "give one of them" in capsys.readouterr().err
