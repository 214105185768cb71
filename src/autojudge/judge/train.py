"""Fit the judge on a mining run: StandardScaler + logistic regression, split by problem.

Validation holds whole problems, never single tokens: mismatches of one answer are
strongly correlated, and a token-level split would overstate the AUC. With a few dozen
mined problems a single held-out split is too small to trust, so every figure here is
cross-validated by problem (k folds; each problem is scored once, by a model that never
saw it). C is chosen by that out-of-fold ROC-AUC; the threshold table (for each
decision threshold: the recall of important mismatches and the share of mismatches
accepted) comes from the same out-of-fold scores; the shipped model is then refit on
every problem at the chosen C.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import sklearn
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from autojudge.decoding.features import LOGIT_FEATURES, RULE_FEATURES, TARGET_LOGIT_FEATURES
from autojudge.errors import AutojudgeError
from autojudge.judge.model import FEATURE_SETS, Judge
from autojudge.models.backend import feature_layer_name
from autojudge.runfiles import RULE_FEATURES_DIR, changed_settings, read_records

# meta.json keys that older mining runs lack (autojudge.mining.store.RECORDED_LATER;
# the judge does not import mining).
RECORDED_LATER = ("task_fingerprint",)

C_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
FOLDS = 5


@dataclass
class MinedData:
    draft: np.ndarray  # [n, draft hidden] float32
    target: np.ndarray  # [n, target hidden]
    important: np.ndarray  # [n] bool
    problem: np.ndarray  # [n] problem ids, for the split
    meta: dict  # the mining run's meta.json
    logits: np.ndarray | None = None  # [n, len(LOGIT_FEATURES)]; None for runs mined without them
    # [n, len(RULE_FEATURES)] from the run's rules/ (autojudge rule-features); NaN rows for
    # problems without them, None when no problem has them.
    rules: np.ndarray | None = None

    def features(self, which: str) -> np.ndarray:
        if which not in FEATURE_SETS:
            raise AutojudgeError(f"unknown feature set {which!r}; choose one of {', '.join(FEATURE_SETS)}")
        groups = FEATURE_SETS[which]
        if ("logits" in groups or "target-logits" in groups) and self.logits is None:
            raise AutojudgeError(f"feature set {which!r} needs logit features, which this mining run "
                                 "lacks (mined before they were recorded); choose draft, target or hidden")
        if "rules" in groups and (self.rules is None or np.isnan(self.rules).any()):
            missing = len(self.important) if self.rules is None else int(np.isnan(self.rules).any(axis=1).sum())
            raise AutojudgeError(f"feature set {which!r} needs the rules' features, which {missing} labels lack; "
                                 "run `autojudge rule-features --data RUN` on the mining runs first")
        parts = {"draft": self.draft, "target": self.target, "logits": self.logits, "rules": self.rules,
                 "target-logits": None if self.logits is None else self.logits[:, :len(TARGET_LOGIT_FEATURES)]}
        return np.concatenate([parts[group] for group in groups], axis=1)

    def select(self, keep: np.ndarray) -> MinedData:
        """The labels where `keep` (a bool per label) is true."""
        return MinedData(self.draft[keep], self.target[keep], self.important[keep], self.problem[keep], self.meta,
                         None if self.logits is None else self.logits[keep],
                         None if self.rules is None else self.rules[keep])

    def feature_sets(self) -> list[str]:
        """The feature sets this data can train (one name each: "both" is "hidden")."""
        return [name for name, groups in FEATURE_SETS.items()
                if name != "both" and (not {"logits", "target-logits"} & set(groups) or self.logits is not None)
                and ("rules" not in groups or (self.rules is not None and not np.isnan(self.rules).any()))]


def load_mined(run_dirs: str | Path | list) -> MinedData:
    """The labels and features of one mining run, or of several (shards of one run)."""
    if isinstance(run_dirs, (str, Path)):
        return _load_one(run_dirs)
    parts = [_load_one(d) for d in run_dirs]
    seen = set(parts[0].problem.tolist())
    for run_dir, part in zip(run_dirs[1:], parts[1:]):
        if changed := changed_settings(*_comparable(_settings(parts[0].meta), _settings(part.meta))):
            raise AutojudgeError(f"{run_dir} was mined with other settings than {run_dirs[0]}: {'; '.join(changed)}")
        if overlap := set(part.problem.tolist()) & seen:
            raise AutojudgeError(f"{run_dir} repeats problems of another run directory "
                                 f"(e.g. {sorted(overlap)[:3]}); give each shard its own problems")
        seen |= set(part.problem.tolist())
    return _joined(parts, parts[0].meta)


def _comparable(first: dict, other: dict) -> tuple[dict, dict]:
    """Two runs' settings less those one of them did not record (a run mined before
    task fingerprints were recorded trains beside newer ones)."""
    unrecorded = {k for k in RECORDED_LATER if (k in first) != (k in other)}
    return ({k: v for k, v in first.items() if k not in unrecorded},
            {k: v for k, v in other.items() if k not in unrecorded})


def _settings(meta: dict) -> dict:
    """A run's meta less where its target features were computed: states recomputed on
    torch (scripts/layer_probe.py) read the same layer as llama.cpp's, to rounding, so
    such runs train together with mined ones."""
    return {**meta, "features": {k: v for k, v in meta["features"].items() if k != "target_recomputed"}}


def _joined(parts: list[MinedData], meta: dict) -> MinedData:
    """The parts' labels one after another; logit features only if every part has them."""
    logits = [part.logits for part in parts]
    rules = [part.rules if part.rules is not None else np.full((len(part.important), len(RULE_FEATURES)), np.nan)
             for part in parts]
    return MinedData(*(np.concatenate([getattr(part, f) for part in parts])
                       for f in ("draft", "target", "important", "problem")), meta,
                     None if any(x is None for x in logits) else np.concatenate(logits),
                     None if all(part.rules is None for part in parts) else np.concatenate(rules))


