"""MiningOptions: one value for how Algorithm 1 runs, named in the meta.json a run resumes against."""

from __future__ import annotations

import itertools
import json
import pickle
import re
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path
from types import SimpleNamespace

import pytest

from autojudge.errors import AutojudgeError
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mining_meta
from autojudge.tasks.gsm8k import GSM8K
from tests.toy_task import SettlingToyTask, ToyTask

RUNNING_SHARD = Path(__file__).parent.parent / "data" / "mined" / "gsm8k" / "shard-1-of-2" / "meta.json"


class StubPair:
    """What mining_meta reads of a pair: its description and hidden sizes (no model loaded)."""

    def __init__(self, described: dict, draft_hidden: int = 896, target_hidden: int = 1536):
        self.described = described
        self.draft, self.target = SimpleNamespace(hidden_size=draft_hidden), SimpleNamespace(hidden_size=target_hidden)

    def describe(self, machine: bool = True) -> dict:
        assert machine is False
        return dict(self.described)


class Checker:
    def describe(self) -> dict:
        return {"model": "tiny-checker", "threshold": 0.6}


def checked_toy_task():
    task = ToyTask()
    task.checker = Checker()
    return task


PAIR = StubPair({"target": "t", "target_backend": {"backend": "llama.cpp", "gguf": "t.gguf"}, "draft": "d",
                 "draft_backend": {"backend": "torch"}})


def test_the_defaults_are_todays():
    options = MiningOptions()
    assert (options.max_new_tokens, options.window, options.fast, options.rejoin, options.confirm) == \
        (None, 4, True, 0, False)
    assert options.regeneration == "fast"


@pytest.mark.parametrize("task_name", ["toy", "settling", "checked"])
def test_the_meta_names_every_option_that_changes_labels(task_name):
    task = {"toy": ToyTask, "settling": SettlingToyTask, "checked": checked_toy_task}[task_name]()
    metas = {}
    for budget, window, fast, rejoin, confirm in itertools.product((24, 1024), (0, 4), (True, False), (0, 8),
                                                                    (False, True)):
        options = MiningOptions(budget, window, fast, rejoin, confirm)
        meta = mining_meta(PAIR, task, "mine", options)
        assert (meta["max_new_tokens"], meta["first_answer_window"], meta["regeneration"]) == \
            (budget, window, options.regeneration)
        metas[json.dumps(meta)] = options
    assert len(metas) == 2 * 2 * 2 * 2 * 2  # no two settings share a meta: a resume tells them apart
    assert ("checker" in meta) == (task_name == "checked")
    assert ("settled_answers" in meta) == (task_name == "settling")
    # No budget given: the task's, written out.
    assert mining_meta(PAIR, task, "all", MiningOptions(window=0))["max_new_tokens"] == 512


def test_the_running_gsm8k_shard_resumes_against_the_same_meta():
    """`autojudge mine --task gsm8k --window 0 --shard 1/2 --parallel 4`: its meta.json, rebuilt."""
    if not RUNNING_SHARD.exists():
        pytest.skip("no committed GSM8K shard")
    text = RUNNING_SHARD.read_text()
    written = json.loads(text)
    pair_keys = ("target", "target_backend", "draft", "draft_backend")
    pair = StubPair({k: written[k] for k in pair_keys}, written["features"]["draft"], written["features"]["target"])
    # The CLI writes the task's budget out before building the options; either way the same meta.
    for options in (MiningOptions(max_new_tokens=1024, window=0), MiningOptions(window=0)):
        meta = mining_meta(pair, GSM8K(), "mine", options)
        # Mined before task fingerprints were recorded: it resumes without one (check_meta's recorded_later).
        assert set(meta.pop("task_fingerprint")) == {"prompts", "problems", "reference_answers"}
        assert json.dumps(meta, indent=2) == text


# name -> (fast, rejoin, confirm, the canonical name)
NAMES = {"plain": (False, 0, False, "plain"), "fast": (True, 0, False, "fast"),
         "fast+rejoin:8": (True, 8, False, "fast+rejoin:8"),
         "fast+rejoin:1+confirm": (True, 1, True, "fast+rejoin:1+confirm"),
         "plain+confirm": (False, 0, True, "plain+confirm"), "fast+confirm": (True, 0, True, "fast+confirm"),
         "fast+confirm+rejoin:3": (True, 3, True, "fast+rejoin:3+confirm")}
BAD = ["", "slow", "plain+rejoin:4", "fast+rejoin:0", "fast+rejoin:x", "fast+rejoin:2+rejoin:3",
       "fast+confirm+confirm", "fast+other", "fast+rejoin:-1"]


@pytest.mark.parametrize("name", NAMES)
def test_a_method_name_reads_back_as_its_options(name):
    fast, rejoin, confirm, canonical = NAMES[name]
    options = MiningOptions.from_method(name, max_new_tokens=24, window=0)
    assert (options.fast, options.rejoin, options.confirm) == (fast, rejoin, confirm)
    assert (options.max_new_tokens, options.window) == (24, 0)
    assert options.regeneration == canonical and MiningOptions.from_method(canonical, max_new_tokens=24,
                                                                           window=0) == options
    # with_method keeps the budget and the window, and takes the method's regeneration.
    assert MiningOptions(max_new_tokens=7, window=2, rejoin=5, confirm=True).with_method(name) == \
        MiningOptions.from_method(name, max_new_tokens=7, window=2)


@pytest.mark.parametrize("name", BAD)
def test_an_unknown_method_name_is_refused(name):
    expected = f"unknown regeneration method {name!r}; write plain, fast or fast+rejoin:M"
    with pytest.raises(AutojudgeError, match=re.escape(expected)):
        MiningOptions.from_method(name)


def test_options_are_frozen_hashable_and_pickle_to_ray_workers():
    options = MiningOptions(max_new_tokens=24, window=0, rejoin=4, confirm=True)
    assert pickle.loads(pickle.dumps(options)) == options
    assert hash(options) == hash(MiningOptions(24, 0, True, 4, True))
    with pytest.raises(FrozenInstanceError):
        options.window = 3


def test_the_budget_is_the_tasks_unless_given():
    assert MiningOptions().budget(GSM8K()) == 1024
    assert MiningOptions().budget(ToyTask()) == 512  # a task without a budget of its own
    assert MiningOptions(max_new_tokens=40).budget(GSM8K()) == 40
    assert MiningOptions(window=0).resolved(GSM8K()) == MiningOptions(max_new_tokens=1024, window=0)


def test_the_options_module_does_not_import_torch():
    code = "import sys, autojudge.mining.options; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_null_swaps_refuse_options_they_cannot_honour(tmp_path):
    from autojudge.mining.noise import NULL_SWAP_OPTIONS, null_swaps
    assert NULL_SWAP_OPTIONS == MiningOptions(window=0)
    for options in (MiningOptions(), MiningOptions(window=0, rejoin=4), MiningOptions(window=0, confirm=True)):
        with pytest.raises(AutojudgeError, match="null swaps take the first answer from the target alone"):
            null_swaps(None, ToyTask(), "all", 1, 1, tmp_path, options)
    assert not list(tmp_path.iterdir())  # refused before anything was written
