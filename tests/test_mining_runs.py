"""Mining runs: resumed after a kill, the mine command, skipped prompts, and what a run
counts and leaves out."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from autojudge.errors import AutojudgeError
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mine
from autojudge.mining.store import labelled_problems
from tests.toy_task import ToyTask, tiny_pair

MAX_NEW = 40


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


CHILD = """
import sys
from tests.toy_task import RejoiningToyTask, SettlingToyTask, ToyTask, UnsettlingToyTask, tiny_pair
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mine
mine(tiny_pair(sys.argv[1], sys.argv[2]), ToyTask(), "all", sys.argv[3], MiningOptions(max_new_tokens=40))
"""


def test_killed_mining_resumes_without_loss_or_duplicates(tmp_path, tiny_target_dir, tiny_draft_dir, pair):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_target_dir), str(tiny_draft_dir), str(out)],
                             env=env, stderr=subprocess.DEVNULL)
    lines = out / "problems.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (lines.exists() and lines.read_text().count("\n") >= 2):
        time.sleep(0.05)
    # While it mines, a second miner on the directory is refused before it reads a file:
    # both would mine the missing problems and append them twice.
    before = lines.read_bytes()
    with pytest.raises(AutojudgeError, match=rf"in use by another mining run \(process {child.pid}\)"):
        mine(pair, ToyTask(), "all", str(out), MiningOptions(max_new_tokens=40))
    assert lines.read_bytes().startswith(before)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert lines.read_text().count("\n") < len(ToyTask().load("all"))  # killed mid-run
    # The kill released the directory (the kernel drops the dead process's flock).

    store = mine(pair, ToyTask(), "all", str(out), MiningOptions(max_new_tokens=40))
    ids = [json.loads(line)["problem_id"] for line in lines.read_text().splitlines()]
    assert sorted(ids) == list(range(len(ToyTask().load("all"))))
    for record in store.records:
        if record["mismatches"]:
            features = store.load_features(record["problem_id"])
            assert features["draft"].shape[0] == features["target"].shape[0] == len(record["mismatches"])
    assert not list(out.glob("**/*.tmp"))


def test_mine_command_with_a_user_task(tmp_path, tiny_target_dir, tiny_draft_dir):
    out = tmp_path / "cli-run"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "AUTOJUDGE_HOME": str(tmp_path / "home")}
    args = [sys.executable, "-m", "autojudge", "mine", "--task", "tests.toy_task:ToyTask", "--split", "all",
            "--limit", "2", "--draft", str(tiny_draft_dir), "--target", str(tiny_target_dir),
            "--linear", "default", "--max-new-tokens", "24", "--out", str(out)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 problems, ")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["task"] == "toy" and meta["max_new_tokens"] == 24
    # Other settings on the same directory are refused, not mixed in.
    again = subprocess.run(args[:-3] + ["32", "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "other settings: max_new_tokens: 24 -> 32; use" in again.stderr
    plain = subprocess.run(args + ["--plain", "--window", "0"], env=env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 1
    assert 'other settings: first_answer_window: 4 -> 0; regeneration: "fast" -> "plain"; use' in plain.stderr
    # Resumed on another split, evaluation problems would join the training data.
    split = args.index("--split") + 1
    other = subprocess.run(args[:split] + ["eval"] + args[split + 1:], env=env, capture_output=True, text=True,
                           timeout=300)
    assert other.returncode == 1 and 'other settings: split: "all" -> "eval"' in other.stderr


class LongPromptToyTask(ToyTask):
    """Problem 1's prompt is longer than the tiny models' 256-token context."""

    def load(self, split):
        problems = super().load(split)[:3]
        problems[1] = dataclasses.replace(problems[1], prompt=" ".join(["cat"] * 300))
        return problems


def test_a_prompt_longer_than_the_context_is_skipped_and_stays_skipped(tmp_path, pair):
    store = mine(pair, LongPromptToyTask(), "all", str(tmp_path), MiningOptions(max_new_tokens=24))
    skipped = [r for r in store.records if "skipped" in r]
    assert [r["problem_id"] for r in skipped] == [1] and "the context holds 256" in skipped[0]["skipped"]
    assert skipped[0]["mismatches"] == [] and sorted(store.done()) == [0, 1, 2]
    # Nothing left to do.
    again = mine(pair, LongPromptToyTask(), "all", str(tmp_path), MiningOptions(max_new_tokens=24))
    assert len(again.records) == 3


def test_rejoin_needs_a_task_that_says_what_is_interchangeable(tmp_path, pair):
    with pytest.raises(AutojudgeError, match="--rejoin needs a task that says which edits are interchangeable"):
        mine(pair, ToyTask(), "all", str(tmp_path / "run"), MiningOptions(max_new_tokens=MAX_NEW, rejoin=4))


def test_a_mining_run_states_how_many_answers_the_budget_cut(tmp_path, pair):
    # Random tiny models rarely write an end token: with a budget of 12 nearly every
    # answer is cut, and with 200 (the tiny context is 256 tokens) far fewer are.
    short = mine(pair, ToyTask(), "all", str(tmp_path / "short"), MiningOptions(max_new_tokens=12), limit=3)
    summary = json.loads((tmp_path / "short" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(short.summary()))
    records = short.records
    assert summary["first_answers_cut"]["of"] == 3
    assert summary["first_answers_cut"]["cut"] == sum(r["first_answer_stop"] == "length" for r in records)
    regenerated = [m for r in records for m in r["mismatches"]]
    assert summary["regenerations_cut"]["of"] == len(regenerated) > 0
    assert summary["regenerations_cut"]["cut"] == sum(m["regeneration_stop"] == "length" for m in regenerated)
    assert summary["labels"] == len(regenerated)
    assert all(len(pair.tokenizer.encode(r["response"])) <= 12 + 2 for r in records)


def test_null_swaps_change_nothing_where_arithmetic_is_exact_and_resume(pair, tmp_path):
    # On torch, float32, a regeneration verified many tokens per pass gives the first
    # answer back: the floor is zero, so any change on another runtime is its noise.
    from autojudge.mining.noise import null_swap_markdown, null_swaps
    out = tmp_path / "noise"
    options = MiningOptions(max_new_tokens=MAX_NEW, window=0)
    swaps = null_swaps(pair, ToyTask(), "all", 2, 2, out, options)
    assert len(swaps) == 4 and len((out / "records.jsonl").read_text().splitlines()) == 2
    swaps = null_swaps(pair, ToyTask(), "all", 3, 2, out, options)  # one problem more
    assert len(swaps) == 6 and len((out / "records.jsonl").read_text().splitlines()) == 3
    assert not any(s.tokens_changed or s.answer_changed for s in swaps)
    assert "| 6 | 3 | 0 (0.0%) | 0 (0.0%) |" in null_swap_markdown(swaps, "toy")


def test_a_confirmed_run_counts_what_confirmation_overturned(tmp_path, pair):
    from tests.toy_task import FlakyToyTask
    run = mine(pair, FlakyToyTask(), "all", str(tmp_path / "run"), MiningOptions(max_new_tokens=MAX_NEW, confirm=True),
               limit=3)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    asked = [m["confirmed"] for r in run.records for m in r["mismatches"] if m["confirmed"] is not None]
    assert asked and summary["confirmation"] == {"asked": len(asked), "overturned": asked.count(False)}
    plain = mine(pair, ToyTask(), "all", str(tmp_path / "plain"), MiningOptions(max_new_tokens=MAX_NEW), limit=1)
    assert "confirmation" not in plain.summary()


def test_a_run_can_leave_out_the_problems_other_runs_hold(tmp_path, pair):
    """--skip-mined: a second run of the same split mines only what the first lacks; runs of
    another split, or directories that are not runs, are refused."""
    first = mine(pair, ToyTask(), "all", str(tmp_path / "first"), MiningOptions(max_new_tokens=12), limit=2)
    skip = labelled_problems([tmp_path / "first"], "toy", "all")
    assert skip == first.done() and len(skip) == 2
    rest = mine(pair, ToyTask(), "all", str(tmp_path / "rest"), MiningOptions(max_new_tokens=12), limit=4, skip=skip)
    every = [p.id for p in ToyTask().load("all")[:4]]
    assert rest.done() == set(every) - skip and len(rest.done()) == 2
    with pytest.raises(AutojudgeError, match="mined toy/all, not toy/eval"):
        labelled_problems([tmp_path / "first"], "toy", "eval")
    with pytest.raises(AutojudgeError, match="not a mining run"):
        labelled_problems([tmp_path / "nowhere"], "toy", "all")
