"""Judge modes against the training-free rules (FLy, typical acceptance, Top-K), pair by pair.

The report pairs every mode with exact decoding, on the problems all modes finished.
Here each judge mode meets each rival rule on the problems those two decoded: the
paired accuracy difference (judge minus rival) with its 95% interval, and the tokens
per cycle of each over those same problems. A (mode, problem) decoded more than once
is represented by the record the report uses (`latest_records`). Which judge's records
to compare is the caller's choice (`run.judged_apart`): those of one judge only.
"""

from __future__ import annotations

from dataclasses import dataclass

# render's own formatting, so that these cells read as the report's tables do
from autojudge.evaluation.render import _fmt, _versus_exact_text, table
from autojudge.evaluation.rows import PairedWithExact, latest_records, tokens_per_cycle
from autojudge.evaluation.statistics import paired_accuracy_difference, per, ratio


@dataclass(frozen=True)
class RivalComparison:
    """One judge mode against one rival rule, on the problems both decoded."""
    mode: str
    rival: str
    problems: int
    accuracy: float | None
    rival_accuracy: float | None
    difference: float | None  # the judge mode's accuracy minus the rival's, paired by problem
    low: float | None  # the paired 95% interval of that difference (Newcombe)
    high: float | None
    tokens_per_cycle: float | None
    rival_tokens_per_cycle: float | None

    @property
    def ratio(self) -> float | None:
        """The judge mode's tokens per cycle over the rival's."""
        return ratio(self.tokens_per_cycle, self.rival_tokens_per_cycle)


def against_rivals(records: list[dict], modes: list[str], rivals: list[str]) -> list[RivalComparison]:
    """A comparison per (mode, rival), modes outer, in the order given; a pair with no
    problem in common has problems 0 and None elsewhere."""
    latest = latest_records(records)
    return [_compare(latest, mode, rival) for mode in modes for rival in rivals]


def rivals_table(rows: list[RivalComparison]) -> str:
    """The comparisons as a Markdown table, a row per (mode, rival)."""
    header = ["judge mode", "rival", "problems", "judge accuracy", "rival accuracy",
              "judge minus rival (95% interval)", "tokens/cycle judge", "rival", "ratio"]
    return table(header, [[c.mode, c.rival, str(c.problems), _fmt(c.accuracy, ".1%"), _fmt(c.rival_accuracy, ".1%"),
                           _versus_exact_text(PairedWithExact(c.difference, c.low, c.high, None)),
                           _fmt(c.tokens_per_cycle, ".2f"), _fmt(c.rival_tokens_per_cycle, ".2f"),
                           _fmt(c.ratio, ".2f", "x")] for c in rows])


def _compare(latest: dict[tuple[str, int], dict], mode: str, rival: str) -> RivalComparison:
    problems = sorted(p for m, p in latest if m == mode and (rival, p) in latest)
    ours, theirs = [latest[mode, p] for p in problems], [latest[rival, p] for p in problems]
    difference, low, high = paired_accuracy_difference(ours, theirs) if problems else (None, None, None)
    return RivalComparison(mode, rival, len(problems), _accuracy(ours), _accuracy(theirs), difference, low, high,
                           tokens_per_cycle(ours), tokens_per_cycle(theirs))


def _accuracy(runs: list[dict]) -> float | None:
    return per(sum(bool(r["correct"]) for r in runs), len(runs))
