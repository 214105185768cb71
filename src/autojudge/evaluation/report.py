"""Summaries of an evaluation run: JSON, CSV, a Markdown table and the trade-off plot.

Modes are compared only on the problems that all of them finished. Accuracy comes
with a Wilson 95% interval, and its difference from exact decoding with a paired one:
every mode answers the same problems, so the difference rests on the problems whose
result changed, and is known far more precisely than the two accuracies are apart.
Speed ratios are against target-only and exact speculative decoding measured in the
same run (one call of run_eval, so one machine), on the same problems: tokens/s of
two machines never meet in one ratio, and a problem whose baseline was measured in
another run is left out of that ratio, with the count shown.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

from autojudge.decoding.engine import is_cut

Z95 = 1.959963984540054
# The lossless modes: the baselines of every speed ratio, never an operating point.
SPEED_BASELINES = ("target", "exact")
OPERATING_POINT = "Operating point (at most 1 point below exact)"


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


def _versus_exact(runs: list[dict], exact_runs: list[dict]) -> tuple[float, float, float]:
    both = Counter((bool(r["correct"]), bool(e["correct"])) for r, e in zip(runs, exact_runs))
    return paired_difference(both[True, True], both[True, False], both[False, True], both[False, False])


def _tokens_per_second(runs: list[dict]) -> float | None:
    """Single-stream speed: records decoded side by side with others share their seconds."""
    runs = [r for r in runs if not r.get("batched")]
    seconds = sum(r["seconds"] for r in runs)
    return sum(r["new_tokens"] for r in runs) / seconds if seconds else None


def _same_run_speed(runs: list[dict], base: str, measured: dict) -> tuple[float | None, int]:
    """Speed of `runs` over the baseline `base` measured in the same runs, and on how many problems."""
    pairs = [(r, measured.get((base, r["problem"], r.get("run")))) for r in runs if not r.get("batched")]
    pairs = [(r, b) for r, b in pairs if b is not None and not b.get("batched")]
    mine, theirs = _tokens_per_second([r for r, _ in pairs]), _tokens_per_second([b for _, b in pairs])
    return (mine / theirs if mine and theirs else None), len(pairs)


def summarize(records: list[dict], modes: list[str]) -> list[dict]:
    # The latest record of a (mode, problem) stands for it (records come in the order
    # they were measured); earlier ones stay available as baselines of their own run.
    by_problem: dict[int, dict[str, dict]] = {}
    measured: dict[tuple, dict] = {}
    for record in records:
        if record["mode"] in modes:
            by_problem.setdefault(record["problem"], {})[record["mode"]] = record
            measured[record["mode"], record["problem"], record.get("run")] = record
    complete = [runs for runs in by_problem.values() if all(m in runs for m in modes)]
    exact_runs = [r["exact"] for r in complete] if "exact" in modes else None
    rows = []
    for mode in modes:
        runs = [r[mode] for r in complete]
        n, correct = len(runs), sum(r["correct"] for r in runs)
        tokens, cycles = sum(r["new_tokens"] for r in runs), sum(r["cycles"] for r in runs)
        low, high = wilson(correct, n)
        rows.append({"mode": mode, "problems": n, "accuracy": correct / n if n else None,
                     "ci_low": low, "ci_high": high, "mean_accepted": tokens / cycles if cycles else None,
                     "tokens_per_second": _tokens_per_second(runs),
                     "accepted_mismatches_per_100_tokens":
                         100 * sum(r["accepted_mismatches"] for r in runs) / tokens if tokens else None,
                     "mean_length": tokens / n if n else None,
                     # stopped at the budget: such an "answer" is whatever stood last at the cut
                     "cut_fraction": sum(is_cut(r.get("stop_reason")) for r in runs) / n if n else None,
                     # judge@R: the threshold the judge's table gave for recall R
                     "threshold": next((r.get("threshold") for r in runs), None),
                     # the runs that measured this mode (records from before runs were named: "unnamed")
                     "runs": ", ".join(sorted({r.get("run") or "unnamed" for r in runs}))})
        if exact_runs is not None:  # same problems, same order: paired with exact decoding
            compared = n and mode != "exact"
            difference, low, high = _versus_exact(runs, exact_runs) if compared else (None,) * 3
            changed = sum(r.get("answer") != e.get("answer") for r, e in zip(runs, exact_runs)) / n if compared else None
            rows[-1].update(accuracy_vs_exact=difference, vs_exact_ci_low=low, vs_exact_ci_high=high,
                            answer_differs_from_exact=changed)
        for base in SPEED_BASELINES:
            speed, paired = _same_run_speed(runs, base, measured) if base in modes else (None, 0)
            rows[-1].update({f"speed_vs_{base}": speed, f"speed_vs_{base}_problems": paired})
    accepted = {r["mode"]: r["mean_accepted"] for r in rows}
    for row in rows:  # tokens per cycle do not depend on the machine: every problem counts
        for base in SPEED_BASELINES:
            ok = accepted.get(base) and row["mean_accepted"]
            row[f"accepted_vs_{base}"] = row["mean_accepted"] / accepted[base] if ok else None
    return rows


def operating_point(rows: list[dict], max_drop: float = 0.01) -> dict | None:
    """The lossy mode with the most accepted tokens per cycle within `max_drop` of exact."""
    lossy = [r for r in rows if r["mode"] not in SPEED_BASELINES and r.get("accuracy_vs_exact") is not None
             and r["accuracy_vs_exact"] >= -max_drop - 1e-12]
    return max(lossy, key=lambda r: r["mean_accepted"], default=None)


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _versus_exact_text(row: dict) -> str:
    """"+1.2 pt (-2.7 to +5.2)": the paired difference from exact and its 95% interval."""
    if row.get("accuracy_vs_exact") is None:
        return "-"
    return (f"{100 * row['accuracy_vs_exact']:+.1f} pt ({100 * row['vs_exact_ci_low']:+.1f} to "
            f"{100 * row['vs_exact_ci_high']:+.1f})")


def _speed_text(row: dict, base: str) -> str:
    """"1.20x", or "1.20x (7/9)" when only 7 of the 9 problems had `base` measured in the same run."""
    text, paired = _fmt(row[f"speed_vs_{base}"], ".2f", "x"), row[f"speed_vs_{base}_problems"]
    return text if paired == row["problems"] or text == "-" else f"{text} ({paired}/{row['problems']})"


def markdown_table(rows: list[dict]) -> str:
    header = ["mode", "problems", "accuracy (95% CI)", "accuracy vs exact (paired 95% CI)", "answer differs from exact",
              "cut by the budget", "tokens/cycle", "vs exact", "tok/s", "speed vs target", "speed vs exact",
              "judged-in tokens /100"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        accuracy = (f"{r['accuracy']:.1%} ({r['ci_low']:.1%}-{r['ci_high']:.1%})"
                    if r["accuracy"] is not None else "-")
        mode = r["mode"] if "@" not in r["mode"] or r["threshold"] is None else f"{r['mode']} (T={r['threshold']:.3g})"
        cells = [mode, str(r["problems"]), accuracy, _versus_exact_text(r),
                 _fmt(r.get("answer_differs_from_exact"), ".1%"), _fmt(r.get("cut_fraction"), ".1%"),
                 _fmt(r["mean_accepted"], ".2f"),
                 _fmt(r["accepted_vs_exact"], ".2f", "x"), _fmt(r["tokens_per_second"], ".2f"),
                 _speed_text(r, "target"), _speed_text(r, "exact"),
                 _fmt(r["accepted_mismatches_per_100_tokens"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    if len({run for r in rows for run in r["runs"].split(", ")}) > 1:
        lines.append("\nThe records come from more than one run, so tok/s may mix machines. Each speed ratio "
                     "compares records measured in the same run; (k/n): over the k of n problems whose "
                     "baseline was measured in the same run as the mode.")
    return "\n".join(lines)


def _error_bars(rows: list[dict]) -> list[list[float]]:
    # max(0, ...): the interval's ends can sit a rounding error inside the point.
    return [[max(0.0, 100 * (r["accuracy"] - r["ci_low"])) for r in rows],
            [max(0.0, 100 * (r["ci_high"] - r["accuracy"])) for r in rows]]


def _family(mode: str) -> str:
    """"judge" for judge@0.9 or judge:0.3:4, "topk" for topk:8: the policy a mode runs."""
    return mode.replace("@", ":").split(":", 1)[0]


def _point_label(mode: str) -> str:
    # judge:0.3 -> "0.3" (threshold), judge@0.9 -> "R0.9" (validation recall), topk:8 -> "8",
    # judge@0.9:6 -> "R0.9:6" (with a lookahead of 6), fly -> "fly" (its defaults)
    if "@" in mode:
        return "R" + mode.split("@", 1)[1]
    return mode.split(":", 1)[1] if ":" in mode else mode


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Accuracy against mean accepted tokens per cycle: judge and Top-K sweeps, exact, target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    families = {"judge": "judge (threshold sweep)", "topk": "Top-K (K sweep)", "fly": "FLy",
                "typical": "typical acceptance"}
    series = {label: [r for r in rows if _family(r["mode"]) == family] for family, label in families.items()}
    for label, points in series.items():
        points = sorted((r for r in points if r["mean_accepted"] is not None), key=lambda r: r["mean_accepted"])
        if points:
            ax.errorbar([r["mean_accepted"] for r in points], [100 * r["accuracy"] for r in points],
                        yerr=_error_bars(points),
                        marker="o", capsize=3, label=label)
            for r in points:
                ax.annotate(_point_label(r["mode"]), (r["mean_accepted"], 100 * r["accuracy"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=7)
    for mode, marker in (("exact", "*"), ("target", "s")):
        row = next((r for r in rows if r["mode"] == mode and r["mean_accepted"] is not None), None)
        if row:
            ax.errorbar([row["mean_accepted"]], [100 * row["accuracy"]],
                        yerr=_error_bars([row]),
                        marker=marker, markersize=10, capsize=3, linestyle="none",
                        label="exact speculative decoding" if mode == "exact" else "target alone")
    ax.set_xlabel("mean accepted tokens per cycle (tokens per target pass)")
    ax.set_ylabel("accuracy, % (95% CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(records: list[dict], modes: list[str], out: Path, *, title: str, meta: dict) -> list[dict]:
    rows = summarize(records, modes)
    best = operating_point(rows)
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": rows, "operating_point": best}, indent=2))
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = markdown_table(rows)
    if best is not None:
        table += (f"\n\n{OPERATING_POINT}: {best['mode']}, "
                  f"{_fmt(best['accepted_vs_exact'], '.2f', 'x')} the accepted tokens per cycle of exact, "
                  f"{_fmt(best['speed_vs_exact'], '.2f', 'x')} its tokens/s; accuracy against exact "
                  f"{_versus_exact_text(best)}, paired 95% CI.")
    elif any(r["mode"] not in SPEED_BASELINES for r in rows):
        # Said outright: a missing line would read as a report that forgot to look.
        table += f"\n\n{OPERATING_POINT}: none; every lossy mode loses more."
    floor = next((r for r in rows if r["mode"] == "target" and r.get("answer_differs_from_exact") is not None), None)
    if floor is not None:
        # Both modes are lossless in exact arithmetic: whatever separates them is the
        # runtime's rounding (pass shapes), the floor under every lossy mode's difference.
        table += (f"\n\nNoise floor: the two lossless modes (target alone, exact) give different answers on "
                  f"{floor['answer_differs_from_exact']:.1%} of the problems; accuracy target - exact "
                  f"{_versus_exact_text(floor)}.")
    (out / "summary.md").write_text(table + "\n")
    plot(rows, out / "tradeoff.png", f"{title}, {rows[0]['problems']} problems")
    return rows
