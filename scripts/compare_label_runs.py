"""Two mining runs of the same problems on other runtimes: do their labels read alike?

For instance the default pair (Q4_K_M, whose passes of every size round differently)
against the Q4_0 pair with `--uniform-passes` (whose regenerations reproduce the
response exactly when nothing changed). On the problems both runs finished: labels and
important share per run, with the paired difference of the per-problem important share
(95% bootstrap by problem); how often the two first answers agree; and the ROC-AUC of a
judge trained on `--train` (problems neither run holds here) on each run's labels, each
scored with its own run's features, with the difference's bootstrap interval; and each
run's labels cross-validated on their own (5 folds by problem, the same folds for both
runs, the best C of each), which asks the same question without carrying a judge from
one model's features to the other's.

    python scripts/compare_label_runs.py --a data/mined/gsm8k/shard-1-of-2 \\
        --b data/mined/gsm8k-q4_0-uniform/shard-1-of-2 --train data/mined/gsm8k/shard-1-of-2 \\
        --out docs/bench/uniform-labels-gsm8k.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from script_report import publish
from sklearn.metrics import roc_auc_score

from autojudge.judge.report import auc_difference_interval
from autojudge.judge.train import MinedData, best_c, cross_validate, fit, load_mined, problem_folds
from autojudge.runfiles import read_records

BOOTSTRAP = 2000  # draws of the share difference; the AUC intervals use the library's
FOLDS = 5


def rows_of(data: MinedData, problems: set[int]) -> MinedData:
    return data.select(np.isin(data.problem, sorted(problems)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="a mining run")
    parser.add_argument("--b", required=True, help="another mining run of some of the same problems")
    parser.add_argument("--train", required=True, nargs="+",
                        help="mining runs to train the scoring judge on; the problems of --a and --b compared here "
                             "are left out of it")
    parser.add_argument("--features", default="target", help="the judge's feature set (default: %(default)s)")
    parser.add_argument("--out", help="write the report here too (markdown)")
    args = parser.parse_args(argv)

    records = {name: {r["problem_id"]: r for r in read_records(Path(d) / "problems.jsonl", repair=False)
                      if not r.get("skipped")} for name, d in (("a", args.a), ("b", args.b))}
    common = set(records["a"]) & set(records["b"])
    if not common:
        raise SystemExit("the two runs share no finished problem")
    data = {name: rows_of(load_mined(d), common) for name, d in (("a", args.a), ("b", args.b))}
    ids = sorted(common)
    share = {name: np.array([np.mean([m["important"] for m in records[name][p]["mismatches"]])
                             if records[name][p]["mismatches"] else np.nan for p in ids]) for name in data}
    both = ~np.isnan(share["a"]) & ~np.isnan(share["b"])
    rng = np.random.default_rng(0)
    paired = share["b"][both] - share["a"][both]
    draws = [paired[rng.integers(0, len(paired), len(paired))].mean() for _ in range(BOOTSTRAP)]
    same_first = sum(records["a"][p]["response"] == records["b"][p]["response"] for p in ids)
    lines = [f"{len(ids)} problems both runs finished: a = `{args.a}` (target {data['a'].meta['target']}), "
             f"b = `{args.b}` (target {data['b'].meta['target']}"
             f"{', uniform passes' if data['b'].meta.get('target_backend', {}).get('uniform_passes') else ''})", "",
             "| run | labels | important | mean important share per problem | problems with no important label |",
             "|---|---|---|---|---|"]
    for name in ("a", "b"):
        lines.append(f"| {name} | {len(data[name].important)} | {data[name].important.mean():.1%} | "
                     f"{np.nanmean(share[name]):.1%} | {int(np.nansum(share[name] == 0))} |")
    low, high = np.quantile(draws, [0.025, 0.975])
    lines += ["", f"Per-problem important share, b minus a: {paired.mean():+.1%} (95% bootstrap by problem "
              f"{low:+.1%} to {high:+.1%}), over {int(both.sum())} problems with labels in both. "
              f"The first answers are the same text on {same_first} of {len(ids)} problems.", ""]

    train = load_mined(args.train)
    train = rows_of(train, set(train.problem.tolist()) - common)
    c = best_c(cross_validate(train, args.features, problem_folds(train)))
    judge = fit(train.features(args.features), train.important, c)
    scores = {name: judge.predict_proba(data[name].features(args.features))[:, 1] for name in data}
    auc = {name: roc_auc_score(data[name].important, scores[name]) for name in data}
    low, high = auc_difference_interval(*[(data[name].problem, data[name].important, scores[name]) for name in "ba"],
                                        rng=rng)
    lines += [f"| judge ({args.features} features) | ROC-AUC on a | ROC-AUC on b | b minus a (95% bootstrap by "
              "problem) |", "|---|---|---|---|",
              f"| trained on {len(np.unique(train.problem))} other problems of --train (C={c:g}) | {auc['a']:.3f} | "
              f"{auc['b']:.3f} | {auc['b'] - auc['a']:+.3f} ({low:+.3f} to {high:+.3f}) |"]
    # Same folds for both runs: problem p lies in fold k in both, so the two AUCs differ
    # only by the labels and features, not by which problems trained which scores.
    order = np.random.default_rng(0).permutation(ids)
    fold_of = {int(p): k % FOLDS for k, p in enumerate(order)}
    own = {}
    for name in data:
        problem_fold = np.array([fold_of[int(p)] for p in data[name].problem])
        folds = [(np.flatnonzero(problem_fold != k), np.flatnonzero(problem_fold == k)) for k in range(FOLDS)]
        results = cross_validate(data[name], args.features, folds)
        own[name] = results[best_c(results)]
    own_low, own_high = auc_difference_interval(
        *[(data[name].problem, data[name].important, own[name][1]) for name in "ba"], rng=rng)
    lines += [f"| cross-validated on its own labels of these problems ({FOLDS} folds by problem, the same for both "
              f"runs) | {own['a'][0]:.3f} | {own['b'][0]:.3f} | {own['b'][0] - own['a'][0]:+.3f} "
              f"({own_low:+.3f} to {own_high:+.3f}) |"]
    return publish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
