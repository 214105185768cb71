"""The report's text from summary rows: a Markdown table with its conclusions, CSV and JSON.

The main table compares modes by ratios measured within a run (so on one machine);
absolute tokens/s, which depend on the machine, stand in a table of their own with a
column per machine.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from autojudge.evaluation.rows import (
    BaselineRatios,
    EarlierJudge,
    HeadToHead,
    Machines,
    ModeSummary,
    PairedWithExact,
    operating_point,
)
from autojudge.evaluation.statistics import problems_to_resolve, ratio

OPERATING_POINT = "Operating point (at most 1 point below exact)"


def summary_json(rows: list[ModeSummary], best: ModeSummary | None, meta: dict,
                 earlier: list[EarlierJudge] = ()) -> str:
    summary = {"meta": meta, "rows": [r.as_dict() for r in rows],
               "operating_point": _as_dict(best)}
    if earlier:  # only after a judge was retrained mid-evaluation
        summary["earlier_judges"] = [
            {"judge": e.judge, "problems": e.problems, "rows": [r.as_dict() for r in e.rows],
             "operating_point": _as_dict(operating_point(e.rows)),
             "head_to_head": [dataclasses.asdict(h) for h in e.head_to_head]} for e in earlier]
    return json.dumps(summary, indent=2)


def _as_dict(row: ModeSummary | None) -> dict | None:
    return row.as_dict() if row is not None else None


def write_csv(rows: list[ModeSummary], path: Path) -> None:
    flat = [r.as_dict() for r in rows]
    with open(path, "w", newline="") as handle:
        # Every row's keys, in order: a row without an exact baseline lacks the paired ones.
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in flat for k in row)))
        writer.writeheader()
        writer.writerows(flat)


def markdown_table(rows: list[ModeSummary]) -> str:
    header = ["mode", "problems", "accuracy (95% CI)", "accuracy vs exact (paired 95% CI)", "answer differs from exact",
              "cut by the budget", "tokens identical to target", "tokens/cycle", "vs exact",
              "speed vs target", "speed vs exact", "judged-in tokens /100"]
    cell_rows = []
    for r in rows:
        accuracy = f"{r.accuracy:.1%} ({r.ci_low:.1%}-{r.ci_high:.1%})" if r.accuracy is not None else "-"
        answer_differs = r.paired_with_exact.answer_differs if r.paired_with_exact else None
        cells = [r.shown, str(r.problems), accuracy, _versus_exact_text(r.paired_with_exact),
                 _fmt(answer_differs, ".1%"), _fmt(r.cut_fraction, ".1%"), _fmt(r.identical_to_target, ".1%"),
                 _fmt(r.mean_accepted, ".2f"),
                 _fmt(r.against_exact.accepted, ".2f", "x"),
                 _speed_text(r.against_target, r.problems), _speed_text(r.against_exact, r.problems),
                 _fmt(r.accepted_mismatches_per_100_tokens, ".1f")]
        cell_rows.append(cells)
    lines = [table(header, cell_rows)]
    if len({run for r in rows for run in r.runs.split(", ")}) > 1:
        lines.append("\nThe records come from more than one run, perhaps on different machines: each speed ratio "
                     "compares records measured in the same run.")
    if any(ratios.speed is not None and ratios.speed_problems < r.problems
           for r in rows for ratios in (r.against_target, r.against_exact)):
        lines.append("\n(k/n): over the k of n problems where the mode and its baseline were both timed in the "
                     "same run, alone and uninterrupted (a record whose clock ran well past its CPU time, "
                     "paused or sharing its core, times nothing).")
    return "\n".join(lines)


def summary_markdown(rows: list[ModeSummary], best: ModeSummary | None, machines: Machines | None = None,
                     earlier: list[EarlierJudge] = ()) -> str:
    """The table, then tokens/s machine by machine, then what it comes to: the operating
    point and the noise floor; then, after a judge was retrained, the same for each
    earlier judge on the problems it finished."""
    text = _conclusions(rows, best, machines)
    for e in earlier:
        # Kept because re-decoding every judge mode takes long: until the current judge
        # has caught up, its table stands on fewer problems than its predecessor's.
        text += (f"\n\n### Earlier judge {e.judge[:12]}...\n\nIts judge-mode records, from before the judge was "
                 f"retrained, beside every other mode on the {e.problems} problems all of them finished:\n\n"
                 + _conclusions(e.rows, operating_point(e.rows), machines))
        if e.head_to_head:
            text += ("\n\nThe current judge against it, mode by mode, on the problems both decoded:\n\n"
                     + head_to_head_table(e.head_to_head))
    return text


def head_to_head_table(rows: list[HeadToHead]) -> str:
    header = ["mode", "problems", "accuracy now", "accuracy before", "now - before (paired 95% CI)",
              "answer differs", "tokens/cycle now", "before", "now / before"]
    return table(header, [[h.mode, str(h.problems), _fmt(h.accuracy, ".1%"), _fmt(h.earlier_accuracy, ".1%"),
                            _versus_exact_text(h.difference), _fmt(h.difference.answer_differs, ".1%"),
                            _fmt(h.mean_accepted, ".2f"), _fmt(h.earlier_mean_accepted, ".2f"),
                            _fmt(ratio(h.mean_accepted, h.earlier_mean_accepted), ".2f", "x")] for h in rows])


def machine_speeds(rows: list[ModeSummary], machines: Machines) -> str:
    """Tokens/s in a column per machine (the same machine type is not the same speed:
    with AVX-512 and without, llama.cpp's quantized kernels differ about 3x)."""
    names = [name for name in machines.names() if any(s.machine == name for r in rows for s in r.speed_by_machine)]
    text = ""
    if names:
        cells = [[r.mode] + [next((f"{s.tokens_per_second:.2f} ({s.problems})" for s in r.speed_by_machine
                                   if s.machine == name), "-") for name in names] for r in rows]
        text += ("\n\nTokens/s, a column per machine (in brackets, the problems timed on it; runs count by "
                 "their problems, not their seconds):\n\n" + table(["mode"] + [f"tok/s on {n}" for n in names], cells))
    unknown = []
    if machines.unknown_runs:
        unknown.append(f"{machines.unknown_runs} run{'s' if machines.unknown_runs != 1 else ''} that named no host")
    if machines.unnamed_records:
        unknown.append("the records from before runs were named")
    if unknown:
        text += (f"\n\nLeft out of tokens/s, their machines unknown: {' and '.join(unknown)}. They count in the "
                 "speed ratios, each record against baselines of its own run.")
    return text


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: the header, its rule, a line per row of cells."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(cells) + " |" for cells in rows])


def _conclusions(rows: list[ModeSummary], best: ModeSummary | None, machines: Machines | None = None) -> str:
    text = markdown_table(rows)
    if machines is not None:
        text += machine_speeds(rows, machines)
    if best is not None:
        text += (f"\n\n{OPERATING_POINT}: {best.mode}, "
                 f"{_fmt(best.against_exact.accepted, '.2f', 'x')} the accepted tokens per cycle of exact, "
                 f"{_fmt(best.against_exact.speed, '.2f', 'x')} its tokens/s; accuracy against exact "
                 f"{_versus_exact_text(best.paired_with_exact)}, paired 95% CI.")
        text += _resolution(best)
    elif any(not r.lossless for r in rows):
        # Said outright: a missing line would read as a report that forgot to look.
        text += f"\n\n{OPERATING_POINT}: none; every lossy mode loses more."
    floor = next((r.paired_with_exact for r in rows if r.method.is_target and r.method.runtime is None
                  and r.paired_with_exact is not None and r.paired_with_exact.answer_differs is not None), None)
    if floor is not None:
        # Both modes are lossless in exact arithmetic: whatever separates them is the
        # runtime's rounding (pass shapes), the floor under every lossy mode's difference.
        text += (f"\n\nNoise floor: the two lossless modes (target alone, exact) give different answers on "
                 f"{floor.answer_differs:.1%} of the problems; accuracy target - exact "
                 f"{_versus_exact_text(floor)}.")
    return text


def _resolution(best: ModeSummary) -> str:
    """What it would take to tell the operating point from exact to within 1 point."""
    paired = best.paired_with_exact
    half = (paired.ci_high - paired.ci_low) / 2
    if half <= 0.01:
        return f" Its interval resolves 1 point ({100 * half:.1f} points either side)."
    needed = problems_to_resolve(paired.ci_low, paired.ci_high, best.problems)
    needed = round(needed, 2 - len(str(needed)))  # two significant digits: it is an estimate
    return (f" That interval reaches {100 * half:.1f} points either side on {best.problems} problems; with answers "
            f"changing as often, 1 point either side would take about {needed:,} problems.")


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _versus_exact_text(paired: PairedWithExact | None) -> str:
    """"+1.2 pt (-2.7 to +5.2)": the paired difference (from exact, or between two judges)
    and its 95% interval."""
    if paired is None or paired.accuracy_difference is None:
        return "-"
    return (f"{100 * paired.accuracy_difference:+.1f} pt ({100 * paired.ci_low:+.1f} to "
            f"{100 * paired.ci_high:+.1f})")


def _speed_text(against: BaselineRatios, problems: int) -> str:
    """"1.20x", or "1.20x (7/9)" when only 7 of the 9 problems had the baseline measured in the same run."""
    text, paired = _fmt(against.speed, ".2f", "x"), against.speed_problems
    return text if paired == problems or text == "-" else f"{text} ({paired}/{problems})"
