"""Every acceptance rule as a classifier of held-out labels: the judge against the rules
that need no training, on the same labels, split by problem.

A rule scores each mined mismatch (higher: more likely important) and accepts the draft
token below a cut; its cut at recall R of the important labels gives its accept rate,
the share of mismatches it would keep while losing at most 1 - R of the important ones.
That is what tokens per cycle buy at a given quality, read without decoding.

    judge (per label definition and feature set)   out-of-fold P(important), 5 folds by problem
    FLy (H, L)             rejects unless the target's top-3 entropy is high and the next L
                           draft tokens match; the cut moves H (L fixed)
    typical acceptance     p_target(draft) against min(eps, alpha * exp(-H)); the cut scales both
    p_target(draft)        the target's probability of the draft token (SGLang's threshold)
    Top-K                  the draft token's rank among the target's tokens

The rules are scored on the labels as they stand, with no fitting; FLy's lookahead is
also taken at its best L on these very labels, which favours the rival. Intervals are
bootstrap percentiles over problems (a problem's labels move together), paired: every
rule is scored on the same draws, so a difference between two rules has its own interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autojudge.decoding.features import LOGIT_FEATURES, LOOKAHEAD_CAP, RULE_FEATURES
from autojudge.judge.labels import define_labels, label_shares, mined_labels
from autojudge.judge.train import MinedData, best_c, cross_validate_columns, problem_folds

RECALLS = (0.9, 0.95)
DRAWS = 1000
# C grids: the hidden states are wide, and the full grid's weakest C never wins on them.
HIDDEN_C_GRID = (1e-4, 1e-3, 1e-2)
SMALL_C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
JUDGE_FEATURES = {  # name: column groups
    "hidden": ("draft", "target"), "target": ("target",), "target+logits": ("target", "logits"),
    "logits": ("logits",), "logits+rules": ("logits", "rules"), "target+logits+rules": ("target", "logits", "rules"),
}


@dataclass
class Scored:
    """One classifier's scores on every label (NaN where it has none)."""
    rule: str
    features: str
    trained_on: str | None  # the label definition a judge learned; None for a training-free rule
    scores: np.ndarray


def rule_scores(logits: np.ndarray, rules: np.ndarray) -> list[Scored]:
    """The training-free rules' scores (higher: more important)."""
    col = {name: logits[:, i] for i, name in enumerate(LOGIT_FEATURES)}
    entropy3, lookahead = rules[:, 0], rules[:, 1]
    typical_bar = np.minimum(np.log(0.09), np.log(0.3) - col["target_entropy"])
    scored = [Scored("typical acceptance", "p_target(draft), entropy", None, typical_bar - col["target_logp_draft"]),
              Scored("p_target(draft)", "p_target(draft)", None, -col["target_logp_draft"]),
              Scored("Top-K", "rank of the draft token", None, col["target_log1p_rank_draft"])]
    for L in range(0, LOOKAHEAD_CAP + 1):
        # Rejected outright below L matches; among the rest, the lower the entropy the surer.
        blocked = np.where(np.isnan(lookahead), np.nan, (lookahead < L) * 1e6)
        scored.append(Scored(f"FLy (L={L})", "top-3 entropy, lookahead", None, blocked - entropy3))
    return scored


def rule_columns(data: MinedData) -> np.ndarray:
    """The labels' rule features, NaN rows where a problem has none (all NaN without any)."""
    return data.rules if data.rules is not None else np.full((len(data.important), len(RULE_FEATURES)), np.nan)


def judge_scores(data: MinedData, trained_on: str, folds) -> list[Scored]:
    """Out-of-fold P(important) of a judge per feature set, C chosen by out-of-fold AUC.
    Judges reading the rules' features train and score only where those exist."""
    rules = rule_columns(data)
    parts = {"draft": data.draft, "target": data.target, "logits": data.logits, "rules": rules}
    out = []
    for name, groups in JUDGE_FEATURES.items():
        if any(parts[g] is None for g in groups):
            continue
        rows = ~np.isnan(rules).any(axis=1) if "rules" in groups else np.ones(len(data.important), dtype=bool)
        x = np.concatenate([parts[g][rows] for g in groups], axis=1)
        subset_folds = _restrict(folds, rows)
        grid = HIDDEN_C_GRID if {"draft", "target"} & set(groups) else SMALL_C_GRID
        results = cross_validate_columns(x, data.important[rows], subset_folds, grid)
        scores = np.full(len(data.important), np.nan)
        scores[rows] = results[best_c(results)][1]
        out.append(Scored("judge", name, trained_on, scores))
    return out


def _restrict(folds, rows: np.ndarray):
    """The folds on the rows where `rows` is true, re-indexed."""
    index = np.cumsum(rows) - 1
    return [(index[train[rows[train]]], index[val[rows[val]]]) for train, val in folds]


class _Grouped:
    """A score column's labels grouped by distinct score, for weighted metrics per draw."""

    def __init__(self, scores: np.ndarray, important: np.ndarray):
        self.values, self.inverse = np.unique(scores, return_inverse=True)
        self.important = important.astype(float)

    def metrics(self, weights: np.ndarray) -> tuple[float, dict[float, float]]:
        """(ROC-AUC, {recall: accept rate}) with each label weighted (a bootstrap draw)."""
        size = len(self.values)
        pos = np.bincount(self.inverse, weights=weights * self.important, minlength=size)
        neg = np.bincount(self.inverse, weights=weights * (1 - self.important), minlength=size)
        total_pos, total_neg = pos.sum(), neg.sum()
        below_neg = np.cumsum(neg) - neg
        auc = float((pos * (below_neg + 0.5 * neg)).sum() / (total_pos * total_neg))
        # Flag scores >= cut: recall is the important weight at or above the cut.
        at_or_above = total_pos - (np.cumsum(pos) - pos)
        below_all = np.cumsum(pos + neg) - (pos + neg)
        accept = {}
        for recall in RECALLS:
            cut = np.flatnonzero(at_or_above >= recall * total_pos - 1e-9)[-1]
            accept[recall] = float(below_all[cut] / (total_pos + total_neg))
        return auc, accept


