"""Single-stream tokens/s with and without a pass plan, side by side in one run.

Every method decodes every problem twice, once reading its passes as given and once as
the pass plan says (autojudge.models.passplan), on the same loaded models, interleaved
problem by problem so that both see the same machine:

    taskset -c 1 python scripts/pass_plan_bench.py --pass-costs docs/bench/pass-shapes/costs-q4_k_m.json \
        --n 4 --windows 3,7,8,15,16 --out docs/bench/pass-shapes/planned-q4_k_m.md

The costs file (`autojudge costs --backend llamacpp --out FILE`, same models, same
threads) names the pair; pin the process to one core, as the costs were measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from autojudge.decoding.modes import DecodingOptions, decode
from autojudge.models.loading import load_pair
from autojudge.models.passplan import load_pass_plan
from autojudge.models.runtime import RuntimeOptions
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks import get_task
from autojudge.tasks.base import task_budget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pass-costs", required=True, help="an `autojudge costs --out` file of the pair")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--n", type=int, default=4, help="the first N problems of the eval split")
    parser.add_argument("--windows", default="3,7,8,15,16", help="exact decoding's windows")
    parser.add_argument("--out", help="write the table here too (markdown)")
    args = parser.parse_args(argv)

    pair_names = json.loads(Path(args.pass_costs).read_text())["pair"]
    pair = load_pair(pair_names["draft"], pair_names["target"], RuntimeOptions(backend="llamacpp"))
    plans = {model: load_pass_plan(args.pass_costs, model.name, model.describe())
             for model in (pair.draft, pair.target)}
    task = get_task(args.task)
    problems = task.load("eval")[: args.n]
    budget = task_budget(task)
    methods = [("target", 1)] + [("exact", int(w)) for w in args.windows.split(",")]
    totals = {(mode, window, planned): [0, 0.0] for mode, window in methods for planned in (False, True)}
    identical = {key: 0 for key in totals}
    # Untimed: the first passes of a process pay for page faults and kernel set-up.
    warm_up = chat_prompt_ids(pair.tokenizer, task.messages(problems[0]))
    for mode, window in methods:
        decode(pair, warm_up, mode, DecodingOptions(window=window, max_new_tokens=32))
    with tqdm(total=len(problems) * len(totals), unit="run") as bar:
        for index, problem in enumerate(problems):
            ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
            reference = None
            for mode, window in methods:
                # Which goes first alternates, so that neither gains from the other's warm cache.
                for planned in ((False, True) if index % 2 == 0 else (True, False)):
                    for model, plan in plans.items():
                        model.pass_plan = plan if planned else None
                    generation = decode(pair, ids, mode, DecodingOptions(window=window, max_new_tokens=budget))
                    key = (mode, window, planned)
                    totals[key][0] += generation.stats.new_tokens
                    totals[key][1] += generation.stats.seconds
                    if reference is None:  # the target's own output, from its first run
                        reference = generation.token_ids
                    identical[key] += generation.token_ids == reference
                    bar.update()
    target_speed = totals["target", 1, False][0] / totals["target", 1, False][1]
    lines = [f"{args.task}, first {len(problems)} eval problems, <= {budget} new tokens, one llama.cpp thread; "
             f"pair of {Path(args.pass_costs).name}; the plan from the same file", "",
             "| method | tok/s as given | tok/s planned | planned / as given | as given vs target | "
             "planned vs target | outputs identical to the target's (given, planned) |",
             "|---|---|---|---|---|---|---|"]
    for mode, window in methods:
        given, planned = (totals[mode, window, p][0] / totals[mode, window, p][1] for p in (False, True))
        name = "target" if mode == "target" else f"exact/w{window}"
        lines.append(f"| {name} | {given:.2f} | {planned:.2f} | {planned / given:.2f}x | "
                     f"{given / target_speed:.2f}x | {planned / target_speed:.2f}x | "
                     f"{identical[mode, window, False]}/{len(problems)}, "
                     f"{identical[mode, window, True]}/{len(problems)} |")
    changed = {model.name: plan.changed() for model, plan in plans.items()}
    lines += ["", "Sizes the plan reads otherwise (tokens: passes as (real, padded)):", ""]
    lines += [f"- {name}: " + "; ".join(f"{n}: {list(chunks)}" for n, chunks in sorted(sizes.items()) if n <= 17)
              for name, sizes in changed.items()]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
