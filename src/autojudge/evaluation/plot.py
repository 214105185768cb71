"""The trade-off plot (the paper's Figure 3): accuracy against accepted tokens per cycle."""

from __future__ import annotations

from pathlib import Path

from autojudge.evaluation.methods import parse_method
from autojudge.evaluation.rows import ModeSummary

# The sweeps drawn as lines, by the policy their modes run.
FAMILIES = {"judge": "judge (threshold sweep)", "judge+lookahead": "judge with lookahead",
            "topk": "Top-K (K sweep)", "fly": "FLy", "typical": "typical acceptance"}


def plot(rows: list[ModeSummary], path: Path, title: str) -> None:
    """Accuracy against mean accepted tokens per cycle: judge and Top-K sweeps, exact, target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    series = {label: [r for r in rows if method_family(r.mode) == family] for family, label in FAMILIES.items()}
    labelled = []
    for label, points in series.items():
        points = sorted((r for r in points if r.mean_accepted is not None), key=lambda r: r.mean_accepted)
        if points:
            ax.errorbar([r.mean_accepted for r in points], [100 * r.accuracy for r in points],
                        yerr=_error_bars(points),
                        marker="o", capsize=3, label=label)
            labelled += points
    for row in rows:
        if row.lossless and row.mean_accepted is not None and row.accuracy is not None:
            exact = not row.method.is_target
            label = "exact speculative decoding" if exact else "target alone"
            ax.errorbar([row.mean_accepted], [100 * row.accuracy], yerr=_error_bars([row]),
                        marker="*" if exact else "s", markersize=10, capsize=3, linestyle="none",
                        label=label if "/" not in row.mode else row.mode)
    ax.set_xlabel("mean accepted tokens per cycle (tokens per target pass)")
    ax.set_ylabel("accuracy, % (95% CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _label_points(ax, labelled)  # once the layout is final: it places the labels in points
    fig.savefig(path)
    plt.close(fig)


# Where a point's label may go, in order: its side of the point, and its bottom's height
# above the point in points (right above, right below, left above, left below).
LABEL_PLACES = (("right", 4), ("right", -11), ("left", 4), ("left", -11))
LABEL_GAP = 4  # points between a point and its label's near edge


def _label_points(ax, points: list[ModeSummary], fontsize: float = 7) -> None:
    """Label each point at the first place where its text overlaps no marker and no label
    placed before (points of different families often sit close together); the first
    place if none is free."""
    ax.autoscale_view()
    to_points = 72 / ax.figure.dpi

    def position(r: ModeSummary) -> tuple[float, float]:  # in points on the figure
        return tuple(v * to_points for v in ax.transData.transform((r.mean_accepted, 100 * r.accuracy)))

    # (left, bottom, right, top) of what a label must not cover: the markers, then the labels placed.
    taken = [(x - 3, y - 3, x + 3, y + 3) for x, y in map(position, points)]
    for r in sorted(points, key=lambda r: r.mean_accepted):
        text = _point_label(r.mode)
        x, y = position(r)
        width, height = 0.6 * fontsize * len(text), fontsize
        boxes = [(LABEL_GAP if side == "right" else -LABEL_GAP - width, dy) for side, dy in LABEL_PLACES]
        boxes = [(x + dx, y + dy, x + dx + width, y + dy + height) for dx, dy in boxes]
        free = [b for b in boxes if not any(b[0] < t[2] and t[0] < b[2] and b[1] < t[3] and t[1] < b[3]
                                            for t in taken)]
        box = (free or boxes)[0]
        taken.append(box)
        ax.annotate(text, (r.mean_accepted, 100 * r.accuracy), textcoords="offset points",
                    xytext=(box[0] - x, box[1] - y), fontsize=fontsize)


def _error_bars(rows: list[ModeSummary]) -> list[list[float]]:
    # max(0, ...): the interval's ends can sit a rounding error inside the point.
    return [[max(0.0, 100 * (r.accuracy - r.ci_low)) for r in rows],
            [max(0.0, 100 * (r.ci_high - r.accuracy)) for r in rows]]


def method_family(name: str) -> str:
    """"judge" for judge@0.9 or llamacpp/judge:0.3/w8: the policy a method runs; a judge
    with a lookahead (judge:0.3:4) is a policy of its own, drawn as its own line."""
    method = parse_method(name)
    if method.adapter:
        return method.adapter
    mode = method.mode
    return f"{mode.policy}+lookahead" if mode.needs_judge and mode.values[1:2] not in ((), (0,)) else mode.policy


def _point_label(name: str) -> str:
    # judge:0.3 -> "0.3" (threshold), judge@0.9 -> "R0.9" (validation recall), topk:8 -> "8",
    # judge@0.9:6 -> "R0.9:6" (with a lookahead of 6), fly -> "fly" (its defaults),
    # llamacpp/topk:8/w16 -> "8 w16"
    method = parse_method(name)
    mode = method.mode
    label = mode.name[len(mode.policy) + 1:] or mode.name
    label = ("R" if mode.by_recall else "") + label
    return label + (f" w{method.window}" if method.window else "")
