"""Labels per hour of `autojudge mine --ray` with 1 and with 2 workers, on the same problems.

    python scripts/bench_ray_mining.py --task squad --limit 24 --out docs/bench/ray-squad

Each worker is pinned to a core of its own (--ray-pin) and runs llama.cpp on one thread;
the clock is the driver's wall clock from the first worker's start to the last problem
written (Ray's start-up and the models' loading included, as a user would see it). Each
configuration writes an ordinary run directory under --out (resumed if it exists, in
which case its time is not measured again), and summary.md compares them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from autojudge.mining.distributed import PairSpec, mine_on_ray
from autojudge.mining.options import MiningOptions
from autojudge.tasks import get_task
from autojudge.tasks.base import task_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="squad")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.environ.setdefault("RAY_worker_niceness", "0")  # Ray lowers its workers' priority by default
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    task = get_task(args.task)
    for workers in (int(w) for w in args.workers.split(",")):
        run = out / f"{workers}-worker{'s' if workers > 1 else ''}"
        if str(workers) in timings:
            continue
        start = time.perf_counter()
        options = MiningOptions(max_new_tokens=task_budget(task), window=0)
        store = mine_on_ray(PairSpec(), args.task, "mine", str(run), options, workers=workers, cpus_per_worker=1,
                            limit=args.limit, pin=True)
        labels = sum(len(r["mismatches"]) for r in store.records)
        timings[str(workers)] = {"seconds": time.perf_counter() - start, "labels": labels,
                                 "problems": len(store.records)}
        timings_path.write_text(json.dumps(timings, indent=2) + "\n")
    rows = ["| workers (one core each) | problems | labels | wall-clock minutes | labels/hour | "
            "labels/hour per worker | vs 1 worker |", "|---|---|---|---|---|---|---|"]
    base = None
    for workers, t in sorted(timings.items(), key=lambda kv: int(kv[0])):
        rate = t["labels"] / (t["seconds"] / 3600)
        base = base or rate
        rows.append(f"| {workers} | {t['problems']} | {t['labels']} | {t['seconds'] / 60:.1f} | {rate:.0f} | "
                    f"{rate / int(workers):.0f} | {rate / base:.2f}x |")
    header = (f"{args.task}, first {args.limit} problems of the mine split, default pair on llama.cpp, "
              f"`mine --ray --ray-pin` on a local cluster of this {os.cpu_count()}-core machine; wall clock "
              f"including Ray's start and the pair's loading (`python scripts/bench_ray_mining.py --task "
              f"{args.task} --limit {args.limit} --out {args.out}`)")
    (out / "summary.md").write_text(header + "\n\n" + "\n".join(rows) + "\n")
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
