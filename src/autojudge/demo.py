"""The main job on the embedded default: fetch the pair once, answer GSM8K eval problems.

Each problem is answered by the target alone, by exact speculative decoding (lossless:
the target's own greedy answer) and by judge decoding with the judge shipped for the
default pair. The summary sets their tokens per cycle and tokens/s side by side, each
speed as a ratio to the target alone measured on the same problems in the same process:
the one comparison that says whether speculation pays on this machine.
"""

from __future__ import annotations

import textwrap
from typing import Sequence

from autojudge.decoding import defaults
from autojudge.decoding.modes import DecodingOptions, Mode, decode, judge_mode, parse_mode
from autojudge.judge.shipped import load_judge
from autojudge.models.backend import ModelPair
from autojudge.models.loading import load_pair
from autojudge.models.runtime import RuntimeOptions
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks.base import Problem, Task, task_budget
from autojudge.tasks.gsm8k import GSM8K

# What the summary's ratios mean on the machine the project is measured on (docs/speed.md).
ON_A_SMALL_CPU = (
    "On a 2-core CPU a draft model gains little: llama.cpp reads several tokens in one pass for nearly the cost "
    "of reading them one at a time, and a draft token costs 0.4 to 0.5 of a target token, so judge decoding runs "
    "at 0.87x to 0.93x the target alone. Exact decoding here drafts by lookup, for free, where lookups have paid: "
    "1.00x on GSM8K, 1.25x on HumanEval. What the judge gains is tokens per cycle, which become speed where a "
    "pass over many tokens costs about what one costs, as on a GPU (docs/speed.md).")


def run_demo(n: int = 3, options: DecodingOptions | None = None, *, runtime: RuntimeOptions = RuntimeOptions(),
             judge_path: str | None = None, judged: Mode | None = None) -> int:
    """Decode the first `n` GSM8K eval problems with the target alone, exact decoding
    and the judge mode `judged` (defaults.JUDGE_MODE unless given), side by side; `options`
    default to decoding.defaults at GSM8K's budget."""
    task = GSM8K()
    options = options or DecodingOptions(defaults.WINDOW, task_budget(task), defaults.DRAFT_P_MIN,
                                         defaults.DRAFT_LENGTH, defaults.DRAFTER)
    print("loading the default pair (the first run downloads ~1.5 GB of GGUF files and makes their Q4_0 copies, "
          "a few minutes)")
    pair = load_pair(defaults.DRAFT, defaults.TARGET, runtime=runtime)
    judge = load_judge(pair, judge_path, task="gsm8k")
    print(f"runtime: target {pair.target.describe()['backend']}, draft {pair.draft.describe()['backend']}; "
          f"window {options.window}; judge {judge_path or 'shipped'} (validation AUC "
          f"{judge.meta['validation_auc']:.3f})")
    modes = (parse_mode("target"), parse_mode("exact"), judged or judge_mode())
    side_by_side(pair, task, task.load("eval")[:n], modes, options, judge)
    return 0


def side_by_side(pair: ModelPair, task: Task, problems: Sequence[Problem], modes: Sequence[Mode],
                 options: DecodingOptions, judge=None) -> None:
    """Answer each problem in every mode, each from a cold cache; then a summary of
    accuracy, tokens per cycle and tokens/s, each speed against the first mode's."""
    labels = {mode: mode.shown(judge) for mode in modes}
    width = max(map(len, labels.values()))
    totals = {mode: {"tokens": 0, "seconds": 0.0, "cycles": 0, "correct": 0} for mode in modes}
    for problem in problems:
        print(f"\n=== {task.name} #{problem.id}")
        print(textwrap.fill(problem.prompt, 100))
        for mode in modes:
            for model in (pair.target, pair.draft):
                model.reset()  # each mode from a cold cache, so their speeds compare fairly
            result = decode(pair, chat_prompt_ids(pair.tokenizer, task.messages(problem)), mode, options,
                            judge=judge if mode.needs_judge else None)
            text = pair.tokenizer.decode(result.token_ids, skip_special_tokens=True)
            stats, correct = result.stats, task.is_correct(text, problem)
            total = totals[mode]
            total["tokens"] += stats.new_tokens
            total["seconds"] += stats.seconds
            total["cycles"] += stats.cycles
            total["correct"] += correct
            last = text.strip().splitlines()[-1] if text.strip() else "(empty)"
            print(f"--- {labels[mode]:{width}s} answer {task.extract_answer(text, problem)} (gold "
                  f"{problem.reference}, {'correct' if correct else 'wrong'}); {stats.new_tokens} tokens, "
                  f"{stats.mean_accepted:.2f} tokens/cycle, {stats.tokens_per_second:.2f} tok/s, "
                  f"{stats.accepted_mismatches} mismatches accepted | {textwrap.shorten(last, 60)}")
    # Over all problems: a mode's tokens over its cycles and over its seconds. The target
    # alone's cycles are its passes, one token each.
    rates = {mode: (t["tokens"] / max(t["cycles"], 1), t["tokens"] / max(t["seconds"], 1e-9))
             for mode, t in totals.items()}
    baseline = rates[modes[0]][1]
    print(f"\nsummary over {len(problems)} problem(s), in one process on this machine:")
    print(f"  {'mode':{width}s}  accuracy  tokens/cycle    tok/s  vs {labels[modes[0]]}")
    for mode, (per_cycle, per_second) in rates.items():
        print(f"  {labels[mode]:{width}s}  {totals[mode]['correct']:>4d}/{len(problems):<3d}  {per_cycle:12.2f}  "
              f"{per_second:7.2f}  {per_second / baseline:.2f}x")
    print("\n" + textwrap.fill(ON_A_SMALL_CPU, 100))
