"""The numbers of an evaluation report: accuracies with their 95% intervals, paired
differences between two modes, and single-stream speeds.

Accuracy comes with a Wilson 95% interval, and its difference from another mode with
a paired one: every mode answers the same problems, so the difference rests on the
problems whose result changed, and is known far more precisely than the two
accuracies are apart.
"""

from __future__ import annotations

import math
from collections import Counter

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(a: int, b: int, c: int, d: int, z: float = Z95) -> tuple[float, float, float]:
    """Difference p1 - p2 of two accuracies on the same n problems, with its 95% interval.

    a: both right, b: only the first right, c: only the second right, d: both wrong.
    Newcombe's square-and-add interval for paired data (method 10, Statistics in
    Medicine 17, 1998): the Wilson intervals of the two accuracies, combined through
    the correlation phi of the paired outcomes (continuity-corrected when positive).
    """
    n = a + b + c + d
    if n == 0:
        return 0.0, -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    (l1, u1), (l2, u2) = wilson(a + b, n, z), wilson(a + c, n, z)
    spread, association = (a + b) * (c + d) * (a + c) * (b + d), a * d - b * c
    if association > 0:
        association = max(0.0, association - n / 2)
    phi = association / math.sqrt(spread) if spread else 0.0
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return p1 - p2, max(-1.0, p1 - p2 - below), min(1.0, p1 - p2 + above)


def paired_accuracy_difference(runs: list[dict], other_runs: list[dict]) -> tuple[float, float, float]:
    """`paired_difference` of two modes' records of the same problems, in the same order."""
    both = Counter((bool(r["correct"]), bool(o["correct"])) for r, o in zip(runs, other_runs))
    return paired_difference(both[True, True], both[True, False], both[False, True], both[False, False])


def problems_to_resolve(ci_low: float, ci_high: float, problems: int, half_width: float = 0.01) -> int:
    """How many problems would shrink a paired interval as wide as (ci_low, ci_high) on
    `problems` to +-half_width, answers changing as often: its width falls as 1/sqrt(n),
    so what sets it is the share of problems whose answer changed, not the accuracy."""
    half = (ci_high - ci_low) / 2
    return max(problems, math.ceil(problems * (half / half_width) ** 2))


def per(amount: float, count: float) -> float | None:
    """amount / count, a mean or a share; None when there is nothing to count (no problems, no tokens)."""
    return amount / count if count else None


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline; None unless both are known and non-zero (a ratio to nothing means nothing)."""
    return value / baseline if value and baseline else None


# A record whose wall-clock seconds exceed its process's CPU seconds this many times over,
# and by more than STALLED_SECONDS, was not running all along: paused (SIGSTOP), or sharing
# its core with another job. The floor keeps a scheduler's hiccup in a tiny decode from
# counting as one.
STALLED = 1.5
STALLED_SECONDS = 1.0


def stalled(record: dict) -> bool:
    """Whether a record's clock ran on without it (records from before CPU time was kept: no)."""
    cpu_seconds = record.get("cpu_seconds")
    return (cpu_seconds is not None and record["seconds"] > STALLED * cpu_seconds
            and record["seconds"] - cpu_seconds > STALLED_SECONDS)


def single_stream(record: dict) -> bool:
    """Whether a record's seconds time one sequence decoding alone and uninterrupted: not
    decoded side by side with others (they share their seconds), not stalled."""
    return not record.get("batched") and not stalled(record)


def tokens_per_second(runs: list[dict]) -> float | None:
    """Single-stream speed, from the records whose seconds time a sequence alone."""
    runs = [r for r in runs if single_stream(r)]
    seconds = sum(r["seconds"] for r in runs)
    return sum(r["new_tokens"] for r in runs) / seconds if seconds else None


def tokens_per_second_by_run(records: list[dict]) -> float | None:
    """Single-stream speed over several runs: each run's pooled tokens/s, the runs
    weighed by their records (as `paired_speed_ratio` weighs them, and for its reason)."""
    by_run = group_by_run([r for r in records if single_stream(r)], run_of=lambda r: r.get("run"))
    return _weighed_by_count([(len(rs), tokens_per_second(rs)) for rs in by_run.values()])


def group_by_run(items: list, run_of) -> dict:
    """`items` grouped by the run `run_of(item)` names, runs in the order they first appear."""
    groups: dict = {}
    for item in items:
        groups.setdefault(run_of(item), []).append(item)
    return groups


def speed_ratio(runs: list[dict], baseline_runs: list[dict]) -> float | None:
    """Tokens/s of `runs` over those of `baseline_runs`; None when either has no speed."""
    return ratio(tokens_per_second(runs), tokens_per_second(baseline_runs))


def paired_speed_ratio(pairs: list[tuple[dict, dict]]) -> float | None:
    """Speed of records over their baselines, (record, baseline) pairs measured in the same run.

    Within a run, tokens/s pooled as `speed_ratio` does. Across runs, each run's ratio
    weighs by its pairs: a run on a machine three times slower spends three times the
    seconds per token, and pooling its seconds with a fast run's would let it count
    three times per problem. Weighing by problems keeps every problem's vote alike.
    """
    by_run = group_by_run(pairs, run_of=lambda pair: pair[0].get("run"))
    return _weighed_by_count([(len(run_pairs), speed_ratio([r for r, _ in run_pairs], [b for _, b in run_pairs]))
                              for run_pairs in by_run.values()])


def _weighed_by_count(values: list[tuple[int, float | None]]) -> float | None:
    """Mean of (count, value) pairs, each value weighing by its count; unknown values left out."""
    known = [(n, value) for n, value in values if value is not None]
    total = sum(n for n, _ in known)
    return sum(n * value for n, value in known) / total if total else None
