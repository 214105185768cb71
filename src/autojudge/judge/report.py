"""A judge's AUC report: cross-validated ROC-AUC per feature set, with reused labels or
without, and the learning curve; as JSON, a Markdown table and a plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from autojudge.errors import AutojudgeError
from autojudge.judge.baselines import rules_markdown
from autojudge.judge.train import (
    FOLDS,
    MinedData,
    best_c,
    cross_validate,
    problem_folds,
    train_only_description,
    with_reused,
)

BOOTSTRAP_DRAWS = 2000


def auc_report(data: MinedData, seed: int = 0, fractions=(0.25, 0.5, 0.75, 1.0), folds: int = FOLDS,
               known: dict | None = None, curve_features: str = "hidden", reused: MinedData | None = None,
               known_reused: dict | None = None) -> dict:
    """Cross-validated AUC per feature set, and how it grows with the number of problems.

    `known` maps a feature set already cross-validated on the same folds (same data and
    seed, e.g. by `train_judge`) to its {"auc", "C"}, which is then not computed again.
    The learning curve keeps the folds' validation problems and trains each fold on the
    first fraction of its training problems (in a seeded random order), on
    `curve_features` (the shipped judge's). With `reused` labels (or borrowed ones, of
    another task), each feature set they have is cross-validated again with them added
    to every fold's training labels (scored on `data` alone; `known_reused` as `known`),
    and `curve_features` with them against without, with a bootstrap interval by problem;
    the curve stays on `data`.
    """
    splits = problem_folds(data, folds, seed)
    by_features = _auc_by_features(data, splits, known)
    if reused is not None:
        training, training_splits = with_reused(data, reused, splits)
        reused_rows = _auc_by_features(training, training_splits, known_reused)
        without, added = cross_validate(data, curve_features, splits), cross_validate(training, curve_features,
                                                                                       training_splits)
        without, added = without[best_c(without)], added[best_c(added)]
        scored = len(data.important)
        low, high = auc_difference_interval((data.problem, data.important, added[1][:scored]),
                                            (data.problem, data.important, without[1]))
        [(kind, description)] = train_only_description(reused, data).items()
        train_only = {"kind": kind, **description, "by_features": reused_rows,
                      "difference": {"features": curve_features, "with": added[0], "without": without[0],
                                     "low": low, "high": high}}
    order = np.unique(data.problem)
    np.random.default_rng(seed).shuffle(order)
    rank = {problem: i for i, problem in enumerate(order)}
    curve, sizes_done = [], set()
    for fraction in fractions:
        smaller, sizes = [], []
        for train, val in splits:
            problems = sorted(set(data.problem[train].tolist()), key=rank.get)
            chosen = problems[: max(2, int(round(fraction * len(problems))))]
            smaller.append((train[np.isin(data.problem[train], chosen)], val))
            sizes.append(len(chosen))
        # With few problems, several fractions round to the same problems per fold:
        # one row each, not the same row again.
        if tuple(sizes) in sizes_done:
            continue
        sizes_done.add(tuple(sizes))
        try:
            results = cross_validate(data, curve_features, smaller)
        except AutojudgeError:  # a fold this small lacks one of the labels
            continue
        c = best_c(results)
        problems = [len(np.unique(data.problem[train])) for train, _ in smaller]
        curve.append({"problems": int(round(np.mean(problems))),
                      "mismatches": int(round(np.mean([len(train) for train, _ in smaller]))),
                      "auc": results[c][0], "C": c})
    return {"labels": int(len(data.important)), "problems": int(len(np.unique(data.problem))),
            "important_fraction": float(data.important.mean()),
            "validation": {"method": f"{len(splits)}-fold cross-validation by problem",
                           "problems": int(len(np.unique(data.problem))), "mismatches": int(len(data.important))},
            "by_features": by_features, "curve_features": curve_features, "learning_curve": curve,
            **({"with_reused": train_only} if reused is not None else {})}


def _auc_by_features(data: MinedData, splits, known: dict | None) -> dict:
    """{feature set: {"auc", "C"}} for every set `data` has; those in `known` not again."""
    known = {("hidden" if name == "both" else name): row for name, row in (known or {}).items()}
    rows = {}
    for features in data.feature_sets():
        if features not in known:
            results = cross_validate(data, features, splits)
            c = best_c(results)
            known[features] = {"auc": results[c][0], "C": c}
        rows[features] = known[features]
    return rows


def auc_difference_interval(a: tuple, b: tuple, draws: int = BOOTSTRAP_DRAWS,
                            rng: np.random.Generator | None = None) -> tuple[float, float]:
    """95% bootstrap interval of ROC-AUC(a) - ROC-AUC(b), where a and b are each
    (problem, labels, scores) arrays over the same problems: two scorings of one label
    set, one scoring of two label sets, or two runs' labels of the same problems.

    Problems are drawn with replacement, not labels: a problem's labels come from one
    response and move together, so an interval over labels would be too narrow. A draw
    where either side holds one class only has no AUC and is left out.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    rows = [{p: np.flatnonzero(problem == p) for p in np.unique(problem)} for problem, _, _ in (a, b)]
    ids = np.unique(a[0])
    differences = []
    for _ in range(draws):
        drawn = rng.choice(ids, len(ids))
        aucs = []
        for (_, labels, scores), rows_of in zip((a, b), rows):
            picked = np.concatenate([rows_of[p] for p in drawn])
            if len(set(labels[picked])) == 2:
                aucs.append(roc_auc_score(labels[picked], scores[picked]))
        if len(aucs) == 2:
            differences.append(aucs[0] - aucs[1])
    low, high = np.quantile(differences, [0.025, 0.975])
    return float(low), float(high)


