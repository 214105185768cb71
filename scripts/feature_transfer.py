"""Do the judge's features survive a change of GGUF format? Labels mined on the Q4_K_M
pair, features recomputed on both formats at the same positions, judges compared.

For each labelled mismatch of a mining run, the prefix the miner read (the prompt, the
response as it stood, the draft's token) is rebuilt from the stored alternative
response; both pairs then compute the features there (autojudge.mining.algorithm's
`features_at`). Reported: how close the recomputed Q4_K_M features are to the stored
ones (a check of the rebuild), how close the Q4_0 ones are to them, and ROC-AUC by
5-fold cross-validation by problem of judges trained and scored on either format:

    taskset -c 0 python scripts/feature_transfer.py --data data/mined/gsm8k/shard-1-of-2 \
        --limit 40 --out docs/bench/feature-transfer-gsm8k.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from autojudge.decoding.features import logit_features
from autojudge.judge.train import C_GRID, fit, problem_folds
from autojudge.mining.algorithm import features_at
from autojudge.models.loading import load_pair
from autojudge.models.registry import DRAFT, DRAFT_Q4_0, TARGET, TARGET_Q4_0
from autojudge.models.runtime import RuntimeOptions
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import read_records
from autojudge.tasks import get_task


class Rows:
    def __init__(self):
        self.features, self.important, self.problem = {"stored": [], "q4_k_m": [], "q4_0": []}, [], []


def features_of(pair, prefix: list[int], swapped: int) -> np.ndarray:
    draft_logits, draft_hidden = features_at(pair.draft, prefix)
    target_logits, target_hidden = features_at(pair.target, prefix)
    logits = logit_features(target_logits[None], draft_logits[None], torch.tensor([swapped]))[0]
    return torch.cat([draft_hidden, target_hidden, logits]).float().numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a mining run of the Q4_K_M pair")
    parser.add_argument("--limit", type=int, default=40, help="its first N problems with labels")
    parser.add_argument("--out", help="write the report here too (markdown)")
    args = parser.parse_args(argv)

    run = Path(args.data)
    records = [r for r in read_records(run / "problems.jsonl", repair=False) if r["mismatches"]][: args.limit]
    task = get_task("gsm8k")
    problems = {p.id: p for p in task.load("mine")}
    options = RuntimeOptions(backend="llamacpp")
    pairs = {"q4_k_m": load_pair(DRAFT.name, TARGET.name, options),
             "q4_0": load_pair(DRAFT_Q4_0.name, TARGET_Q4_0.name, options)}
    tokenizer = pairs["q4_k_m"].tokenizer
    rows, skipped = Rows(), 0
    for record in tqdm(records, unit="problem"):
        stored = load_file(str(run / "features" / f"{record['problem_id']}.safetensors"))
        stored_rows = torch.cat([stored["draft"], stored["target"], stored["logits"]], dim=1).float().numpy()
        prompt = chat_prompt_ids(tokenizer, task.messages(problems[record["problem_id"]]))
        for i, mismatch in enumerate(record["mismatches"]):
            t = mismatch["position"]
            ids = tokenizer(mismatch["alt_response"], add_special_tokens=False)["input_ids"]
            if len(ids) <= t or ids[t] != mismatch["draft_token"]:
                skipped += 1  # the text does not tokenize back to the miner's tokens here
                continue
            prefix = prompt + ids[: t + 1]
            for name, pair in pairs.items():
                rows.features[name].append(features_of(pair, prefix, mismatch["draft_token"]))
            rows.features["stored"].append(stored_rows[i])
            rows.important.append(mismatch["important"])
            rows.problem.append(record["problem_id"])
    report = analyse(rows, skipped, len(records))
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 0


def analyse(rows: Rows, skipped: int, n_problems: int) -> str:
    x = {name: np.stack(values) for name, values in rows.features.items()}
    y = np.array(rows.important)

    def cosine(a, b):
        return float(np.median(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))

    hidden = slice(0, x["stored"].shape[1] - 6)
    lines = [f"{n_problems} problems, {len(y)} labels ({y.mean():.1%} important); {skipped} labels skipped "
             "(their text does not tokenize back to the miner's tokens)", "",
             "| compared | median cosine of hidden features | median absolute difference of logit features |",
             "|---|---|---|"]
    for a, b in (("stored", "q4_k_m"), ("q4_k_m", "q4_0")):
        lines.append(f"| {a} vs {b} | {cosine(x[a][:, hidden], x[b][:, hidden]):.4f} | "
                     f"{float(np.median(np.abs(x[a][:, -6:] - x[b][:, -6:]))):.3f} |")

    class Data:  # what problem_folds reads
        important, problem = y, np.array(rows.problem)
    folds = problem_folds(Data, 5, 0)
    lines += ["", "| trained on | scored on | ROC-AUC (5-fold by problem, best C) |", "|---|---|---|"]
    for train_on, score_on in (("q4_k_m", "q4_k_m"), ("q4_0", "q4_0"), ("q4_k_m", "q4_0"), ("q4_0", "q4_k_m")):
        best = 0.0
        for c in C_GRID:
            scores = np.empty(len(y))
            for train, val in folds:
                scores[val] = fit(x[train_on][train], y[train], c).predict_proba(x[score_on][val])[:, 1]
            best = max(best, roc_auc_score(y, scores))
        lines.append(f"| {train_on} features | {score_on} features | {best:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
