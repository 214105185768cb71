"""Speculative decoding against the target alone on this machine: GSM8K and HumanEval
problems through the target alone, the old defaults (the Q4_K_M pair, window 8 and 16,
p-min 0), the new defaults (autojudge.decoding.defaults), the draft-length controller,
the lookup drafter and the judge, in one process; tok/s and the ratio to the target
alone of the same pair. Resumable: rerun the same command to finish or extend it.

    taskset -c 1 python scripts/bench_speed.py --n 20 --out docs/bench/speed-defaults

(one core, so one llama.cpp thread per model; a quiet core, or the speeds mean nothing).
"""

from __future__ import annotations

import argparse

from autojudge.decoding import defaults
from autojudge.decoding.modes import parse_mode
from autojudge.evaluation.speed import default_configs, run_speed_bench, select_configs
from autojudge.judge.shipped import load_judge
from autojudge.models.loading import load_pair
from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET
from autojudge.models.runtime import RuntimeOptions
from autojudge.tasks import get_task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="the first N eval problems of each task")
    parser.add_argument("--tasks", default="gsm8k,humaneval")
    parser.add_argument("--out", required=True, help="run directory, e.g. docs/bench/speed-defaults")
    parser.add_argument("--old-draft", default=DEFAULT_DRAFT)
    parser.add_argument("--old-target", default=DEFAULT_TARGET)
    parser.add_argument("--new-draft", default=defaults.DRAFT)
    parser.add_argument("--new-target", default=defaults.TARGET)
    parser.add_argument("--backend", default="auto", help="runtime of both pairs (default: auto, llama.cpp on a CPU)")
    parser.add_argument("--no-judge", action="store_true", help="leave out the judge configurations")
    parser.add_argument("--judge", action="append", default=[], metavar="TASK=PATH",
                        help="a judge file for a task's draft-model configurations instead of the shipped one")
    parser.add_argument("--lookup-judge", action="append", default=[], metavar="TASK=PATH",
                        help="a target-only judge file for a task's lookup configurations instead of the shipped one")
    parser.add_argument("--configs", help="only these configurations, comma-separated (their baselines come "
                        "with them; default: all)")
    parser.add_argument("--max-new-tokens", type=int, help="default: each task's budget")
    args = parser.parse_args()

    try:
        configs = select_configs(args.configs, judge=not args.no_judge) if args.configs else None
    except ValueError as error:
        parser.error(str(error))
    runtime = RuntimeOptions(backend=args.backend)
    tasks = [get_task(name) for name in args.tasks.split(",") if name]
    needed = {c.pair for c in configs} if configs else {"old", "new"}
    named = {"old": (args.old_draft, args.old_target), "new": (args.new_draft, args.new_target)}
    pairs = {key: load_pair(*named[key], runtime) for key in sorted(needed | {"new"})}
    given = {"model": dict(item.split("=", 1) for item in args.judge),
             "lookup": dict(item.split("=", 1) for item in args.lookup_judge)}
    configs = configs or default_configs(judge=not args.no_judge)
    # The judges of the drafters the judge configurations use (a task's read one target layer).
    wanted = {c.options.get("drafter", "model") for c in configs if parse_mode(c.mode).needs_judge}
    judges = {t.name: {d: load_judge(pairs["new"], given[d].get(t.name), task=t.name, drafter=d) for d in wanted}
              for t in tasks}
    print(run_speed_bench(pairs, tasks, args.out, args.n, judges=judges,
                          configs=configs, max_new_tokens=args.max_new_tokens))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
