"""Score a judge file and the judge trained now on the same labels neither has seen.

The labels are those of `--new` problems absent from `--seen` (the runs the judge file
was trained on). The judge trained now is scored by cross-validation by problem: each
label by the fold model that never saw its problem, trained on the other problems'
new labels and the `--reuse` labels a larger budget leaves alone (as `autojudge train
--reuse` does), on `--features`.

    python scripts/compare_judges_on_unseen.py --judge OLD.safetensors --new data/mined/gsm8k/shard-* \
        --seen data/mined/gsm8k-256/shard-* --reuse data/mined/gsm8k-256/shard-* --features target
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from autojudge.judge.model import Judge
from autojudge.judge.train import C_GRID, best_c, cross_validate, load_mined, load_reused, problem_folds, with_reused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", required=True)
    parser.add_argument("--new", nargs="+", required=True)
    parser.add_argument("--seen", nargs="+", required=True)
    parser.add_argument("--reuse", nargs="*", default=[])
    parser.add_argument("--features", default="target")
    args = parser.parse_args(argv)
    new, seen = load_mined(args.new), load_mined(args.seen)
    unseen = ~np.isin(new.problem, np.unique(seen.problem))
    judge = Judge.load(args.judge)
    parts = {"draft": torch.tensor(new.draft[unseen]), "target": torch.tensor(new.target[unseen]),
             "logits": None if new.logits is None else torch.tensor(new.logits[unseen])}
    given = roc_auc_score(new.important[unseen], judge.prob_important(parts).numpy())
    folds = problem_folds(new)
    training = new
    if args.reuse:
        training, folds = with_reused(new, load_reused(args.reuse, new), folds)
    results = cross_validate(training, args.features, folds, C_GRID)
    scores = results[best_c(results)][1][: len(new.important)]
    print(f"| judge | ROC-AUC on {unseen.sum()} labels of {len(np.unique(new.problem[unseen]))} problems "
          "neither saw |\n|---|---|")
    print(f"| {args.judge} | {given:.3f} |")
    print(f"| trained now ({args.features}{', with reused labels' if args.reuse else ''}; cross-validated) | "
          f"{roc_auc_score(new.important[unseen], scores[unseen]):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
