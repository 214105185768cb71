"""Write docs/results.md from the committed results: mining runs, judge reports, evaluations.

    python scripts/render_results_doc.py

Every number in the generated tables comes from a file under data/ or docs/, so the
tables and the data cannot disagree; rerun this after any of them changes. The findings
written by hand at the top of the page, above MARKER, are kept as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from autojudge.mining.store import mining_summary

ROOT = Path(__file__).resolve().parent.parent
MINED = ROOT / "data" / "mined"
JUDGES = ROOT / "data" / "judges"
EVALS = ROOT / "docs" / "eval"
PAGE = ROOT / "docs" / "results.md"
TITLE = "# Results on the default pair (2-core CPU; llama.cpp runtime unless a section says otherwise)"
MARKER = "<!-- generated below by scripts/render_results_doc.py; the findings above are written by hand and kept -->"


def _cut(share: dict) -> str:
    # Runs mined before stop reasons were recorded cannot say.
    return f"{share['cut']}/{share['of']} ({share['fraction']:.1%})" if share["of"] else "not recorded"


def mining_row(name: str, records: list[dict]) -> str:
    summary = mining_summary(records)
    labels, important = summary["labels"], round((summary["important_fraction"] or 0) * summary["labels"])
    hours = summary["hours"]
    return (f"| {name} | {summary['problems']} | {labels} | {important} ({summary['important_fraction'] or 0:.1%}) | "
            f"{_cut(summary['first_answers_cut'])} | {_cut(summary['regenerations_cut'])} | "
            f"{hours:.2f} | {labels / hours if hours else 0:.0f} | {summary['target_passes_per_label'] or 0:.0f} |")


def mined_runs() -> dict[str, dict[Path, list[dict]]]:
    """Each task's mining runs (its shards, or the task's folder itself when it is one
    run) and their records, read once for the whole page."""
    runs = {}
    for task in sorted(p for p in MINED.iterdir() if p.is_dir()):
        dirs = [task] if (task / "problems.jsonl").exists() else sorted(task.iterdir())
        runs[task.name] = {run: [json.loads(line) for line in (run / "problems.jsonl").read_text().splitlines()]
                           for run in dirs if (run / "problems.jsonl").exists() and not recomputed(run)}
        if not runs[task.name]:
            del runs[task.name]
    return runs


def recomputed(run: Path) -> bool:
    """A copy of a mining run with its target features computed again (scripts/layer_probe.py):
    no mining of its own, so not a row of the mining table."""
    return "target_recomputed" in json.loads((run / "meta.json").read_text()).get("features", {})


def mining_table(mined: dict[str, dict[Path, list[dict]]]) -> str:
    lines = ["| run | problems | labelled mismatches | important | first answers cut by the budget | "
             "regenerations cut | mining hours (core-hours) | labels/hour | target passes/label |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task, per_run in mined.items():
        lines += [mining_row(str(run.relative_to(MINED)), records) for run, records in per_run.items()]
        if len(per_run) > 1:
            lines.append(mining_row(f"**{task}, all runs**", [r for rs in per_run.values() for r in rs]))
    return "\n".join(lines)


def stale_note(mined_problems: int, report: Path) -> str:
    """Say so when mining went on after this report was made."""
    trained = json.loads(report.read_text())["problems"] if report.exists() else mined_problems
    if trained == mined_problems:
        return ""
    return (f"This report comes from {trained} of the {mined_problems} mined problems (mining went on after "
            "it, or some problems' features could not be recomputed).\n\n")


def shipped_note(task: str) -> str:
    """What the judge shipped for `task` was trained on, read from the judge file itself."""
    from autojudge.judge.model import Judge
    path = ROOT / "src" / "autojudge" / "judges" / f"{task}-llamacpp.safetensors"
    if not path.exists():
        return ""
    meta = Judge.load(path).meta
    scored = meta["validation"]
    reused, borrowed = meta.get("reused"), meta.get("borrowed")
    also = (f", and {reused['mismatches']} reused labels of {reused['problems']} problems mined at a budget of "
            f"{reused['max_new_tokens']} (trained on, never scored)" if reused else "")
    if borrowed:
        also += (f", and {borrowed['mismatches']} labels of {borrowed['problems']} {borrowed['task']} problems "
                 "(borrowed: trained on, never scored)")
    layer = meta["pair"]["target_backend"].get("feature_layer")
    read = f" (the target's layer {layer})" if layer is not None else ""
    return (f"Shipped judge `judges/{path.name}`: {meta['features']} features{read}, trained on "
            f"{scored['problems']} problems ({scored['mismatches']} labels){also}, cross-validated "
            f"ROC-AUC {meta['validation_auc']:.3f} on its own labels.\n\n")


def section(title: str, path: Path, note: str = "") -> str:
    if not path.exists():
        return f"## {title}\n\n(not produced yet: {path.relative_to(ROOT)})\n"
    body = path.read_text().strip()
    return f"## {title}\n\n{note}{body}\n"


def kept_head(page: Path) -> str:
    """The page's hand-written findings, everything above MARKER, as they are; the title
    alone for a page that has none."""
    text = page.read_text() if page.exists() else ""
    return text[:text.index(MARKER)] if MARKER in text else TITLE + "\n\n"


def main() -> None:
    mined = mined_runs()
    parts = [kept_head(PAGE) + MARKER,
             "The tables below are generated by `python scripts/render_results_doc.py` from the files they cite, "
             "so they are current; the commands that produce each file are in [reproduce.md](reproduce.md).", "",
             "## Mining (Algorithm 1)", "", mining_table(mined), ""]
    for judge in sorted(JUDGES.glob("*-auc.md")):
        task = judge.stem.removesuffix("-auc")
        problems = sum(len(records) for records in mined.get(task, {}).values())
        curve = judge.with_suffix(".png")
        picture = f"![ROC-AUC against training problems](../data/judges/{curve.name})\n\n" if curve.exists() else ""
        parts.append(section(f"Judge: {task}", judge, "ROC-AUC per feature set, and against the number of "
                             "training problems:\n\n" + stale_note(problems, judge.with_suffix(".json"))
                             + shipped_note(task) + picture))
    for experiment in sorted(JUDGES.glob("old-labels-*.md")):
        parts.append(section(f"Do the old 256-token labels help? ({experiment.stem})", experiment))
    for comparison in sorted(JUDGES.glob("unseen-*.md")):
        parts.append(section(f"The shipped judge against the previous one, on labels neither saw ({comparison.stem})",
                             comparison,
                             "`python scripts/compare_judges_on_unseen.py` ([reproduce.md](reproduce.md)):\n\n"))
    bench = ROOT / "docs" / "bench"
    for run in sorted(bench.glob("mining-*/summary.md")):  # resumable runs of the current version
        parts.append(section(f"Mining speed and labels: regeneration methods side by side ({run.parent.name})", run))
    for run in sorted([*bench.glob("windows-*/summary.md"), *bench.glob("adaptive-*/summary.md")]):
        parts.append(section(f"Decoding speed by window and adaptive draft length ({run.parent.name})", run,
                             f"`autojudge bench`, single-stream on one core, every method against the target "
                             f"alone in the same run (methods `runtime/mode/wW/pP`):\n\n"
                             f"![accuracy vs accepted tokens per cycle](bench/{run.parent.name}/tradeoff.png)\n\n"))
    for speedup in sorted(bench.glob("mining-speedup-*.md")):
        parts.append(section(f"Mining speed against an earlier version, 4b19bf7 ({speedup.stem})", speedup,
                             "Measured today on one core while the other mined; the single-process plain, fast "
                             "and fast+rejoin rows of this version come from an earlier run.\n\n"))
    for run in sorted(bench.glob("noise-floor-*/summary.md")):
        parts.append(section(f"Label noise floor: null swaps ({run.parent.name})", run))
    if (bench / "pass-shape-logits.md").exists():
        parts.append(section("llama.cpp's logits by pass size, and uniform passes", bench / "pass-shape-logits.md",
                             "`python scripts/pass_shape_logits.py` ([reproduce.md](reproduce.md)):\n\n"))
    for report in sorted(bench.glob("uniform-labels-*.md")):
        parts.append(section(f"Labels of the Q4_0 pair with uniform passes against the default pair's ({report.stem})",
                             report, "`python scripts/compare_label_runs.py` ([reproduce.md](reproduce.md)):\n\n"))
    for report in sorted(bench.glob("confirm-*.md")):
        parts.append(section(f"Confirmed labels against single-regeneration ones ({report.stem})", report,
                             "`python scripts/confirmed_labels.py` ([reproduce.md](reproduce.md)):\n\n"))
    for run in sorted(bench.glob("checker-*/summary.md")):
        parts.append(section(f"The model answer checker against an exact one ({run.parent.name})", run))
    for cost in sorted(bench.glob("checker-cost-*.md")):
        parts.append(section(f"The model answer checker's cost ({cost.stem})", cost))
    for run in sorted(bench.glob("ray-*/summary.md")):
        job = "Evaluation" if run.parent.name.startswith("ray-eval") else "Mining"
        parts.append(section(f"{job} on Ray ({run.parent.name})", run))
    if (bench / "serve-load.md").exists():
        parts.append(section("Serving: load test against llama-cpp-python's server", bench / "serve-load.md"))
    for old in sorted(p for p in bench.glob("mining*.md") if "speedup" not in p.name):  # budget 256
        parts.append(section(f"Mining speed, first version: plain vs fast regeneration ({old.name})", old))
    for summary in sorted(EVALS.glob("*/summary.md")):
        name = summary.parent.name
        plot = f"![accuracy vs accepted tokens per cycle](eval/{name}/tradeoff.png)\n\n"
        parts.append(section(f"Evaluation: {name}", summary, plot))
        for comparison in sorted(summary.parent.glob("vs-*.md")):  # the run set against another
            parts.append(section(f"Evaluation: {name}, {comparison.stem.replace('-', ' ')}", comparison))
    PAGE.write_text("\n".join(parts) + "\n")
    print(PAGE)


if __name__ == "__main__":
    main()
