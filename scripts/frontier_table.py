"""One table for a large evaluation: accuracy and tokens per cycle from a batched run
(`eval --parallel N`, every problem), tokens/s from a single-stream run of the same
settings on a subset (`eval`, `--limit`), and how far batching moved the tokens.

Each column says which run it comes from. Speed ratios are those of the single-stream
run's own report (each mode against the target and exact decoding measured in that run).

    python scripts/frontier_table.py --batched docs/eval/gsm8k-q4_0-w32 \
        --alone docs/eval/gsm8k-q4_0-w32-speed --out docs/eval/gsm8k-q4_0-w32/frontier.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autojudge.evaluation.plot import FAMILIES, method_family
from autojudge.evaluation.rows import operating_point, summarize
from autojudge.judge.model import Judge
from autojudge.judge.shipped import shipped_judge_path
from autojudge.runfiles import read_records


def current(run_dir: Path, judge: str) -> tuple[list[dict], list[str]]:
    """The records of non-judge modes and of `judge` (a fingerprint), and the modes in
    the order the run decodes them. Reads a run that may still be decoding."""
    records = [r for r in read_records(run_dir / "records.jsonl", repair=False)
               if r.get("judge") is None or r["judge"] == judge]
    modes = list(dict.fromkeys(r["mode"] for r in records))
    families = ["target", "exact", *FAMILIES]  # the lossless modes, then each family as the plot draws it
    return records, sorted(modes, key=lambda m: families.index(method_family(m)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batched", required=True, type=Path)
    parser.add_argument("--alone", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--judge", help="the judge file of the judge modes (default: the shipped one of the task)")
    args = parser.parse_args(argv)
    task = json.loads((args.batched / "meta.json").read_text())["task"]
    judge = Judge.load(args.judge or shipped_judge_path(task)).fingerprint()
    batched, modes = current(args.batched, judge)
    alone, alone_modes = current(args.alone, judge)
    rows = summarize(batched, modes)
    speed = {r.mode: r for r in summarize(alone, [m for m in modes if m in alone_modes])}
    n, k = rows[0].problems, next(iter(speed.values())).problems if speed else 0

    def fmt(value, spec, suffix=""):
        return "-" if value is None else f"{value:{spec}}{suffix}"

    lines = [f"Accuracy, cut answers and tokens per cycle: {n} problems decoded 4 side by side ({args.batched}). "
             f"Tokens/s: {k} of them decoded one at a time ({args.alone}), each mode against the target alone and "
             "exact decoding of that run.", "",
             "| mode | accuracy (95% CI) | vs exact, paired (95% CI) | answer differs from exact | cut | "
             f"tokens/cycle | vs exact | tok/s ({k}) | vs target ({k}) | vs exact ({k}) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paired = r.paired_with_exact
        versus = "-" if paired is None or paired.accuracy_difference is None else (
            f"{100 * paired.accuracy_difference:+.1f} ({100 * paired.ci_low:+.1f} to {100 * paired.ci_high:+.1f})")
        s = speed.get(r.mode)
        mode = r.mode if r.threshold is None else f"{r.mode} (T={r.threshold:.3g})"
        lines.append(f"| {mode} | {100 * r.accuracy:.1f}% ({100 * r.ci_low:.1f}-{100 * r.ci_high:.1f}) | {versus} | "
                     f"{fmt(paired and paired.answer_differs, '.1%')} | {fmt(r.cut_fraction, '.1%')} | "
                     f"{fmt(r.mean_accepted, '.2f')} | {fmt(r.against_exact.accepted, '.2f', 'x')} | "
                     f"{fmt(s and s.tokens_per_second, '.2f')} | {fmt(s and s.against_target.speed, '.2f', 'x')} | "
                     f"{fmt(s and s.against_exact.speed, '.2f', 'x')} |")
    best = operating_point(rows)
    lines += ["", "Operating point (the lossy mode with the most tokens per cycle at most 1 point below exact): "
              + ("none" if best is None else
                 f"{best.mode}, {best.against_exact.accepted:.2f}x exact's tokens per cycle")
              + (f", {speed[best.mode].against_exact.speed:.2f}x its tokens/s single-stream"
                 if best is not None and best.mode in speed and speed[best.mode].against_exact.speed else "") + "."]
    # Batched against alone: the same problem, mode and settings, passes merged or not.
    together = {(r["mode"], r["problem"]): r for r in batched}
    pairs = [(together[r["mode"], r["problem"]], r) for r in alone if (r["mode"], r["problem"]) in together]
    if pairs:
        same_tokens = sum(a["token_ids"] == b["token_ids"] for a, b in pairs)
        same_answer = sum(a["answer"] == b["answer"] for a, b in pairs)
        lines += ["", f"Batched against alone, on the {len(pairs)} (mode, problem) decodes both runs hold: "
                      f"{same_tokens} ({same_tokens / len(pairs):.0%}) the same tokens, {same_answer} "
                      f"({same_answer / len(pairs):.0%}) the same answer; accuracy "
                      f"{sum(a['correct'] for a, _ in pairs)} batched against {sum(b['correct'] for _, b in pairs)} "
                      "alone. Merged passes round differently: this is noise floor, like the lossless modes' "
                      "differences."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
