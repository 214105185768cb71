"""Do confirmed labels (`mine --confirm`) read more cleanly than single-regeneration ones?

On a mining run with --confirm, every label has two readings: the first regeneration's
(what a run without --confirm records: important when that answer changed) and the
confirmed one (important only when a second regeneration, through the other pass
layout, changed the answer too). The report counts the important labels confirmation
overturned and shows what their answers were, then scores both readings of the same
mismatches with a judge trained on `--train` runs (problems the confirm run does not
hold) and with judges cross-validated by problem on the confirm run itself. Where
`--plain` runs mined some of the same problems without --confirm, it also counts how
often the two runs agree on the mismatches both visited.

    python scripts/confirmed_labels.py --confirm data/mined/gsm8k-confirm/shard-2-of-2 \\
        --train data/mined/gsm8k/shard-1-of-2 --plain data/mined/gsm8k/shard-2-of-2 \\
        --out docs/bench/confirm-gsm8k.md
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from script_report import publish
from sklearn.metrics import roc_auc_score

from autojudge.judge.report import auc_difference_interval
from autojudge.judge.train import best_c, cross_validate, fit, load_mined, problem_folds
from autojudge.models.loading import load_tokenizer
from autojudge.runfiles import read_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--confirm", required=True, help="a mining run made with --confirm")
    parser.add_argument("--train", required=True, nargs="+", help="mining runs to train the scoring judge on")
    parser.add_argument("--plain", nargs="*", default=[], help="runs without --confirm over some of the problems")
    parser.add_argument("--features", default="target", help="feature set of both judges (default: %(default)s)")
    parser.add_argument("--examples", type=int, default=12, help="overturned labels to show")
    parser.add_argument("--out", help="write the report here too (markdown)")
    args = parser.parse_args(argv)

    data = load_mined(args.confirm)
    records = [r for r in read_records(Path(args.confirm) / "problems.jsonl", repair=False) if r["mismatches"]]
    mismatches = [m for r in records for m in r["mismatches"]]
    assert len(mismatches) == len(data.important), "records and features disagree"
    confirmed = data.important
    first = np.array([m["important"] or m["confirmed"] is False for m in mismatches])
    overturned = first & ~confirmed
    problems = np.unique(data.problem)
    lines = [f"{len(problems)} problems of `{args.confirm}` ({data.meta.get('regeneration')}), "
             f"{len(mismatches)} labels", "",
             "| reading | important | share |", "|---|---|---|",
             f"| first regeneration (a run without --confirm) | {first.sum()} | {first.mean():.1%} |",
             f"| confirmed | {confirmed.sum()} | {confirmed.mean():.1%} |",
             f"| overturned by the second regeneration | {overturned.sum()} | "
             f"{overturned.sum() / max(first.sum(), 1):.1%} of the first's important |", ""]

    # Scored by a judge that never saw these problems, and by judges cross-validated here.
    train = load_mined(args.train)
    if shared := set(train.problem.tolist()) & set(problems.tolist()):
        raise SystemExit(f"--train holds problems of --confirm (e.g. {sorted(shared)[:3]}): they are not held out")
    c = best_c(cross_validate(train, args.features, problem_folds(train)))
    scores = fit(train.features(args.features), train.important, c).predict_proba(data.features(args.features))[:, 1]
    low, high = auc_difference_interval((data.problem, confirmed, scores), (data.problem, first, scores))
    lines += [f"| judge ({args.features} features) | ROC-AUC, first regeneration's labels | ROC-AUC, confirmed labels "
              "| confirmed minus first (95% bootstrap by problem) |", "|---|---|---|---|",
              f"| trained on {len(np.unique(train.problem))} other problems ({train.important.mean():.1%} important, "
              f"C={c:g}) | {roc_auc_score(first, scores):.3f} | {roc_auc_score(confirmed, scores):.3f} | "
              f"{roc_auc_score(confirmed, scores) - roc_auc_score(first, scores):+.3f} ({low:+.3f} to {high:+.3f}) |"]
    folds = problem_folds(data)
    cross = {name: cross_validate(replace(data, important=labels), args.features, folds)
             for name, labels in (("first", first), ("confirmed", confirmed))}
    auc = {name: results[best_c(results)][0] for name, results in cross.items()}
    lines += [f"| trained and scored on the reading itself, {len(folds)}-fold cross-validated by problem "
              f"| {auc['first']:.3f} | {auc['confirmed']:.3f} | {auc['confirmed'] - auc['first']:+.3f} |", ""]

    lines += _examples(records, data.meta["target"], args.examples)
    if args.plain:
        lines += _agreement(records, args.plain)
    return publish(lines, args.out)


def _examples(records: list[dict], target: str, n: int) -> list[str]:
    """What the overturned labels' answers were: the response's, the first regeneration's, the second's."""
    tokenizer = load_tokenizer(target)
    rows = [(r, m) for r in records for m in r["mismatches"] if m["confirmed"] is False]
    if not rows:
        return []
    no_answer = sum(m.get("overturned_answer") is None for _, m in rows)
    lines = [f"Overturned labels: {len(rows)}; the first regeneration gave no answer in {no_answer}. "
             f"The first {min(n, len(rows))}:", "",
             "| problem | position | target's token -> draft's | response's answer | first regeneration's "
             "| second's |", "|---|---|---|---|---|---|"]
    for record, m in rows[:n]:
        tokens = " -> ".join(repr(tokenizer.decode([m[k]])) for k in ("target_token", "draft_token"))
        lines.append(f"| {record['problem_id']} | {m['position']} | `{tokens}` | {record['answer']} | "
                     f"{m.get('overturned_answer')} | {m['alt_answer']} |")
    return lines + [""]


def _agreement(records: list[dict], plain_dirs: list[str]) -> list[str]:
    """Labels of the same mismatch (problem, position, both tokens) in the plain runs."""
    plain = {(r["problem_id"], m["position"], m["target_token"], m["draft_token"]): m["important"]
             for d in plain_dirs for r in read_records(Path(d) / "problems.jsonl", repair=False)
             for m in r["mismatches"]}
    both = [(plain[key], m["important"] or m["confirmed"] is False, m["important"])
            for r in records for m in r["mismatches"]
            if (key := (r["problem_id"], m["position"], m["target_token"], m["draft_token"])) in plain]
    if not both:
        return ["The plain runs visit none of these mismatches.", ""]
    same_first = sum(p == f for p, f, _ in both)
    same_confirmed = sum(p == c for p, _, c in both)
    problems = len({r["problem_id"] for r in records} & {key[0] for key in plain})
    return [f"The same mismatch (problem, position, both tokens) in a run without --confirm: {len(both)} "
            f"mismatches of {problems} problems both runs mined.", "",
            "| label in the plain run against | agree | share |", "|---|---|---|",
            f"| this run's first regeneration | {same_first} | {same_first / len(both):.1%} |",
            f"| this run's confirmed label | {same_confirmed} | {same_confirmed / len(both):.1%} |", ""]


if __name__ == "__main__":
    sys.exit(main())
