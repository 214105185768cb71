"""Whether a mining run's budget cuts its answers, and a budget that would not.

An answer cut by the budget ends wherever the budget fell, so its "answer" is
whatever number or program stands last at the cut, and a label comparing two cut
answers compares noise. A few cuts are the long tail of any budget; more than that
is a budget too small for the task, better found out after ten problems than after
the run.
"""

from __future__ import annotations

import math

from autojudge.decoding.engine import is_cut

# Cut answers above this share, first answers or regenerations, draw the warning.
CUT_SHARE = 0.05
# ... once this many of that kind are in: one long answer among three is no trend.
SEEN_BEFORE_WARNING = 4
# Suggested budgets are rounded up to a multiple of this.
ROUNDING = 64


def cut_lengths(records: list[dict]) -> dict[str, tuple[int, int, list[int]]]:
    """{"first answers" | "regenerations": (cut, of, token lengths of those that ended
    by themselves)} over a run's problem records (lengths: where recorded)."""
    first = [(r["first_answer_stop"], r.get("first_answer_tokens")) for r in records
             if r.get("first_answer_stop") and not r.get("skipped")]
    regenerated = [(m["regeneration_stop"], m.get("regeneration_tokens")) for r in records for m in r["mismatches"]
                   if m.get("regeneration_stop") is not None]
    return {kind: (sum(is_cut(stop) for stop, _ in stops), len(stops),
                   [n for stop, n in stops if not is_cut(stop) and n is not None])
            for kind, stops in (("first answers", first), ("regenerations", regenerated))}


def suggested_budget(budget: int, ended: list[int]) -> int:
    """A budget for answers that `budget` cut: how much longer a cut answer would have
    run is unknown, so at least double it, and at least half again the longest answer
    that ended by itself (the tail of ended lengths is where the cut ones begin)."""
    longest = max(ended, default=0)
    return ROUNDING * math.ceil(max(2 * budget, 1.5 * longest) / ROUNDING)


def budget_warnings(records: list[dict], budget: int, warned: set[str] | None = None) -> list[str]:
    """A warning for each kind of answer the budget cuts more than CUT_SHARE of, once
    SEEN_BEFORE_WARNING of that kind are in; kinds in `warned` are skipped and added to."""
    warned = set() if warned is None else warned
    warnings = []
    for kind, (cut, of, ended) in cut_lengths(records).items():
        if kind in warned or of < SEEN_BEFORE_WARNING or cut / of <= CUT_SHARE:
            continue
        warned.add(kind)
        longest = f"; the longest that ended by itself had {max(ended)} tokens" if ended else ""
        warnings.append(f"{cut} of {of} {kind} so far were cut by the budget of {budget} tokens{longest}. Labels "
                        f"from cut answers are noise: mine with --max-new-tokens {suggested_budget(budget, ended)} "
                        "(into another --out)")
    return warnings
