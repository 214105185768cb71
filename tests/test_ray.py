"""Mining and evaluation on a real local Ray cluster: what local runs give, a worker lost,
a driver killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")

from autojudge.decoding.modes import DecodingOptions  # noqa: E402
from autojudge.evaluation.distributed import eval_on_ray  # noqa: E402
from autojudge.evaluation.run import run_eval  # noqa: E402
from autojudge.mining.distributed import mine_on_ray  # noqa: E402
from autojudge.mining.options import MiningOptions  # noqa: E402
from autojudge.mining.run import mine  # noqa: E402
from autojudge.models.runtime import RuntimeOptions  # noqa: E402
from autojudge.runfiles import read_records  # noqa: E402
from autojudge.workers import PairSpec  # noqa: E402
from tests.test_evaluation import constant_judge  # noqa: E402
from tests.toy_task import ToyTask, tiny_pair  # noqa: E402

MAX_NEW = 24
OPTIONS = MiningOptions(max_new_tokens=MAX_NEW, window=0)  # mine_on_ray's defaults before MiningOptions


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    return tmp_path_factory.mktemp("ray") / "died"  # DyingToyTask writes it as its worker dies


@pytest.fixture(scope="module")
def cluster(marker):
    # Ray lowers its workers' priority; on a machine busy with other work they would crawl.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.getcwd(), "DYING_TASK_MARKER": str(marker),
                                       "HF_HUB_OFFLINE": "1"}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def spec(tiny_target_dir, tiny_draft_dir):
    return PairSpec(str(tiny_draft_dir), str(tiny_target_dir), RuntimeOptions(backend="torch", linear="default"))


@pytest.fixture(scope="module")
def local_labels(tmp_path_factory, tiny_target_dir, tiny_draft_dir):
    store = mine(tiny_pair(tiny_target_dir, tiny_draft_dir), ToyTask(), "all",
                 str(tmp_path_factory.mktemp("local")), OPTIONS)
    return _labels(store.records)


def _labels(records: list[dict]) -> dict[int, list]:
    return {r["problem_id"]: [(m["position"], m["draft_token"], m["important"]) for m in r["mismatches"]]
            for r in records}


def _lines(out) -> list[dict]:
    return [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]


def test_two_workers_mine_what_local_mining_does(cluster, spec, local_labels, tmp_path):
    out = tmp_path / "ray"
    store = mine_on_ray(spec, "tests.toy_task:ToyTask", "all", str(out), OPTIONS, workers=2, limit=4,
                        pin=True)
    assert sorted(r["problem_id"] for r in _lines(out)) == [0, 1, 2, 3]
    assert _labels(store.records) == {i: local_labels[i] for i in range(4)}
    assert json.loads((out / "meta.json").read_text())["task"] == "toy"
    # Resumed locally with the same settings: the run directory is one format.
    pair_store = mine_on_ray(spec, "tests.toy_task:ToyTask", "all", str(out), OPTIONS, workers=2, limit=5)
    assert sorted(r["problem_id"] for r in pair_store.records) == [0, 1, 2, 3, 4]


def test_pinned_workers_each_run_on_cores_of_their_own(cluster, spec):
    from autojudge.mining.distributed import MiningWorker
    worker = ray.remote(num_cpus=1)(MiningWorker)
    actors = [worker.remote(spec, "tests.toy_task:ToyTask", "all", (slot, 1)) for slot in range(2)]
    cores = ray.get([a.cores.remote() for a in actors])
    available = sorted(os.sched_getaffinity(0))
    assert cores == [[available[0]], [available[1 % len(available)]]]
    for actor in actors:  # the cluster has 2 CPUs: free them for the unpinned one
        ray.kill(actor)
    unpinned = worker.remote(spec, "tests.toy_task:ToyTask", "all")
    assert ray.get(unpinned.cores.remote()) == available
    ray.kill(unpinned)


def test_a_worker_that_dies_mid_problem_has_its_problem_mined_again_once(cluster, marker, spec, local_labels,
                                                                        tmp_path):
    out = tmp_path / "dying"
    store = mine_on_ray(spec, "tests.toy_task:DyingToyTask", "all", str(out), OPTIONS, workers=2, limit=4)
    assert marker.exists()  # a worker did die, in the middle of problem 1
    assert sorted(r["problem_id"] for r in _lines(out)) == [0, 1, 2, 3]
    assert _labels(store.records) == {i: local_labels[i] for i in range(4)}


DRIVER = """
import sys
from autojudge.mining.distributed import mine_on_ray
from autojudge.mining.options import MiningOptions
from autojudge.models.runtime import RuntimeOptions
from autojudge.workers import PairSpec
spec = PairSpec(sys.argv[1], sys.argv[2], RuntimeOptions(backend="torch", linear="default"))
options = MiningOptions(max_new_tokens=int(sys.argv[5]), window=0)
mine_on_ray(spec, "tests.toy_task:ToyTask", "all", sys.argv[3], options, address=sys.argv[4], workers=2)
"""


def test_a_killed_driver_resumes_with_nothing_lost_or_repeated(cluster, spec, local_labels, tmp_path,
                                                               tiny_draft_dir, tiny_target_dir):
    out = tmp_path / "driver"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tiny_draft_dir), str(tiny_target_dir), str(out),
                               cluster, str(MAX_NEW)], env=env, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    lines = out / "problems.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (lines.exists() and lines.read_text().count("\n") >= 1):
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    written = len(_lines(out))
    assert 1 <= written < 6  # killed mid-run
    store = mine_on_ray(spec, "tests.toy_task:ToyTask", "all", str(out), OPTIONS, workers=2)
    ids = [r["problem_id"] for r in _lines(out)]
    assert sorted(ids) == list(range(6))  # each problem once
    assert _labels(store.records) == local_labels


EVAL_MODES = ["target", "exact", "topk:2", "judge:0.5", "judge:0.6"]
EVAL_OPTIONS = DecodingOptions(window=6, max_new_tokens=24)
# What a record says of its decode, apart from where and when it ran.
DECODED = ("token_ids", "correct", "answer", "cycles", "accepted_mismatches", "stop_reason", "judge", "threshold")


@pytest.fixture(scope="module")
def judge_file(tmp_path_factory, tiny_target_dir, tiny_draft_dir):
    path = tmp_path_factory.mktemp("judge") / "judge.safetensors"
    constant_judge(tiny_pair(tiny_target_dir, tiny_draft_dir), 0.5).save(path)
    return path


@pytest.fixture(scope="module")
def local_decodes(tmp_path_factory, tiny_target_dir, tiny_draft_dir, judge_file):
    from autojudge.judge.model import Judge
    out = tmp_path_factory.mktemp("local-eval")
    run_eval(tiny_pair(tiny_target_dir, tiny_draft_dir), ToyTask(), "all", EVAL_MODES, out, EVAL_OPTIONS,
             judge=Judge.load(judge_file))
    return {(r["mode"], r["problem"]): [r[k] for k in DECODED] for r in read_records(out / "records.jsonl")}


def _decodes(out) -> dict:
    return {(r["mode"], r["problem"]): [r[k] for k in DECODED] for r in read_records(out / "records.jsonl")}


def test_two_workers_evaluate_what_a_local_run_does_each_problem_timed_by_one(cluster, spec, judge_file,
                                                                              local_decodes, tmp_path):
    out = tmp_path / "eval"
    rows = eval_on_ray(spec, "tests.toy_task:ToyTask", "all", EVAL_MODES, out, EVAL_OPTIONS, judge_path=judge_file,
                       workers=2, limit=3, pin=True)
    records = read_records(out / "records.jsonl")
    assert len(records) == 3 * len(EVAL_MODES)
    assert _decodes(out) == {key: local_decodes[key] for key in _decodes(out)}
    assert {r.mode for r in rows} == set(EVAL_MODES) and all(r.problems == 3 for r in rows)
    # Each worker is a run of its own, with its host; a problem's modes and baselines share one.
    runs = read_records(out / "runs.jsonl")
    assert len(runs) == 2 and all(run["host"] and run["parallel"] == 1 for run in runs)
    for problem in range(3):
        assert len({r["run"] for r in records if r["problem"] == problem}) == 1
    assert {r["run"] for r in records} <= {run["run"] for run in runs}
    assert (out / "summary.md").exists() and json.loads((out / "meta.json").read_text())["task"] == "toy"
    # Resumed with one problem more: only that problem is decoded.
    eval_on_ray(spec, "tests.toy_task:ToyTask", "all", EVAL_MODES, out, EVAL_OPTIONS, judge_path=judge_file,
                workers=2, limit=4)
    again = read_records(out / "records.jsonl")
    assert again[:len(records)] == records
    assert sorted((r["mode"], r["problem"]) for r in again[len(records):]) == sorted((m, 3) for m in EVAL_MODES)
    assert _decodes(out)[("judge:0.6", 3)] == local_decodes[("judge:0.6", 3)]


def test_an_evaluation_worker_that_dies_has_its_problem_decoded_again_by_its_replacement(
        cluster, marker, spec, judge_file, local_decodes, tmp_path):
    marker.unlink(missing_ok=True)  # the mining test's worker died already: arm it again
    out = tmp_path / "dying"
    eval_on_ray(spec, "tests.toy_task:DyingToyTask", "all", EVAL_MODES, out, EVAL_OPTIONS, judge_path=judge_file,
                workers=2, limit=4)
    assert marker.exists()  # a worker did die, checking problem 1's first answer
    records = read_records(out / "records.jsonl")
    assert sorted((r["mode"], r["problem"]) for r in records) == sorted(
        (m, p) for m in EVAL_MODES for p in range(4))  # each once
    assert _decodes(out) == {key: local_decodes[key] for key in _decodes(out)}
    runs = [run["run"] for run in read_records(out / "runs.jsonl")]
    assert len(runs) == 3  # two workers and the replacement
    [problem_1_run] = {r["run"] for r in records if r["problem"] == 1}
    assert problem_1_run == runs[2]


def test_a_missing_judge_file_is_refused_before_any_worker_starts(tmp_path, spec):
    from autojudge.errors import AutojudgeError
    with pytest.raises(AutojudgeError, match="no judge file at"):
        eval_on_ray(spec, "tests.toy_task:ToyTask", "all", ["exact", "judge:0.5"], tmp_path / "x", EVAL_OPTIONS,
                    judge_path=tmp_path / "missing.safetensors")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", ["mine", "eval"])
def test_a_worker_that_cannot_load_the_pair_stops_the_run_with_its_own_error(cluster, tiny_draft_dir, tmp_path,
                                                                              command):
    from autojudge.errors import AutojudgeError
    missing = tmp_path / "missing-target"
    bad = PairSpec(str(tiny_draft_dir), str(missing), RuntimeOptions(backend="torch", linear="default"))
    with pytest.raises(AutojudgeError) as failure:
        if command == "mine":
            mine_on_ray(bad, "tests.toy_task:ToyTask", "all", str(tmp_path / "run"), OPTIONS, workers=1, limit=1)
        else:
            eval_on_ray(bad, "tests.toy_task:ToyTask", "all", ["target"], tmp_path / "run", EVAL_OPTIONS, workers=1,
                        limit=1)
    # One line, the worker's own error, not a Ray traceback or a retried "worker died".
    assert str(failure.value) == f"a Ray worker could not start: {missing}: no such model directory"
