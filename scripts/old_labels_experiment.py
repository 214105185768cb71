"""Do the old 256-token labels help a judge score the new, uncut ones?

Cross-validated by problem over the new run: each fold's judge is scored on the new
labels of problems it never saw, trained on (a) the new labels of the other problems,
(b) the old labels of every old problem outside the fold, (c) both, (d) the old labels
outside the fold that a larger budget provably leaves alone (their regeneration and
the response it was compared with both ended before the old budget: the rule of
`autojudge train --reuse`), (e) the new labels and those. Hidden-state
features only: the old runs have no logit features.

    python scripts/old_labels_experiment.py --new data/mined/gsm8k/shard-* \
        --old data/mined/gsm8k-256/shard-* --out data/judges/old-labels-gsm8k.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from autojudge.judge.train import fit, load_mined, load_reused, problem_folds

C_GRID = (0.0003, 0.001, 0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", nargs="+", required=True)
    parser.add_argument("--old", nargs="+", required=True)
    parser.add_argument("--out", required=True, help="Markdown file to write")
    args = parser.parse_args(argv)
    new, old = load_mined(args.new), load_mined(args.old)
    ended = load_reused(args.old, new)  # the rule `autojudge train --reuse` applies
    x_new, x_old, x_ended = new.features("hidden"), old.features("hidden"), ended.features("hidden")

    def new_labels(held_new, held_old, held_ended):
        return x_new[~held_new], new.important[~held_new]

    def old_labels(held_new, held_old, held_ended):
        return x_old[~held_old], old.important[~held_old]

    def ended_labels(held_new, held_old, held_ended):
        return x_ended[~held_ended], ended.important[~held_ended]

    def joined(*sources):
        def source(*held):
            parts = [s(*held) for s in sources]
            return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
        return source

    sources = {"new labels of the other problems": new_labels,
               "old labels (256 tokens) of the other problems": old_labels,
               "both": joined(new_labels, old_labels),
               "old labels that ended before 256 tokens": ended_labels,
               # What `autojudge train --reuse` adds to the new labels.
               "new labels and the old ones that ended before 256 tokens": joined(new_labels, ended_labels)}
    folds = problem_folds(new)
    rows = []
    for name, source in sources.items():
        best = None
        for c in C_GRID:
            scores = np.empty(len(new.important))
            for _, val in folds:  # the fold's problems, held out of every training source
                problems = np.unique(new.problem[val])
                held = [np.isin(data.problem, problems) for data in (new, old, ended)]
                x, y = source(*held)
                scores[held[0]] = fit(x, y, c).predict_proba(x_new[held[0]])[:, 1]
            auc = float(roc_auc_score(new.important, scores))
            best = max(best or (auc, c), (auc, c))
        nothing_held = [np.zeros(len(data.important), dtype=bool) for data in (new, old, ended)]
        rows.append((name, len(source(*nothing_held)[1]), best[0], best[1]))
        print(rows[-1], flush=True)
    n_new = len(np.unique(new.problem))
    lines = [f"Judges scored on the new labels ({', '.join(args.new)}: {n_new} problems, {len(new.important)} "
             f"labels, {new.important.mean():.1%} important), {len(folds)}-fold by problem: each fold's judge never "
             f"saw the problems it is scored on. Old labels: {', '.join(args.old)} ({len(old.important)} labels, "
             f"{len(ended.important)} of them ended before 256 tokens, as `train --reuse` decides). "
             f"Hidden-state features; C the best of {', '.join(map(str, C_GRID))}.", "",
             "| trained on | training labels (all folds) | ROC-AUC on new labels | C |", "|---|---|---|---|"]
    lines += [f"| {name} | {n} | {auc:.3f} | {c} |" for name, n, auc, c in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        [{"trained_on": name, "labels": n, "auc": auc, "C": c} for name, n, auc, c in rows], indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