def head_to_head(scored: list[Scored], important: np.ndarray, problem: np.ndarray, labels: str,
                 draws: int = DRAWS, seed: int = 0) -> list[dict]:
    """Rows {rule, labels, features, trained_on, auc, auc_low, auc_high, accept_at_recall_R,
    accept_low(_R), accept_high(_R)}, on the labels every classifier scores, best first
    by accept rate at recall 0.9; with the paired difference of each row from the best
    training-free rule."""
    common = ~np.isnan(np.stack([s.scores for s in scored])).any(axis=0)
    y, groups = important[common], problem[common]
    problems, index = np.unique(groups, return_inverse=True)
    grouped = [_Grouped(s.scores[common], y) for s in scored]
    rng = np.random.default_rng(seed)
    point = [g.metrics(np.ones(len(y))) for g in grouped]
    samples = []
    for _ in range(draws):
        counts = np.bincount(rng.integers(0, len(problems), len(problems)), minlength=len(problems))
        weights = counts[index].astype(float)
        if not (weights * y).sum() or not (weights * (1 - y)).sum():
            continue
        samples.append([g.metrics(weights) for g in grouped])
    rows = []
    for k, s in enumerate(scored):
        aucs = [draw[k][0] for draw in samples]
        row = {"rule": s.rule, "labels": labels, "features": s.features, "trained_on": s.trained_on,
               "labels_scored": int(common.sum()), "important": int(y.sum()), "problems": int(len(problems)),
               "auc": point[k][0], "auc_low": _pct(aucs, 2.5), "auc_high": _pct(aucs, 97.5)}
        for recall in RECALLS:
            accepts = [draw[k][1][recall] for draw in samples]
            suffix = "" if recall == 0.9 else f"_{recall}"
            row[f"accept_at_recall_{recall}"] = point[k][1][recall]
            row[f"accept_low{suffix}"], row[f"accept_high{suffix}"] = _pct(accepts, 2.5), _pct(accepts, 97.5)
        rows.append(row)
    free = [k for k, s in enumerate(scored) if s.trained_on is None]
    best = max(free, key=lambda k: point[k][1][0.9])
    for k, row in enumerate(rows):
        diffs = [draw[k][1][0.9] - draw[best][1][0.9] for draw in samples]
        row["vs_best_rule"] = {"rule": rows[best]["rule"], "accept_difference": point[k][1][0.9] - point[best][1][0.9],
                               "low": _pct(diffs, 2.5), "high": _pct(diffs, 97.5)}
    return sorted(rows, key=lambda r: -r["accept_at_recall_0.9"])


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def compare_rules(run_dirs: list, data: MinedData, task, definitions: list[str], seed: int = 0,
                  draws: int = DRAWS) -> dict:
    """The head-to-head of every rule and judge, per label definition: {"labels": {definition:
    shares}, "rows": [...]}; judges learn each definition's labels and are scored on them."""
    rows, shares = [], {}
    problems = {p.id: p for p in task.load(data.meta["split"])}
    all_rows = mined_labels(run_dirs)
    for definition in definitions:
        relabelled, known = define_labels(data, run_dirs, definition, task)
        kept_rows = [r for r, k in zip(all_rows, known) if k]
        shares[definition] = label_shares(kept_rows, relabelled.important, task, problems)
        folds = problem_folds(relabelled, seed=seed)
        scored = rule_scores(relabelled.logits, rule_columns(relabelled))
        scored += judge_scores(relabelled, definition, folds)
        rows += head_to_head(scored, relabelled.important, relabelled.problem, definition, draws, seed)
    return {"labels": shares, "rows": rows}


def head_to_head_markdown(result: dict, title: str) -> str:
    lines = [f"# {title}", "", "| label definition | labels | important | of which on problems the target gets wrong |",
             "|---|---|---|---|"]
    for definition, s in result["labels"].items():
        wrong = s["important_on_wrong_problems"]
        lines.append(f"| {definition} | {s['labels']} | {s['important_share']:.1%} | "
                     f"{'-' if wrong is None else f'{wrong:.1%}'} |")
    for definition in result["labels"]:
        rows = [r for r in result["rows"] if r["labels"] == definition]
        if not rows:
            continue
        first = rows[0]
        lines += ["", f"## Labels: {definition} ({first['labels_scored']} labels, {first['important']} important, "
                      f"{first['problems']} problems)", "",
                  "| rule | features | ROC-AUC | accept at recall 0.9 | accept at recall 0.95 | "
                  f"accept at 0.9 minus {first['vs_best_rule']['rule']} |", "|---|---|---|---|---|---|"]
        for r in rows:
            vs = r["vs_best_rule"]
            cells = [r["rule"], r["features"], _interval(r["auc"], r["auc_low"], r["auc_high"], ".3f"),
                     _interval(r["accept_at_recall_0.9"], r["accept_low"], r["accept_high"], ".1%"),
                     _interval(r["accept_at_recall_0.95"], r["accept_low_0.95"], r["accept_high_0.95"], ".1%"),
                     _interval(vs["accept_difference"], vs["low"], vs["high"], "+.1%")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(value: float, low: float | None, high: float | None, spec: str) -> str:
    return f"{value:{spec}}" + ("" if low is None else f" ({low:{spec}} to {high:{spec}})")
