"""Fit the judge on a mining run: StandardScaler + logistic regression, split by problem.

The validation split holds whole problems, never single tokens: mismatches of one
answer are strongly correlated, and a token-level split would overstate the AUC.
C is chosen by validation ROC-AUC; the threshold table then tells, for each decision
threshold, the recall of important mismatches and the share of mismatches accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sklearn
import torch
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from autojudge.errors import AutojudgeError
from autojudge.judge.model import FEATURE_SETS, Judge

C_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass
class MinedData:
    draft: np.ndarray  # [n, draft hidden] float32
    target: np.ndarray  # [n, target hidden]
    important: np.ndarray  # [n] bool
    problem: np.ndarray  # [n] problem ids, for the split
    meta: dict  # the mining run's meta.json

    def features(self, which: str) -> np.ndarray:
        return {"draft": self.draft, "target": self.target,
                "both": np.concatenate([self.draft, self.target], axis=1)}[which]


def load_mined(run_dirs: str | Path | list) -> MinedData:
    """The labels and features of one mining run, or of several (shards of one run)."""
    if isinstance(run_dirs, (str, Path)):
        return _load_one(run_dirs)
    parts = [_load_one(d) for d in run_dirs]
    first = parts[0]
    for run_dir, part in zip(run_dirs[1:], parts[1:]):
        if part.meta != first.meta:
            raise AutojudgeError(f"{run_dir} was mined with other settings than {run_dirs[0]}")
        if overlap := set(part.problem.tolist()) & set(first.problem.tolist()):
            raise AutojudgeError(f"{run_dir} repeats problems of another run directory "
                                 f"(e.g. {sorted(overlap)[:3]}); give each shard its own problems")
        first = MinedData(np.concatenate([first.draft, part.draft]), np.concatenate([first.target, part.target]),
                          np.concatenate([first.important, part.important]),
                          np.concatenate([first.problem, part.problem]), first.meta)
    return first


def _load_one(run_dir: str | Path) -> MinedData:
    root = Path(run_dir)
    try:
        meta = json.loads((root / "meta.json").read_text())
        lines = (root / "problems.jsonl").read_text().splitlines()
    except FileNotFoundError as exc:
        raise AutojudgeError(f"{run_dir}: not a mining run ({exc.filename} is missing)") from None
    draft, target, important, problem = [], [], [], []
    for line in lines:
        record = json.loads(line)
        if not record["mismatches"]:
            continue
        tensors = load_file(str(root / "features" / f"{record['problem_id']}.safetensors"))
        draft.append(tensors["draft"].float().numpy())
        target.append(tensors["target"].float().numpy())
        important += [m["important"] for m in record["mismatches"]]
        problem += [record["problem_id"]] * len(record["mismatches"])
    if not important:
        raise AutojudgeError(f"{run_dir}: no labelled mismatches yet")
    return MinedData(np.concatenate(draft), np.concatenate(target), np.array(important, dtype=bool),
                     np.array(problem), meta)


def split_by_problem(data: MinedData, validation: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    splitter = GroupShuffleSplit(n_splits=1, test_size=validation, random_state=seed)
    train, val = next(splitter.split(data.important, data.important, groups=data.problem))
    return train, val


def threshold_table(p_important: np.ndarray, important: np.ndarray) -> list[dict]:
    """For each threshold: recall of important mismatches, share of mismatches accepted.

    A mismatch is accepted (the draft token kept) when P(important) < threshold.
    """
    rows = []
    # A fixed grid plus quantiles of the scores: fine where the scores are, bounded in size.
    grid = np.concatenate([np.linspace(0, 1, 101), np.quantile(p_important, np.linspace(0, 1, 201))])
    for threshold in np.unique(grid):
        flagged = p_important >= threshold
        rows.append({"threshold": float(threshold),
                     "recall": float(flagged[important].mean()) if important.any() else 1.0,
                     "accept_rate": float((~flagged).mean())})
    return rows


def fit(x: np.ndarray, y: np.ndarray, c: float):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    return model.fit(x, y)


def train_judge(data: MinedData, features: str = "both", c_grid=C_GRID, seed: int = 0) -> tuple[Judge, dict]:
    if features not in FEATURE_SETS:
        raise AutojudgeError(f"unknown feature set {features!r}; choose one of {', '.join(FEATURE_SETS)}")
    train, val = split_by_problem(data, seed=seed)
    x, y = data.features(features), data.important
    if len(set(y[train])) < 2 or len(set(y[val])) < 2:
        raise AutojudgeError("both labels must occur in training and validation; mine more problems")
    aucs = {}
    for c in c_grid:
        aucs[c] = float(roc_auc_score(y[val], fit(x[train], y[train], c).predict_proba(x[val])[:, 1]))
    best_c = max(aucs, key=aucs.get)
    model = fit(x[train], y[train], best_c)
    scaler, logistic = model[0], model[1]
    table = threshold_table(model.predict_proba(x[val])[:, 1], y[val])
    meta = {
        "pair": {k: data.meta[k] for k in ("draft", "target", "draft_backend", "target_backend")},
        "task": data.meta["task"], "features": features,
        "hidden": {"draft": int(data.draft.shape[1]), "target": int(data.target.shape[1])},
        "layout": "draft hidden then target hidden, final norm, after reading the draft token",
        "C": best_c, "validation_auc": aucs[best_c], "auc_by_C": {str(c): a for c, a in aucs.items()},
        "train": {"mismatches": int(len(train)), "problems": int(len(set(data.problem[train])))},
        "validation": {"mismatches": int(len(val)), "problems": int(len(set(data.problem[val])))},
        "important_fraction": float(y.mean()), "sklearn": sklearn.__version__, "thresholds": table,
    }
    judge = Judge(torch.tensor(scaler.mean_, dtype=torch.float32), torch.tensor(scaler.scale_, dtype=torch.float32),
                  torch.tensor(logistic.coef_[0], dtype=torch.float32), float(logistic.intercept_[0]), meta)
    return judge, meta


def best_validation_auc(data: MinedData, features: str, train: np.ndarray, val: np.ndarray,
                        c_grid=C_GRID) -> tuple[float, float]:
    """(AUC, C): the best validation ROC-AUC over the C grid."""
    x, y = data.features(features), data.important
    aucs = {c: float(roc_auc_score(y[val], fit(x[train], y[train], c).predict_proba(x[val])[:, 1]))
            for c in c_grid}
    best = max(aucs, key=aucs.get)
    return aucs[best], best


def auc_report(data: MinedData, seed: int = 0, fractions=(0.25, 0.5, 0.75, 1.0)) -> dict:
    """Validation AUC per feature set, and how it grows with the number of mined problems.

    The validation problems stay fixed; the learning curve trains on the first fraction
    of the training problems (in a seeded random order), with both feature sets.
    """
    train, val = split_by_problem(data, seed=seed)
    by_features = {}
    for features in FEATURE_SETS:
        auc, c = best_validation_auc(data, features, train, val)
        by_features[features] = {"auc": auc, "C": c}
    problems = np.unique(data.problem[train])
    np.random.default_rng(seed).shuffle(problems)
    curve = []
    for fraction in fractions:
        chosen = set(problems[: max(2, int(round(fraction * len(problems))))].tolist())
        subset = train[np.isin(data.problem[train], list(chosen))]
        if len(set(data.important[subset])) < 2:
            continue
        auc, c = best_validation_auc(data, "both", subset, val)
        curve.append({"problems": len(chosen), "mismatches": int(len(subset)), "auc": auc, "C": c})
    return {"labels": int(len(data.important)), "problems": int(len(np.unique(data.problem))),
            "important_fraction": float(data.important.mean()),
            "validation": {"problems": int(len(np.unique(data.problem[val]))), "mismatches": int(len(val))},
            "by_features": by_features, "learning_curve": curve}


def auc_markdown(report: dict) -> str:
    lines = [f"{report['problems']} problems, {report['labels']} labelled mismatches, "
             f"{report['important_fraction']:.1%} important; validation: {report['validation']['problems']} "
             f"problems, {report['validation']['mismatches']} mismatches.", "",
             "| features | validation ROC-AUC | C |", "|---|---|---|"]
    lines += [f"| {name} | {row['auc']:.3f} | {row['C']:g} |" for name, row in report["by_features"].items()]
    lines += ["", "| training problems | training mismatches | validation ROC-AUC (both) |", "|---|---|---|"]
    lines += [f"| {row['problems']} | {row['mismatches']} | {row['auc']:.3f} |" for row in report["learning_curve"]]
    return "\n".join(lines)