def auc_markdown(report: dict) -> str:
    lines = [f"{report['problems']} problems, {report['labels']} labelled mismatches, "
             f"{report['important_fraction']:.1%} important; ROC-AUC by {report['validation']['method']} "
             "(each problem scored once, by a model that never saw it).", "",
             "| features | ROC-AUC | C |", "|---|---|---|"]
    lines += [f"| {name} | {row['auc']:.3f} | {row['C']:g} |" for name, row in report["by_features"].items()]
    if reused := report.get("with_reused"):
        if reused.get("kind") == "borrowed":
            what = (f"{reused['mismatches']} borrowed labels of {reused['problems']} {reused['task']} problems "
                    "(same pair and features)")
        else:
            what = (f"{reused['mismatches']} reused labels of {reused['problems']} problems mined at a budget of "
                    f"{reused['max_new_tokens']} (both texts of each ended before it)")
        lines += ["", f"With {what} added to every fold's training labels, scored on the same labels as above:",
                  "", "| features | ROC-AUC | C |", "|---|---|---|"]
        lines += [f"| {name} | {row['auc']:.3f} | {row['C']:g} |" for name, row in reused["by_features"].items()]
        if difference := reused.get("difference"):
            lines += ["", f"{difference['features']}: {difference['with']:.3f} with them against "
                          f"{difference['without']:.3f} without, {difference['with'] - difference['without']:+.3f} "
                          f"(95% bootstrap by problem {difference['low']:+.3f} to {difference['high']:+.3f})."]
    if rules := report.get("one_position_rules"):
        lines += ["", "Rules that need no training, each one logit feature at the mismatch, on the same labels "
                      "(the direction read off them):", "", rules_markdown(rules)]
    curve = report.get("curve_features", "hidden")
    lines += ["", f"| training problems per fold | training mismatches per fold | ROC-AUC ({curve}) |",
              "|---|---|---|"]
    lines += [f"| {row['problems']} | {row['mismatches']} | {row['auc']:.3f} |" for row in report["learning_curve"]]
    if outlook := curve_outlook(report["learning_curve"]):
        lines += ["", outlook]
    return "\n".join(lines)


def curve_outlook(curve: list[dict]) -> str | None:
    """What mining more would buy, read off the curve: the gain of each doubling of the
    training problems that it holds, and where the last gain, repeated, would lead (an
    optimistic guess while the gains shrink, as learning curves' gains do)."""
    if not curve:  # every fold too small to hold both labels
        return None
    doublings = [curve[-1]]  # the points of the curve, each with half the problems of the next
    while True:
        half = min(curve, key=lambda row: abs(row["problems"] - doublings[0]["problems"] / 2))
        if abs(half["problems"] / doublings[0]["problems"] - 0.5) > 0.1:
            break
        doublings.insert(0, half)
    if len(doublings) < 2:
        return None
    gains = [b["auc"] - a["auc"] for a, b in zip(doublings, doublings[1:])]
    text = ("Each doubling of the training problems per fold changed the ROC-AUC by "
            + ", then ".join(f"{gain:+.3f}" for gain in gains) + ".")
    last, problems, auc = gains[-1], doublings[-1]["problems"], doublings[-1]["auc"]
    if last <= 0:
        return text + " The last added nothing: more problems of this kind are unlikely to raise it."
    shrinking = len(gains) > 1 and gains[-1] < gains[-2]
    return text + (f" If every further doubling added as much as the last"
                   f"{' (they have been shrinking)' if shrinking else ''}, {2 * problems} training problems per "
                   f"fold would score about {auc + last:.3f}, and {4 * problems} about {auc + 2 * last:.3f}.")


def plot_learning_curve(report: dict, path: str | Path) -> None:
    """Two panels: ROC-AUC against training problems per fold (the curve's feature set),
    and every feature set's ROC-AUC on all problems, with reused labels and without."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curve_ax, bars_ax) = plt.subplots(1, 2, figsize=(9.6, 4.0), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    curve = report["learning_curve"]
    curve_ax.plot([row["problems"] for row in curve], [row["auc"] for row in curve], marker="o")
    curve_ax.set_xlabel("training problems per fold")
    curve_ax.set_ylabel("cross-validated ROC-AUC")
    curve_ax.set_title(f"{report.get('curve_features', 'hidden')} features, by training problems", fontsize=9)
    curve_ax.set_xlim(left=0)
    curve_ax.grid(alpha=0.3)
    bars = [(name, row["auc"]) for name, row in report["by_features"].items()]
    kind = report.get("with_reused", {}).get("kind", "reused")
    bars += [(f"{name} + {kind} labels", row["auc"])
             for name, row in report.get("with_reused", {}).get("by_features", {}).items()]
    bars_ax.barh([name for name, _ in bars], [auc for _, auc in bars], color="tab:gray")
    for i, (_, auc) in enumerate(bars):
        bars_ax.annotate(f"{auc:.3f}", (auc, i), textcoords="offset points", xytext=(3, -3), fontsize=7)
    low = min(auc for _, auc in bars)
    bars_ax.set_xlim(max(0.5, low - 0.05), max(auc for _, auc in bars) + 0.04)
    bars_ax.invert_yaxis()
    bars_ax.tick_params(axis="y", labelsize=7)
    bars_ax.set_title("all problems, by feature set", fontsize=9)
    fig.suptitle(f"{report['problems']} problems, {report['labels']} labels, "
                 f"{report['important_fraction']:.0%} important", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
