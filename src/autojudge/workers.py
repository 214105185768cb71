"""Work over a loaded pair spread out: in threads, each on its own sequences of the pair's
models (their passes merged on llama.cpp), or on Ray workers that each load the pair.
Mining and evaluation both run this way.
"""

from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from autojudge.errors import AutojudgeError
from autojudge.models.backend import ModelPair
from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from autojudge.models.runtime import RuntimeOptions


def run_side_by_side(pair: ModelPair, n: int, work, failed: threading.Event | None = None):
    """work(pair) here when n is 1; else work(p) in n threads, each on its own sequences
    p of the pair's models, their passes merged (llama.cpp). Returns the gate (its
    statistics), or None."""
    if n == 1:
        work(pair)
        return None
    pairs, gate = pair.parallel(n)

    def member(worker_pair: ModelPair) -> None:
        with gate.member():
            work(worker_pair)

    run_threads([functools.partial(member, p) for p in pairs], failed or threading.Event())
    return gate


def run_threads(jobs: list, failed: threading.Event) -> None:
    """Run each job in a thread; the first error stops the others (after their problem
    in flight) and is raised here. Daemon threads: Ctrl-C ends the process at once."""
    errors: list[BaseException] = []

    def guarded(job) -> None:
        try:
            job()
        except BaseException as exc:
            errors.append(exc)
            failed.set()

    threads = [threading.Thread(target=guarded, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)  # a timed join lets Ctrl-C through
    if errors:
        raise errors[0]


# A problem that kills its Ray worker this many times stops the run, naming it.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class PairSpec:
    """What a worker needs to load the pair itself: load_pair's arguments (pickled to it)."""
    draft: str | None = DEFAULT_DRAFT
    target: str = DEFAULT_TARGET
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    def load(self):
        from autojudge.models.loading import load_pair
        return load_pair(self.draft, self.target, self.runtime)


def pin_to_cores(slot: int, per_worker: int) -> None:
    """Pin this process to cores slot * per_worker, ..., (counted modulo the cores it may
    use): Ray reserves CPUs but does not pin, and workers whose thread pools float over
    the same cores slow each other down."""
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[(slot * per_worker + j) % len(cores)] for j in range(per_worker)})


def start_failure(exc: Exception) -> AutojudgeError | None:
    """A Ray worker that could not start (its pair or its task failed to load: a model
    path wrong on its node, say) as one line, the worker's own error; None for a worker
    lost mid-work, which a replacement may fix."""
    if not getattr(exc, "actor_init_failed", False):
        return None
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    name, colon, message = (lines[-1] if lines else str(exc)).partition(": ")
    cause = message if colon and name.startswith("autojudge.errors.") else f"{name}{colon}{message}"
    return AutojudgeError(f"a Ray worker could not start: {cause}")


def ray_get(ray, refs):
    """ray.get, a worker's failure to start told in one line (start_failure)."""
    from ray.exceptions import RayActorError
    try:
        return ray.get(refs)
    except RayActorError as exc:
        failure = start_failure(exc)
        if failure is not None:
            raise failure from None
        raise


@contextmanager
def ray_cluster(address: str | None, cpus: float):
    """Ray, connected: to the cluster at `address`, or to a local one of `cpus` CPUs
    started here (and shut down on leaving). Within a running Ray session, that one."""
    try:
        import ray
    except ImportError:
        raise AutojudgeError("running on Ray needs Ray: pip install 'autojudge[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({"num_cpus": max(1, int(cpus))} if address is None else {}))
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
