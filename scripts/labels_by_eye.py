"""Draw labels to read by eye under a label definition: half important, half not (a fixed
seed), each with its token pair, a few tokens of context, the target's and the swapped
answer, the gold answer and, for important ones, where the two responses part.

    python scripts/labels_by_eye.py gsm8k correctness-lost 20 data/mined/gsm8k/shard-1-of-2 \
        data/mined/gsm8k/shard-2-of-2

The verdicts in docs/judge/labels-by-eye-gsm8k.md were written from this output.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from autojudge.judge.labels import define_labels, mined_labels, target_right
from autojudge.judge.train import load_mined
from autojudge.models.loading import load_tokenizer
from autojudge.tasks import get_task


def main(task_name: str, definition: str, n: int, runs: list[str]) -> None:
    data, task = load_mined(runs), get_task(task_name)
    tokenizer = load_tokenizer(data.meta["target"])
    labelled, known = define_labels(data, runs, definition, task)
    rows = [row for row, k in zip(mined_labels(runs), known) if k]
    problems = {p.id: p for p in task.load(data.meta["split"])}
    right = target_right(rows, task, problems)
    rng = np.random.default_rng(7)
    important, other = np.flatnonzero(labelled.important), np.flatnonzero(~labelled.important)
    for i in [*rng.choice(important, n // 2, replace=False), *rng.choice(other, n - n // 2, replace=False)]:
        record, m = rows[i]
        ids = tokenizer(record["response"], add_special_tokens=False)["input_ids"]
        print(json.dumps({"problem": record["problem_id"], "important": bool(labelled.important[i]),
                          "target": tokenizer.decode([m["target_token"]]),
                          "draft": tokenizer.decode([m["draft_token"]]),
                          "context": tokenizer.decode(ids[max(0, m["position"] - 12):m["position"]])[-80:],
                          "answer": record["answer"], "alt": m["alt_answer"],
                          "gold": problems[record["problem_id"]].reference,
                          "target_right": right[record["problem_id"]]}))
        if labelled.important[i]:  # where the two responses part
            start = len(tokenizer.decode(ids[:m["position"]]))
            print("   kept:   ", record["response"][start:start + 200].replace("\n", " "))
            print("   swapped:", m["alt_response"][start:start + 200].replace("\n", " "))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