def _load_one(run_dir: str | Path, keep=None) -> MinedData:
    """`keep(record)`, when given, says which of a problem's mismatches to load (a list of bools)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise AutojudgeError(f"{run_dir}: no such directory (give a run directory written by autojudge mine)")
    for name in ("meta.json", "problems.jsonl"):
        if not (root / name).is_file():
            raise AutojudgeError(f"{run_dir}: not a mining run ({root / name} is missing)")
    meta = json.loads((root / "meta.json").read_text())
    draft, target, logits, rules, important, problem = [], [], [], [], [], []
    # Read-only: the run may still be mining, its last line half written.
    for record in read_records(root / "problems.jsonl", repair=False):
        chosen = np.array(keep(record) if keep else [True] * len(record["mismatches"]), dtype=bool)
        if not chosen.any():
            continue
        features = root / "features" / f"{record['problem_id']}.safetensors"
        try:
            tensors = load_file(str(features))
        except (OSError, SafetensorError) as exc:
            raise AutojudgeError(f"{features}: the features of problem {record['problem_id']} "
                                 f"are unreadable ({exc})") from None
        draft.append(tensors["draft"].float().numpy()[chosen])
        target.append(tensors["target"].float().numpy()[chosen])
        if "logits" in tensors:
            logits.append(tensors["logits"].float().numpy()[chosen])
        rule_file = root / RULE_FEATURES_DIR / f"{record['problem_id']}.safetensors"
        rules.append(load_file(str(rule_file))["rules"].numpy()[chosen] if rule_file.exists()
                     else np.full((int(chosen.sum()), len(RULE_FEATURES)), np.nan))
        important += [m["important"] for m, kept in zip(record["mismatches"], chosen) if kept]
        problem += [record["problem_id"]] * int(chosen.sum())
    if not important:
        raise AutojudgeError(f"{run_dir}: no labelled mismatches yet")
    if logits and len(logits) != len(draft):
        raise AutojudgeError(f"{run_dir}: some problems have logit features and some do not")
    rules = np.concatenate(rules)
    return MinedData(np.concatenate(draft), np.concatenate(target), np.array(important, dtype=bool),
                     np.array(problem), meta, np.concatenate(logits) if logits else None,
                     None if np.isnan(rules).all() else rules)


# Tokens a response's text may count above its generated ids when tokenized again.
RETOKENIZE_SLACK = 6


def load_reused(run_dirs: list, like: MinedData) -> MinedData:
    """The labels of runs mined at a smaller budget that a larger budget provably leaves
    alone: the regeneration and the response it was compared with both ended before
    that budget, so decoding them again with more room gives the same texts.

    A label's reference is the first answer until the first swap Algorithm 1 keeps, then
    that swap's regeneration. Runs that did not record how a text ended (older ones) are
    judged by its length: tokenized again, at least RETOKENIZE_SLACK tokens short of
    the budget. Such runs store the first answer only as the final response of a
    problem that kept no swap; labels compared with a first answer of unknown length
    are left out.
    """
    parts = []
    same = ("task", "draft", "target", "draft_backend", "target_backend")
    for run_dir in run_dirs:
        if not (Path(run_dir) / "meta.json").is_file():
            _load_one(run_dir)  # says what is missing
        meta = json.loads((Path(run_dir) / "meta.json").read_text())
        layout = {k: v for k, v in meta.get("features", {}).items() if k != "logits"}
        if ([meta.get(k) for k in same] != [like.meta.get(k) for k in same]
                or layout != {k: v for k, v in like.meta.get("features", {}).items() if k != "logits"}):
            raise AutojudgeError(f"{run_dir} was mined on another task, pair or feature layout than the data it "
                                 "would be added to")
        budget = meta["max_new_tokens"]
        if budget >= like.meta["max_new_tokens"]:
            raise AutojudgeError(f"{run_dir}: reused labels come from a smaller budget than the data's "
                                 f"({budget} >= {like.meta['max_new_tokens']}); train on it with --data")
        tokenizer = _tokenizer(meta["target"])
        parts.append(_load_one(run_dir, keep=lambda record: _ended_labels(record, budget, tokenizer)))
    if not parts:
        raise AutojudgeError("no run to reuse labels from")
    return _joined(parts, parts[0].meta)


def load_borrowed(run_dirs: list, like: MinedData) -> MinedData:
    """Labels of another task, mined with the same pair, runtimes, feature layer and
    layout as `like`, to train on beside its labels and never be scored: a task with few
    labels learns from a better-mined one (MBPP from GSM8K). Their problem ids are made
    negative, apart from `like`'s, so that no fold takes them for its own problems."""
    borrowed = load_mined(run_dirs)
    same = ("draft", "target", "draft_backend", "target_backend")
    if ([borrowed.meta.get(k) for k in same] != [like.meta.get(k) for k in same]
            or _settings(borrowed.meta)["features"] != _settings(like.meta)["features"]):
        raise AutojudgeError(f"{run_dirs[0]} was mined with another pair, runtime, feature layer or layout than "
                             "the data it would train beside")
    if borrowed.meta["task"] == like.meta["task"]:
        raise AutojudgeError(f"{run_dirs[0]} holds {like.meta['task']} labels, as the data does: give it to --data")
    return replace(borrowed, problem=-1 - borrowed.problem)


