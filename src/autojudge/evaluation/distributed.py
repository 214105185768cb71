"""Evaluation on a Ray cluster: the same run directory, problems decoded by Ray actors.

    autojudge eval --task gsm8k --split eval --ray --ray-workers 2 --ray-pin   # a local cluster
    autojudge eval --task gsm8k --split eval --ray auto --ray-workers 16       # a running cluster

Each actor loads the pair (and the judge) once and decodes whole problems: every mode of
a problem in turn, single-stream, as a local run does, so a problem's modes and the
baselines they are set against are timed by one worker on one machine. Each actor is a
run of its own in runs.jsonl (its host named), so the report pairs speeds only within a
worker; accuracy and tokens per cycle do not depend on the machine. Records stream back
to the driver, which alone writes the run directory:
- killing the driver loses at most the decodes in flight: rerunning the command resumes
  from records.jsonl, with the baselines of the problems it completes decoded again;
- an actor that dies mid-problem (a node lost, a process killed) is replaced, and the
  problem's remaining modes go to the front of the queue, with its baselines, so that
  the new worker's run holds the pairs its speeds need. A problem that kills its
  worker `MAX_ATTEMPTS` times stops the run with its id.
"""

from __future__ import annotations

import tempfile
from collections import deque
from pathlib import Path

from autojudge.decoding.modes import DecodingOptions
from autojudge.errors import AutojudgeError
from autojudge.evaluation.methods import Method, parse_methods
from autojudge.evaluation.rows import ModeSummary
from autojudge.evaluation.run import (
    decode_record,
    decoding_description,
    eval_options,
    evaluate,
    judge_thresholds,
    register_run,
)
from autojudge.runfiles import host_description
from autojudge.workers import MAX_ATTEMPTS, PairSpec, pin_to_cores, ray_cluster, ray_get, start_failure


class EvalWorker:
    """One Ray actor: the pair and the judge loaded once, then decode after decode."""

    def __init__(self, spec: PairSpec, task_name: str, split: str, methods: list[Method], options: DecodingOptions,
                 judge_file: bytes | None, pin: tuple[int, int] | None = None):
        from autojudge.judge.shipped import load_judge
        from autojudge.tasks import get_task
        if pin is not None:  # before loading: llama.cpp sizes its thread pool by the cores it may use
            pin_to_cores(*pin)
        self.pair = spec.load()
        self.task = get_task(task_name)
        self.problems = {p.id: p for p in self.task.load(split)}
        self.methods = {m.name: m for m in methods}
        self.options = options
        self.judge = None
        if judge_file is not None:  # the driver's file, sent as bytes: the nodes share no disk
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "judge.safetensors"
                path.write_bytes(judge_file)
                self.judge = load_judge(self.pair, path, task=self.task.name)
        self.thresholds = judge_thresholds(methods, self.judge)
        # Hashed once: every judge-mode record carries it.
        self.judge_fingerprint = self.judge.fingerprint() if self.judge is not None else None

    def describe(self) -> dict:
        """The pair as the run's meta names it (the driver loads no model)."""
        return decoding_description(self.pair)

    def host(self) -> str:
        return host_description()

    def fingerprint(self) -> str | None:
        return self.judge_fingerprint

    def decode(self, problem_id: int, mode: str, run: str) -> dict:
        judge = self.judge if self.methods[mode].needs_judge else None
        return decode_record(self.pair, self.task, self.problems[problem_id], self.methods[mode], self.options,
                             judge, self.judge_fingerprint if judge is not None else None, self.thresholds.get(mode),
                             run, 1)


