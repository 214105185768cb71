"""Throughput of `autojudge mine --ray` or `autojudge eval --ray` with 1 and with 2
workers, on the same problems.

    python scripts/bench_ray.py --task squad --limit 16 --out docs/bench/ray-squad
    python scripts/bench_ray.py --job eval --task humaneval --limit 6 --modes target,exact \\
        --draft qwen2.5-coder-0.5b-instruct-q4_0 --target qwen2.5-coder-1.5b-instruct-q4_0 \\
        --out docs/bench/ray-eval-humaneval

Each worker is pinned to a core of its own (--ray-pin) and runs llama.cpp on one thread;
the clock is the driver's wall clock from the first worker's start to the last result
written (Ray's start-up and the models' loading included, as a user would see it). Each
configuration writes an ordinary run directory under --out (resumed if it exists, in
which case its time is not measured again), and summary.md compares them: the work per
hour (mining: labels; evaluation: decodes, and the decoded tokens/s of a worker, which
shows whether workers slow each other) and how much of it came out the same.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from autojudge.evaluation.distributed import eval_on_ray
from autojudge.mining.distributed import mine_on_ray
from autojudge.mining.options import MiningOptions
from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from autojudge.runfiles import read_records
from autojudge.tasks import get_task
from autojudge.tasks.base import task_budget
from autojudge.workers import PairSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=["mine", "eval"], default="mine")
    parser.add_argument("--task", default="squad")
    parser.add_argument("--split", help="default: mine for mining, eval for evaluation")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--modes", default="target,exact", help="evaluation's modes")
    parser.add_argument("--draft", default=DEFAULT_DRAFT)
    parser.add_argument("--target", default=DEFAULT_TARGET)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.environ.setdefault("RAY_worker_niceness", "0")  # Ray lowers its workers' priority by default
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    task = get_task(args.task)
    split = args.split or args.job
    spec = PairSpec(args.draft, args.target)
    runs = {}
    for workers in (int(w) for w in args.workers.split(",")):
        run = runs[workers] = out / f"{workers}-worker{'s' if workers > 1 else ''}"
        if str(workers) in timings:
            continue
        start = time.perf_counter()
        if args.job == "mine":
            options = MiningOptions(max_new_tokens=task_budget(task), window=0)
            store = mine_on_ray(spec, args.task, split, str(run), options, workers=workers, cpus_per_worker=1,
                                limit=args.limit, pin=True)
            work = {"labels": sum(len(r["mismatches"]) for r in store.records), "problems": len(store.records)}
        else:
            eval_on_ray(spec, args.task, split, args.modes.split(","), run, workers=workers, limit=args.limit,
                        pin=True)
            records = read_records(run / "records.jsonl")
            work = {"decodes": len(records), "problems": len({r["problem"] for r in records}),
                    "tokens": sum(r["new_tokens"] for r in records),
                    "decode_seconds": sum(r["seconds"] for r in records)}
        timings[str(workers)] = {"seconds": time.perf_counter() - start, **work}
        timings_path.write_text(json.dumps(timings, indent=2) + "\n")
    unit = "labels" if args.job == "mine" else "decodes"
    rows = [f"| workers (one core each) | problems | {unit} | wall-clock minutes | {unit}/hour | "
            f"{unit}/hour per worker | vs 1 worker |" + (" decoded tok/s of a worker |" if unit == "decodes" else ""),
            "|---|---|---|---|---|---|---|" + ("---|" if unit == "decodes" else "")]
    base = None
    for workers, t in sorted(timings.items(), key=lambda kv: int(kv[0])):
        rate = t[unit] / (t["seconds"] / 3600)
        base = base or rate
        rows.append(f"| {workers} | {t['problems']} | {t[unit]} | {t['seconds'] / 60:.1f} | {rate:.0f} | "
                    f"{rate / int(workers):.0f} | {rate / base:.2f}x |"
                    + (f" {t['tokens'] / t['decode_seconds']:.2f} |" if unit == "decodes" else ""))
    command = (f"python scripts/bench_ray.py{' --job eval' if args.job == 'eval' else ''} --task {args.task} "
               f"--limit {args.limit}" + (f" --modes {args.modes} --draft {args.draft} --target {args.target}"
                                          if args.job == "eval" else "") + f" --out {args.out}")
    header = (f"{args.task}, first {args.limit} problems of the {split} split, "
              f"{'default pair' if spec == PairSpec() else f'{args.draft} / {args.target}'} on llama.cpp, "
              f"`{args.job} --ray --ray-pin` on a local cluster of this {os.cpu_count()}-core machine; wall clock "
              f"including Ray's start and the pair's loading (`{command}`)")
    lines = [header, "", *rows]
    if args.job == "eval" and len(runs) > 1:
        lines += ["", _same_tokens(runs)]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print((out / "summary.md").read_text())


def _same_tokens(runs: dict[int, Path]) -> str:
    """How many decodes came out token for token the same in every configuration. Every
    timed decode starts with empty caches, so which worker decoded it, and after which
    problems, should change nothing."""
    decoded = [{(r["mode"], r["problem"]): r["token_ids"] for r in read_records(run / "records.jsonl")}
               for run in runs.values()]
    keys = set.intersection(*(set(d) for d in decoded))
    same = sum(all(d[key] == decoded[0][key] for d in decoded) for key in keys)
    return f"The same tokens in every configuration: {same} of {len(keys)} decodes."


if __name__ == "__main__":
    main()
