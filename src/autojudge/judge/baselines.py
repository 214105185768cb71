"""Whether a trained judge learned anything: its AUC against chance and against rules
that need no training.

A one-position rule scores a mismatch by one number decoding has anyway at that
position (the logit features of autojudge.decoding.features): the target's
log-probability of the draft token, its rank, an entropy. Each such rule is a
classifier with no parameters, so its ROC-AUC on the labels is what any judge must
beat to earn its training. The direction of each rule (a low log-probability means
important, or a high one) is read off the same labels, which favours the rules: a
judge that does not beat them has learned nothing a threshold could not do.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from autojudge.decoding.features import LOGIT_FEATURES

# Below this cross-validated ROC-AUC a judge barely ranks important mismatches above
# the others; `train` warns.
AUC_FLOOR = 0.6
# Below this it ranks them worse than chance; `train` writes it only when forced.
CHANCE = 0.5


def one_position_rules(logits: np.ndarray | None, important: np.ndarray) -> list[dict]:
    """Each logit feature as a classifier of importance, best first: {"feature",
    "direction" ("high" or "low": which values the rule calls important), "auc"}. []
    without logit features (runs mined before they were recorded) or with one label."""
    if logits is None or len(set(important.tolist())) < 2:
        return []
    rules = []
    for column, feature in enumerate(LOGIT_FEATURES):
        auc = float(roc_auc_score(important, logits[:, column]))
        rules.append({"feature": feature, "direction": "high" if auc >= 0.5 else "low", "auc": max(auc, 1 - auc)})
    return sorted(rules, key=lambda rule: -rule["auc"])


def learning_warnings(auc: float, rules: list[dict], labels: int, problems: int) -> list[str]:
    """What `train` warns about a judge of cross-validated ROC-AUC `auc`, trained on
    `labels` labelled mismatches of `problems` problems."""
    basis = f"on {labels} labels of {problems} problems"
    warnings = []
    if auc < AUC_FLOOR:
        warnings.append(f"the judge's cross-validated ROC-AUC is {auc:.3f} {basis}, below {AUC_FLOOR}: it barely "
                        "tells important mismatches from the others; mine more problems (or check that the task's "
                        "answers change for a reason, with autojudge task check)")
    if rules and auc <= rules[0]["auc"]:
        best = rules[0]
        warnings.append(f"the judge (ROC-AUC {auc:.3f}) is no better than a rule that needs no training: call a "
                        f"mismatch important when {best['feature']} is {best['direction']} (ROC-AUC "
                        f"{best['auc']:.3f} {basis})")
    return warnings


def rules_markdown(rules: list[dict]) -> str:
    """The rules as a Markdown table, for the AUC report."""
    lines = ["| one-position rule (no training) | important when | ROC-AUC |", "|---|---|---|"]
    lines += [f"| {rule['feature']} | {rule['direction']} | {rule['auc']:.3f} |" for rule in rules]
    return "\n".join(lines)
