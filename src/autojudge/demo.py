"""The main job on the embedded default: fetch the pair once, answer GSM8K eval problems.

Each problem is answered twice, by the target alone and by exact speculative
decoding, so the speed-up and the lossless guarantee are visible side by side.
"""

from __future__ import annotations

import textwrap

from autojudge.decoding.modes import decode
from autojudge.models.loading import load_pair
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks.gsm8k import GSM8K

MODES = ("target", "exact")


def run_demo(args) -> int:
    task = GSM8K()
    problems = task.load("eval")[: args.n]
    print("loading the default pair (the first run downloads ~1.6 GB and converts it, a few minutes)")
    pair = load_pair(backend=args.backend)
    print(f"runtime: target {pair.target.describe()['backend']}, draft {pair.draft.describe()['backend']}")
    totals = {mode: [0, 0.0] for mode in MODES}
    for problem in problems:
        print(f"\n=== GSM8K #{problem.id}")
        print(textwrap.fill(problem.prompt, 100))
        outputs = {}
        for mode in MODES:
            for model in (pair.target, pair.draft):
                model.reset()  # each mode from a cold cache, so their speeds compare fairly
            result = decode(pair, chat_prompt_ids(pair.tokenizer, task.messages(problem)), mode,
                            window=args.window)
            text = pair.tokenizer.decode(result.token_ids, skip_special_tokens=True)
            outputs[mode] = result.token_ids
            stats = result.stats
            totals[mode][0] += stats.new_tokens
            totals[mode][1] += stats.seconds
            verdict = "correct" if task.is_correct(text, problem) else "wrong"
            print(f"--- {mode:6s} answer {task.extract_answer(text)} (gold {problem.reference}, {verdict}); "
                  f"{stats.new_tokens} tokens, {stats.mean_accepted:.2f} tokens/target pass, "
                  f"{stats.tokens_per_second:.2f} tok/s")
        print("--- last line:", text.strip().splitlines()[-1] if text.strip() else "(empty)")
        same = outputs["exact"] == outputs["target"]
        print("--- exact output identical to target:", same,
              "" if same or pair.target.describe()["backend"] != "llama.cpp" else
              "(llama.cpp's many-token passes differ slightly from one-token steps; a near-tie flipped)")
    (t_tokens, t_sec), (e_tokens, e_sec) = totals["target"], totals["exact"]
    print(f"\nsummary over {len(problems)} problem(s): target {t_tokens / t_sec:.2f} tok/s, "
          f"exact speculative (window {args.window}) {e_tokens / e_sec:.2f} tok/s, "
          f"speed-up {(e_tokens / e_sec) / (t_tokens / t_sec):.2f}x")
    return 0
