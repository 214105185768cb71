"""The main job on the embedded default: fetch the pair once, answer GSM8K eval problems.

Each problem is answered by exact speculative decoding (lossless: the target's own
greedy answer) and by judge decoding with the judge shipped for the default pair, so
the extra accepted tokens per cycle, the speed and the answers are side by side.
"""

from __future__ import annotations

import textwrap

from autojudge.decoding import defaults
from autojudge.decoding.modes import DecodingOptions, decode, judge_mode, parse_mode
from autojudge.judge.shipped import load_judge
from autojudge.models.loading import load_pair
from autojudge.models.runtime import RuntimeOptions
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks.base import task_budget
from autojudge.tasks.gsm8k import GSM8K


def run_demo(n: int = 3, options: DecodingOptions | None = None, *, runtime: RuntimeOptions = RuntimeOptions(),
             judge_path: str | None = None, threshold: float | None = None, recall: float = 0.9) -> int:
    """Decode the first `n` GSM8K eval problems in exact and judge mode, side by side;
    `options` default to decoding.defaults at GSM8K's budget."""
    task = GSM8K()
    options = options or DecodingOptions(defaults.WINDOW, task_budget(task), defaults.DRAFT_P_MIN,
                                         defaults.DRAFT_LENGTH, defaults.DRAFTER)
    problems = task.load("eval")[:n]
    print("loading the default pair (the first run downloads ~1.5 GB of GGUF files and makes their Q4_0 copies, "
          "a few minutes)")
    pair = load_pair(defaults.DRAFT, defaults.TARGET, runtime=runtime)
    judge = load_judge(pair, judge_path, task="gsm8k")
    judged = parse_mode(judge_mode(threshold) if threshold is not None else f"judge@{recall}").with_threshold(judge)
    threshold, judged = judged.values[0], judged.name  # judge@R as judge:T, the threshold it stands for
    modes = ("exact", judged)
    print(f"runtime: target {pair.target.describe()['backend']}, draft {pair.draft.describe()['backend']}; "
          f"window {options.window}; judge {judge_path or 'shipped'} (validation AUC "
          f"{judge.meta['validation_auc']:.3f}), threshold {threshold:.4g}")
    totals = {mode: {"tokens": 0, "seconds": 0.0, "cycles": 0, "correct": 0} for mode in modes}
    for problem in problems:
        print(f"\n=== GSM8K #{problem.id}")
        print(textwrap.fill(problem.prompt, 100))
        for mode in modes:
            for model in (pair.target, pair.draft):
                model.reset()  # each mode from a cold cache, so their speeds compare fairly
            result = decode(pair, chat_prompt_ids(pair.tokenizer, task.messages(problem)), mode, options,
                            judge=judge)
            text = pair.tokenizer.decode(result.token_ids, skip_special_tokens=True)
            stats, correct = result.stats, task.is_correct(text, problem)
            total = totals[mode]
            total["tokens"] += stats.new_tokens
            total["seconds"] += stats.seconds
            total["cycles"] += stats.cycles
            total["correct"] += correct
            last = text.strip().splitlines()[-1] if text.strip() else "(empty)"
            print(f"--- {mode:12s} answer {task.extract_answer(text, problem)} (gold {problem.reference}, "
                  f"{'correct' if correct else 'wrong'}); {stats.new_tokens} tokens, "
                  f"{stats.mean_accepted:.2f} accepted tokens/cycle, {stats.tokens_per_second:.2f} tok/s, "
                  f"{stats.accepted_mismatches} mismatches accepted | {textwrap.shorten(last, 60)}")
    print(f"\nsummary over {len(problems)} problem(s):")
    # (accepted tokens per cycle, tokens per second) of each mode over all problems
    rates = {mode: (t["tokens"] / t["cycles"], t["tokens"] / t["seconds"]) for mode, t in totals.items()}
    for mode, (per_cycle, per_second) in rates.items():
        print(f"  {mode:12s} accuracy {totals[mode]['correct']}/{len(problems)}, "
              f"{per_cycle:.2f} accepted tokens/cycle, {per_second:.2f} tok/s")
    (exact_cycle, exact_second), (judge_cycle, judge_second) = rates["exact"], rates[judged]
    print(f"  judge vs exact: {judge_cycle / exact_cycle:.2f}x accepted tokens per cycle, "
          f"{judge_second / exact_second:.2f}x tokens/s")
    return 0
