"""How far to trust a model as an answer checker: its verdicts on mined pairs whose
equivalence a program already knows.

Every label of a mining run on a task with an exact checker (GSM8K's numbers, MBPP's
unit tests) is a pair of responses, the target's and the regenerated one, whose
"same answer?" is known. The model checker (autojudge.tasks.equivalence) is asked
about a sample of them; the report gives its precision and recall of "different" (the
class a judge must not miss: an important token), at its threshold and across
thresholds, and its ROC-AUC. Resumable: one line per pair in records.jsonl.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from autojudge.errors import AutojudgeError
from autojudge.runfiles import append_record, check_meta, read_records, run_lock
from autojudge.tasks.base import Task
from autojudge.tasks.equivalence import LLMEquivalence

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def known_pairs(task: Task, runs: list[str]) -> list[dict]:
    """Every regenerated label of the mining `runs`: the problem, both responses and
    whether their answers differ by the task's own checker."""
    problems, pairs = {}, []
    for run in runs:
        if not (Path(run) / "meta.json").is_file():
            raise AutojudgeError(f"{run}: not a mining run ({Path(run) / 'meta.json'} is missing)")
        meta = json.loads((Path(run) / "meta.json").read_text())
        if meta["task"] != task.name:
            raise AutojudgeError(f"{run} was mined on {meta['task']}, not {task.name}")
        problems.update({p.id: p for p in task.load(meta["split"])})
        for record in read_records(Path(run) / "problems.jsonl", repair=False):
            for label in record["mismatches"]:
                if label.get("settled"):  # nothing was regenerated: no second response
                    continue
                pairs.append({"problem": record["problem_id"], "position": label["position"],
                              "a": record["response"], "b": label["alt_response"],
                              "different": not task.equivalent(label["alt_answer"], record["answer"])})
    for pair in pairs:
        pair["question"] = problems[pair["problem"]].prompt
    return pairs


def calibrate(checker: LLMEquivalence, task: Task, runs: list[str], n: int, out: str | Path,
              seed: int = 0) -> list[dict]:
    """The checker's p(same) on a seeded sample of `n` known pairs (see module doc)."""
    out = Path(out)
    pairs = known_pairs(task, runs)
    if not pairs:
        raise AutojudgeError(f"no regenerated labels in {', '.join(runs)}")
    sample = random.Random(seed).sample(pairs, min(n, len(pairs)))
    with run_lock(out, "checker calibration"):
        check_meta(out, {"task": task.name, "runs": [Path(r).name for r in runs], "n": n, "seed": seed,
                         "checker": checker.describe()}, "checker calibration")
        path = out / "records.jsonl"
        records = read_records(path)
        done = {(r["problem"], r["position"]) for r in records}
        for pair in tqdm([p for p in sample if (p["problem"], p["position"]) not in done],
                         desc="checker calibration", unit="pair", initial=len(done), total=len(sample)):
            start = time.perf_counter()
            p_same = checker.p_same(pair["question"], pair["a"], pair["b"])
            record = {"problem": pair["problem"], "position": pair["position"], "different": pair["different"],
                      "p_same": p_same, "seconds": time.perf_counter() - start}
            append_record(path, record)
            records.append(record)
    return records


def calibration_summary(records: list[dict], threshold: float) -> dict:
    """Precision and recall of "different" at each threshold (different: p_same < t)."""
    truth = [r["different"] for r in records]
    rows = []
    for t in sorted({*THRESHOLDS, threshold}):
        said = [r["p_same"] < t for r in records]
        hits = sum(s and d for s, d in zip(said, truth))
        rows.append({"threshold": t, "said_different": sum(said),
                     "precision": hits / sum(said) if sum(said) else None,
                     "recall": hits / sum(truth) if sum(truth) else None,
                     "agreement": sum(s == d for s, d in zip(said, truth)) / len(records)})
    auc = roc_auc_score(truth, [-r["p_same"] for r in records]) if 0 < sum(truth) < len(truth) else None
    return {"pairs": len(records), "different": sum(truth), "auc": auc, "threshold": threshold, "rows": rows,
            "seconds_per_check": sum(r["seconds"] for r in records) / len(records)}


def calibration_markdown(summary: dict, header: str) -> str:
    def share(x):
        return "-" if x is None else f"{x:.1%}"

    lines = [header, "",
             f"{summary['pairs']} pairs, {summary['different']} with different answers by the exact checker; "
             f"ROC-AUC of 1 - p(same) for \"different\": "
             f"{'-' if summary['auc'] is None else format(summary['auc'], '.3f')}; "
             f"{summary['seconds_per_check']:.2f} s per check.", "",
             "| threshold | said different | precision of different | recall of different | agreement |",
             "|---|---|---|---|---|"]
    for row in summary["rows"]:
        mark = " (default)" if row["threshold"] == summary["threshold"] else ""
        lines.append(f"| {row['threshold']:g}{mark} | {row['said_different']} | {share(row['precision'])} | "
                     f"{share(row['recall'])} | {share(row['agreement'])} |")
    return "\n".join(lines)
