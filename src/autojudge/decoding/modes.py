"""Named decoding modes over a loaded pair: what the CLI, the demo and evaluation run.

    target          the target alone, greedy
    exact           speculative decoding, lossless
    topk:K          accept a draft token among the target's K most likely
    judge:T         accept a mismatching draft token when the judge's P(important) < T
    judge@R         the same, with the threshold whose validation recall of important
                    mismatches is R (e.g. judge@0.9)
"""

from __future__ import annotations

from typing import Sequence

from autojudge.decoding.engine import Generation, generate
from autojudge.decoding.policies import AcceptancePolicy, policy_from_name
from autojudge.models.backend import ModelPair


def judge_mode(threshold: float) -> str:
    """The mode judge:T for a threshold, written exactly (repr), not rounded."""
    return f"judge:{float(threshold)!r}"


def parse_judge_mode(mode: str) -> tuple[str, float]:
    """("threshold" | "recall", value) for judge:T or judge@R."""
    kind, sep, value = (mode.partition(":") if ":" in mode else mode.partition("@"))
    if kind != "judge" or not sep:
        raise ValueError(f"not a judge mode: {mode!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"bad judge mode {mode!r}: write judge:THRESHOLD or judge@RECALL") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"bad judge mode {mode!r}: the value must lie in [0, 1]")
    return ("threshold" if sep == ":" else "recall"), number


def is_judge_mode(mode: str) -> bool:
    return mode.startswith(("judge:", "judge@"))


def mode_policy(mode: str, judge=None) -> AcceptancePolicy:
    if is_judge_mode(mode):
        from autojudge.judge.policy import JudgePolicy
        if judge is None:
            raise ValueError(f"mode {mode} needs a judge")
        kind, value = parse_judge_mode(mode)
        threshold = value if kind == "threshold" else judge.threshold_for_recall(value)
        return JudgePolicy(judge, threshold)
    return policy_from_name(mode)


def decode(pair: ModelPair, prompt_ids: Sequence[int], mode: str = "exact", *,
           window: int = 8, max_new_tokens: int = 256, judge=None) -> Generation:
    if mode == "target":
        return generate(pair.target, prompt_ids, max_new_tokens=max_new_tokens,
                        stop_ids=pair.stop_ids)
    return generate(pair.target, prompt_ids, draft=pair.draft, policy=mode_policy(mode, judge),
                    window=window, max_new_tokens=max_new_tokens, stop_ids=pair.stop_ids)