def eval_on_ray(spec: PairSpec, task_name: str, split: str, modes: list[str | Method], out: str | Path,
                options: DecodingOptions | None = None, *, judge_path: str | Path | None = None,
                address: str | None = None, workers: int = 2, cpus_per_worker: float = 1,
                gpus_per_worker: float = 0, pin: bool = False, limit: int | None = None,
                rescore: bool = False, retime: bool = False) -> list[ModeSummary]:
    """Evaluate like `autojudge.evaluation.run.run_eval`, the problems spread over
    `workers` Ray actors; the same records, report and resumption.

    `task_name` is what `autojudge.tasks.get_task` takes (importable on the workers too).
    `judge_path`: the judge file for judge modes (default: the shipped one for the task).
    `pin` pins worker i to cores i * c, ... (c = `cpus_per_worker`) of its node, as
    mining on Ray does (autojudge.mining.distributed)."""
    from autojudge.judge.shipped import shipped_judge_path
    from autojudge.tasks import get_task
    task = get_task(task_name)
    methods = parse_methods(modes)
    if any(m.runtime is not None for m in methods):
        raise ValueError("methods on named runtimes run locally (autojudge bench), not on Ray")
    options = eval_options(options, task)
    judge_file = None
    if any(m.needs_judge for m in methods):
        path = Path(judge_path) if judge_path is not None else shipped_judge_path(task.name, options.drafter)
        if not path.is_file():
            raise AutojudgeError(f"no judge file at {path}")
        judge_file = path.read_bytes()
    names = [m.name for m in methods]
    lossless = [m.name for m in methods if m.lossless]
    with ray_cluster(address, workers * cpus_per_worker) as ray:
        from ray.exceptions import RayActorError
        actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(EvalWorker)

        def new_actor(slot: int):
            """The worker in `slot` (0..workers-1; a replacement takes its slot, so its cores)."""
            cores = (slot, max(1, int(cpus_per_worker))) if pin else None
            return actor_class.remote(spec, task_name, split, methods, options, judge_file, cores)

        actors = [new_actor(slot) for slot in range(workers)]
        # The meta and the judge's fingerprint come from a worker: the driver loads no model.
        described, fingerprint = ray_get(ray, [actors[0].describe.remote(), actors[0].fingerprint.remote()])

        def decode_on_actors(queue: list, run: str, keep) -> None:
            queue = deque(queue)
            attempts: dict[int, int] = {}
            pending: dict = {}  # object ref -> (slot, actor, its run, problem, the modes left after this one)
            started = 0  # actors started so far: each a run of its own

            def start(actor) -> tuple:
                """The actor and its run, registered with its host."""
                nonlocal started
                started += 1
                worker_run = f"{run}-w{started}"
                register_run(out, worker_run, ray_get(ray, actor.host.remote()))
                return actor, worker_run

            def hand_out(slot: int, actor, worker_run: str, problem=None, left=()) -> None:
                if problem is None:
                    if not queue:
                        return
                    problem, left = queue.popleft()
                    attempts[problem.id] = attempts.get(problem.id, 0) + 1
                mode, *rest = left
                pending[actor.decode.remote(problem.id, mode, worker_run)] = (slot, actor, worker_run, problem,
                                                                              left, rest)

            for slot, actor in enumerate(actors):
                hand_out(slot, *start(actor))
            while pending:
                [ready], _ = ray.wait(list(pending), num_returns=1)
                slot, actor, worker_run, problem, left, rest = pending.pop(ready)
                try:
                    record = ray.get(ready)
                except RayActorError as exc:  # ActorDiedError among them
                    if (failure := start_failure(exc)) is not None:  # its replacement would fail alike
                        raise failure from None
                    if attempts[problem.id] >= MAX_ATTEMPTS:
                        raise AutojudgeError(f"problem {problem.id} killed its Ray worker {MAX_ATTEMPTS} times; "
                                             "the run stops (rerun to resume)") from None
                    # Its modes not yet decoded, and the baselines again: the replacement is another run.
                    again = [m for m in names if m in left or m in lossless]
                    queue.appendleft((problem, again))
                    hand_out(slot, *start(new_actor(slot)))  # on the same cores
                    continue
                keep(record)
                if rest:
                    hand_out(slot, actor, worker_run, problem, rest)
                else:
                    hand_out(slot, actor, worker_run)

        return evaluate(task, split, methods, out, options, described, fingerprint, decode_on_actors, limit=limit,
                        rescore=rescore, retime=retime)