def train_only_description(train_only: MinedData, data: MinedData) -> dict:
    """What a judge's meta and AUC report say of labels that only ever train: reused
    ones (a smaller budget of the same task) or borrowed ones (another task)."""
    common = {"mismatches": int(len(train_only.important)), "problems": int(len(np.unique(train_only.problem)))}
    if train_only.meta["task"] != data.meta["task"]:
        return {"borrowed": {**common, "task": train_only.meta["task"],
                             "rule": "another task's labels, same pair and features; trained on, never scored"}}
    return {"reused": {**common, "max_new_tokens": train_only.meta.get("max_new_tokens"),
                       "rule": "regeneration and compared response both ended before that budget; "
                               "trained on, never scored"}}


def _tokenizer(name: str):
    from autojudge.models.loading import load_tokenizer
    return load_tokenizer(name)


def _ended_labels(record: dict, budget: int, tokenizer) -> list[bool]:
    def ended(text: str, stop: str | None) -> bool:
        if stop is not None:
            return stop not in ("length", "rejoined")  # a re-joined text ended as another did
        return text is not None and len(tokenizer(text)["input_ids"]) <= budget - RETOKENIZE_SLACK

    def swap_kept(m: dict) -> bool:  # its regeneration became the response later labels compare with
        return not m["important"] and not m.get("settled")

    # With no swap kept, the final response is the first answer; else its text is lost.
    kept_any = any(swap_kept(m) for m in record["mismatches"])
    # Whether the response later labels compare with ended: judged once per response, as
    # an old run's check tokenizes the whole text.
    reference_ended = ended(None if kept_any else record["response"], record.get("first_answer_stop"))
    keep = []
    for m in record["mismatches"]:
        regenerated = bool(m.get("settled")) or ended(m["alt_response"], m.get("regeneration_stop"))
        keep.append(reference_ended and regenerated)
        if swap_kept(m):
            reference_ended = regenerated
    return keep


