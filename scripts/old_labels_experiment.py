"""Do the old 256-token labels help a judge score the new, uncut ones?

Cross-validated by problem over the new run: each fold's judge is scored on the new
labels of problems it never saw, trained on (a) the new labels of the other problems,
(b) the old labels of every old problem outside the fold, (c) both, (d) the old labels
outside the fold whose regeneration and final response both ended before the old
budget (the labels a larger budget would most likely have left alone). Hidden-state
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

from autojudge.judge.train import fit, load_mined, problem_folds
from autojudge.models.loading import load_tokenizer
from autojudge.runfiles import read_records

C_GRID = (0.001, 0.01)
ENDED = 250  # tokens: a text shorter than this ended by itself under a 256-token budget


def ended_mask(run_dirs: list[str], tokenizer) -> np.ndarray:
    """Per old label, in load_mined's order: its regeneration and its problem's final
    response both ended before the old budget."""
    mask = []
    for run_dir in run_dirs:
        for record in read_records(Path(run_dir) / "problems.jsonl", repair=False):
            if not record["mismatches"]:
                continue
            response_ended = len(tokenizer(record["response"])["input_ids"]) < ENDED
            for m in record["mismatches"]:
                mask.append(response_ended and len(tokenizer(m["alt_response"])["input_ids"]) < ENDED)
    return np.array(mask, dtype=bool)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", nargs="+", required=True)
    parser.add_argument("--old", nargs="+", required=True)
    parser.add_argument("--out", required=True, help="Markdown file to write")
    args = parser.parse_args(argv)
    new, old = load_mined(args.new), load_mined(args.old)
    tokenizer = load_tokenizer(new.meta["target"])
    old_ended = ended_mask(args.old, tokenizer)
    x_new, x_old = new.features("hidden"), old.features("hidden")

    def new_labels(held_new, held_old):
        return x_new[~held_new], new.important[~held_new]

    def old_labels(held_new, held_old, keep=True):
        mask = ~held_old & keep
        return x_old[mask], old.important[mask]

    def both(held_new, held_old):
        (a, ya), (b, yb) = new_labels(held_new, held_old), old_labels(held_new, held_old)
        return np.concatenate([a, b]), np.concatenate([ya, yb])

    sources = {"new labels of the other problems": new_labels,
               "old labels (256 tokens) of the other problems": old_labels,
               "both": both,
               "old labels that ended before 256 tokens": lambda hn, ho: old_labels(hn, ho, old_ended)}
    folds = problem_folds(new)
    rows = []
    for name, source in sources.items():
        best = None
        for c in C_GRID:
            scores = np.empty(len(new.important))
            for _, val in folds:  # the fold's problems, held out of every training source
                problems = np.unique(new.problem[val])
                held_new, held_old = np.isin(new.problem, problems), np.isin(old.problem, problems)
                x, y = source(held_new, held_old)
                scores[held_new] = fit(x, y, c).predict_proba(x_new[held_new])[:, 1]
            auc = float(roc_auc_score(new.important, scores))
            best = max(best or (auc, c), (auc, c))
        everything = np.zeros(len(new.important), dtype=bool), np.zeros(len(old.important), dtype=bool)
        rows.append((name, len(source(*everything)[1]), best[0], best[1]))
        print(rows[-1], flush=True)
    n_new = len(np.unique(new.problem))
    lines = [f"Judges scored on the new labels ({', '.join(args.new)}: {n_new} problems, {len(new.important)} "
             f"labels, {new.important.mean():.1%} important), {len(folds)}-fold by problem: each fold's judge never "
             f"saw the problems it is scored on. Old labels: {', '.join(args.old)} ({len(old.important)} labels, "
             f"{old_ended.sum()} of them ended before 256 tokens). Hidden-state features; C the better of "
             f"{', '.join(map(str, C_GRID))}.", "",
             "| trained on | training labels (all folds) | ROC-AUC on new labels | C |", "|---|---|---|---|"]
    lines += [f"| {name} | {n} | {auc:.3f} | {c} |" for name, n, auc, c in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        [{"trained_on": name, "labels": n, "auc": auc, "C": c} for name, n, auc, c in rows], indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
