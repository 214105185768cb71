"""Where the judge's ROC-AUC stops: which problems the target is unsure of, or which tokens?

On a mining run, reports how the share of important labels spreads over problems, the
ROC-AUC of scoring each label by its own problem's share (an upper bound: it sees the
labels), and cross-validated ROC-AUC (5 folds by problem, logistic regression, best C)
of features a decoder has at hand besides the judge's: the kinds of the two tokens
(digit, operator, letter, blank, punctuation) and the position, and running statistics
of the earlier mismatches in the same response; with --prompt-state, also the target's
final-norm hidden state at the prompt's end (one problem-level feature a decoder has
from its prefill), alone and beside the judge's target features.

    python scripts/auc_ceiling.py --data data/mined/gsm8k/shard-1-of-2 --prompt-state --nonlinear \
        --out docs/bench/auc-ceiling-gsm8k.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from script_report import publish
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from autojudge.judge.train import C_GRID, judge_model, load_mined, problem_folds
from autojudge.models.loading import load_tokenizer
from autojudge.runfiles import read_records

KINDS = (str.isdigit, lambda c: c in "+-*/=$%", str.isspace, str.isalpha, lambda c: c in ".,:;!?()[]{}\\")


def token_kinds(text: str) -> list[bool]:
    return [text.strip() == "" if kind is str.isspace else any(kind(c) for c in text) for kind in KINDS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a mining run with logit features")
    parser.add_argument("--prompt-state", action="store_true",
                        help="load the run's target and score its hidden state at each prompt's end too")
    parser.add_argument("--nonlinear", action="store_true",
                        help="score gradient-boosted trees and a small neural network on the judge's features too")
    parser.add_argument("--out", help="write the report here too (markdown)")
    args = parser.parse_args(argv)
    data = load_mined(args.data)
    records = [r for r in read_records(Path(args.data) / "problems.jsonl", repair=False) if r["mismatches"]]
    tokenizer = load_tokenizer(data.meta["target"])
    logits = data.features("logits")
    kinds, running, shares, own_share = [], [], [], []
    row = 0
    for record in records:
        mismatches = record["mismatches"]
        share = float(np.mean([m["important"] for m in mismatches]))
        shares.append(share)
        for k, m in enumerate(mismatches):
            draft_text, target_text = (tokenizer.decode([m[key]]) for key in ("draft_token", "target_token"))
            kinds.append(token_kinds(draft_text) + token_kinds(target_text)
                         + [m["position"] / 1000, np.log1p(m["position"])])
            earlier = logits[row - k:row]  # the same response's earlier mismatches (entropy: column 3)
            running.append([k, k / (m["position"] + 1), earlier[:, 3].mean() if k else 0.0,
                            earlier[:, 0].mean() if k else 0.0, earlier[:, 3].max() if k else 0.0])
            own_share.append(share)
            row += 1
    y = data.important
    assert row == len(y), "records and features disagree"
    folds = problem_folds(data)

    def cross_validated(x: np.ndarray, models=None) -> float:
        """Best ROC-AUC over the models (default: logistic regression at each C of the grid)."""
        best = 0.0
        for make in models or [lambda c=c: judge_model(c) for c in C_GRID]:
            scores = np.empty(len(y))
            for train, val in folds:
                scores[val] = make().fit(x[train], y[train]).predict_proba(x[val])[:, 1]
            best = max(best, roc_auc_score(y, scores))
        return best

    kinds, running = np.array(kinds, dtype=float), np.array(running, dtype=float)
    histogram, edges = np.histogram(shares, bins=[0, 0.01, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.01])
    lines = [f"{len(records)} problems with labels, {len(y)} labels, {y.mean():.1%} important", "",
             "| important share of a problem's labels | problems |", "|---|---|"]
    lines += [f"| {lo:.2f} to {min(hi, 1):.2f} | {count} |" for lo, hi, count in zip(edges, edges[1:], histogram)]
    lines += ["", "| scored by | ROC-AUC |", "|---|---|",
              f"| its problem's important share (sees the labels: a bound) | {roc_auc_score(y, own_share):.3f} |",
              f"| token kinds and position (cross-validated) | {cross_validated(kinds):.3f} |",
              f"| earlier mismatches of the response (cross-validated) | {cross_validated(running):.3f} |",
              f"| the judge's features, all (cross-validated) | {cross_validated(data.features('all')):.3f} |",
              f"| all, token kinds, position, earlier mismatches (cross-validated) | "
              f"{cross_validated(np.hstack([data.features('all'), kinds, running])):.3f} |"]
    if args.prompt_state:
        states = prompt_states(data)
        lines += [f"| the target's state at the prompt's end (cross-validated) | {cross_validated(states):.3f} |",
                  f"| the judge's target features (cross-validated) | {cross_validated(data.features('target')):.3f} |",
                  "| the judge's target features and the prompt's state (cross-validated) | "
                  f"{cross_validated(np.hstack([data.features('target'), states])):.3f} |"]
    if args.nonlinear:
        target_and_logits = data.features("target+logits")
        trees = [lambda: make_pipeline(PrincipalComponents(64, logits.shape[1]), HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=0))]
        networks = [lambda alpha=alpha: make_pipeline(StandardScaler(), PCA(128, random_state=0), MLPClassifier(
            (64,), alpha=alpha, max_iter=300, early_stopping=True, random_state=0)) for alpha in (0.1, 1.0, 10.0)]
        lines += ["| gradient-boosted trees: logit features, target state's 64 principal components "
                  f"(cross-validated) | {cross_validated(target_and_logits, trees):.3f} |",
                  "| neural network, 64 units: target and logit features' 128 principal components, best of 3 "
                  f"weight decays (cross-validated) | {cross_validated(target_and_logits, networks):.3f} |"]
    return publish(lines, args.out)


class PrincipalComponents(BaseEstimator, TransformerMixin):
    """The hidden state's first k principal components (scaled), the last `keep` columns as they are:
    trees split on a few summaries of the state and on each logit feature."""

    def __init__(self, k: int, keep: int):
        self.k, self.keep = k, keep

    def fit(self, x, y=None):
        hidden = x[:, :-self.keep]
        self.scaler = StandardScaler().fit(hidden)
        self.pca = PCA(self.k, random_state=0).fit(self.scaler.transform(hidden))
        return self

    def transform(self, x):
        return np.hstack([self.pca.transform(self.scaler.transform(x[:, :-self.keep])), x[:, -self.keep:]])


def prompt_states(data) -> np.ndarray:
    """[labels, target hidden]: for each label, the target's final-norm hidden state after
    reading its problem's prompt (the same state for every label of a problem)."""
    from autojudge.mining.algorithm import features_at
    from autojudge.models.loading import load_pair
    from autojudge.prompting import chat_prompt_ids
    from autojudge.tasks import get_task

    pair = load_pair(None, data.meta["target"])
    task = get_task(data.meta["task"])
    problems = {p.id: p for p in task.load(data.meta["split"])}
    states = {}
    for problem_id in np.unique(data.problem).tolist():
        ids = chat_prompt_ids(pair.tokenizer, task.messages(problems[problem_id]))
        states[problem_id] = features_at(pair.target, ids)[1].float().numpy()
    return np.stack([states[p] for p in data.problem.tolist()])


if __name__ == "__main__":
    sys.exit(main())