def problem_folds(data: MinedData, folds: int = FOLDS, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) index pairs; every problem is in exactly one validation fold."""
    n_problems = len(np.unique(data.problem))
    if n_problems < 2:
        raise AutojudgeError("cross-validation needs at least 2 mined problems")
    splitter = GroupKFold(n_splits=min(folds, n_problems), shuffle=True, random_state=seed)
    return list(splitter.split(data.important, data.important, groups=data.problem))


def out_of_fold_scores(x: np.ndarray, y: np.ndarray, folds, c: float) -> np.ndarray:
    """P(important) for every mismatch from the model of the fold that held it out (NaN
    for rows that only ever train: reused labels)."""
    scores = np.full(len(y), np.nan)
    for train, val in folds:
        if len(set(y[train])) < 2:
            raise AutojudgeError("a training fold holds only one label; mine more problems")
        scores[val] = fit(x[train], y[train], c).predict_proba(x[val])[:, 1]
    return scores


def cross_validate(data: MinedData, features: str, folds, c_grid=C_GRID) -> dict[float, tuple[float, np.ndarray]]:
    """For each C: (out-of-fold ROC-AUC, out-of-fold scores)."""
    return cross_validate_columns(data.features(features), data.important, folds, c_grid)


def cross_validate_columns(x: np.ndarray, y: np.ndarray, folds, c_grid=C_GRID) -> dict[float, tuple[float, np.ndarray]]:
    """cross_validate on any feature columns (an experiment's own, say), labels `y`."""
    results = {}
    for c in c_grid:
        scores = out_of_fold_scores(x, y, folds, c)
        scored = ~np.isnan(scores)
        results[c] = (float(roc_auc_score(y[scored], scores[scored])), scores)
    return results


def with_reused(data: MinedData, reused: MinedData, folds) -> tuple[MinedData, list]:
    """`data` followed by `reused`, and `folds` that train on the reused labels of every
    problem outside the fold and score only `data`'s labels."""
    both = _joined([data, reused], data.meta)
    offset = len(data.important)
    return both, [(np.concatenate([train, offset + np.flatnonzero(~np.isin(reused.problem, data.problem[val]))]), val)
                  for train, val in folds]


def best_c(results: dict[float, tuple[float, np.ndarray]]) -> float:
    return max(results, key=lambda c: results[c][0])


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


def judge_model(c: float):
    """The judge's classifier, unfitted: standardised features, logistic regression at C."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def fit(x: np.ndarray, y: np.ndarray, c: float):
    return judge_model(c).fit(x, y)


def train_judge(data: MinedData, features: str = "hidden", c_grid=C_GRID, seed: int = 0,
                folds: int = FOLDS, reused: MinedData | None = None) -> tuple[Judge, dict]:
    """The judge, cross-validated by problem on `data`. `reused` labels (load_reused, or
    another task's: load_borrowed) only ever train: every fold also learns from those of
    the problems it does not score, and the AUC, the choice of C and the threshold table
    come from `data` alone."""
    if len(set(data.important)) < 2:
        raise AutojudgeError("both labels must occur in the mined data; mine more problems")
    if reused is not None and reused.logits is None and "logits" in FEATURE_SETS.get(features, ()):
        raise AutojudgeError(f"reused labels have no logit features; train {features!r} without --reuse, "
                             "or choose draft, target or hidden")
    splits = problem_folds(data, folds, seed)
    scored = len(data.important)
    training, splits = with_reused(data, reused, splits) if reused is not None else (data, splits)
    x, y = training.features(features), training.important
    results = cross_validate(training, features, splits, c_grid)
    c = best_c(results)
    table = threshold_table(results[c][1][:scored], y[:scored])
    model = fit(x, y, c)
    scaler, logistic = model[0], model[1]
    n_problems = int(len(np.unique(data.problem)))
    target_layer = data.meta["target_backend"].get("feature_layer")
    meta = {
        "pair": {k: data.meta[k] for k in ("draft", "target", "draft_backend", "target_backend")},
        "task": data.meta["task"], "features": features,
        "hidden": {"draft": int(data.draft.shape[1]), "target": int(data.target.shape[1])},
        "layout": " then ".join(FEATURE_SETS[features])
                  + f"; hidden states: the target's {feature_layer_name(target_layer)} and the draft's final norm, "
                    "after reading the draft token",
        "logit_features": list(LOGIT_FEATURES),
        "rule_features": list(RULE_FEATURES),
        "C": c, "validation_auc": results[c][0], "auc_by_C": {str(k): auc for k, (auc, _) in results.items()},
        "train": {"mismatches": int(len(y)), "problems": int(len(np.unique(training.problem)))},
        "validation": {"method": f"{len(splits)}-fold cross-validation by problem",
                       "mismatches": scored, "problems": n_problems},
        "important_fraction": float(data.important.mean()), "sklearn": sklearn.__version__, "thresholds": table,
    }
    if reused is not None:
        meta.update(train_only_description(reused, data))
    judge = Judge(torch.tensor(scaler.mean_, dtype=torch.float32), torch.tensor(scaler.scale_, dtype=torch.float32),
                  torch.tensor(logistic.coef_[0], dtype=torch.float32), float(logistic.intercept_[0]), meta)
    return judge, meta
