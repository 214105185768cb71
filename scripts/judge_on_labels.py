"""ROC-AUC of a trained judge on mined labels it never saw: judges trained on different
labels (an old budget, another task) compared on the same held-out labels.

    python scripts/judge_on_labels.py --judge src/autojudge/judges/gsm8k-llamacpp.safetensors \
        --data data/mined/gsm8k/shard-*
"""

from __future__ import annotations

import argparse
import sys

import torch
from sklearn.metrics import roc_auc_score

from autojudge.judge.model import Judge
from autojudge.judge.train import load_mined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", required=True, help="judge file (.safetensors)")
    parser.add_argument("--data", required=True, nargs="+", help="mining run directories")
    args = parser.parse_args(argv)
    judge, data = Judge.load(args.judge), load_mined(args.data)
    parts = {"draft": torch.from_numpy(data.draft), "target": torch.from_numpy(data.target),
             "logits": None if data.logits is None else torch.from_numpy(data.logits)}
    scores = judge.prob_important(parts).numpy()
    auc = roc_auc_score(data.important, scores)
    print(f"{args.judge} ({judge.features} features) on {len(set(data.problem.tolist()))} problems, "
          f"{len(scores)} labels, {data.important.mean():.1%} important: ROC-AUC {auc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
