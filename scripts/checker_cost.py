"""What the model answer checker adds to each mined label: checks per label and seconds per check.

    python scripts/checker_cost.py --data data/mined/squad --n 60

Mining asks the checker only when two answer lines differ (identical ones are the same
answer without a model); this script counts how often that happened in a run, asks the
checker again about `n` of those pairs on a fresh sequence of the target, one at a time
(single stream, so the figure is a cost, not a throughput), and checks that it gives
the recorded probabilities. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from autojudge.models.loading import load_pair
from autojudge.runfiles import read_records
from autojudge.tasks import get_task
from autojudge.tasks.equivalence import LLMEquivalence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    run = Path(args.data)
    meta = json.loads((run / "meta.json").read_text())
    task = get_task(meta["task"])
    problems = {p.id: p for p in task.load(meta["split"])}
    records = read_records(run / "problems.jsonl", repair=False)
    labels = [(r, m) for r in records for m in r["mismatches"]]
    asked = [(r, m) for r, m in labels if m.get("same_probability") is not None]
    pair = load_pair(None, meta["target"])
    checker = LLMEquivalence(pair.target, pair.tokenizer, meta["checker"]["threshold"])
    sample = random.Random(0).sample(asked, min(args.n, len(asked)))
    seconds, gaps = [], []
    for record, label in sample:
        # The response the label was compared with is the final one (same answer by construction).
        start = time.perf_counter()
        p = checker.p_same(problems[record["problem_id"]].prompt, label["alt_response"], record["response"])
        seconds.append(time.perf_counter() - start)
        gaps.append(abs(p - label["same_probability"]))
    per_check = sum(seconds) / len(seconds)
    per_label = per_check * len(asked) / len(labels)
    print(f"{meta['task']}, {run}: {len(labels)} labels, the checker asked for {len(asked)} "
          f"({len(asked) / len(labels):.0%}); {len(sample)} of those asked again, single stream")
    print()
    print("| seconds per check | checker seconds per label | median gap to the recorded p(same) |")
    print("|---|---|---|")
    # The gap: mining compared with the response as it stood then, this with the final one.
    print(f"| {per_check:.2f} | {per_label:.2f} | {sorted(gaps)[len(gaps) // 2]:.3f} |")


if __name__ == "__main__":
    main()
