"""Mining on a real local Ray cluster: the labels of local mining, a worker lost, a driver killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")

from autojudge.mining.distributed import PairSpec, mine_on_ray  # noqa: E402
from autojudge.mining.options import MiningOptions  # noqa: E402
from autojudge.mining.run import mine  # noqa: E402
from autojudge.models.runtime import RuntimeOptions  # noqa: E402
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
from autojudge.mining.distributed import PairSpec, mine_on_ray
from autojudge.mining.options import MiningOptions
from autojudge.models.runtime import RuntimeOptions
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
