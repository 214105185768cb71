"""What reading a middle layer costs a llama.cpp pass: one-token and window-sized passes
of the target, timed side by side with and without the graph callback that copies the
layer's output (interleaved rounds, one thread, the same process).

    taskset -c 1 python scripts/feature_layer_cost.py --layer 18 --out docs/bench/feature-layer-cost.md
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from script_report import publish

from autojudge.models.loading import load_model
from autojudge.models.runtime import RuntimeOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="qwen2.5-coder-1.5b-instruct-q4_0")
    parser.add_argument("--layer", type=int, default=18)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", help="write the report here too (markdown)")
    args = parser.parse_args(argv)
    runtime = RuntimeOptions(backend="llamacpp")
    models = {"final norm": load_model(args.target, runtime), f"layer {args.layer}": load_model(args.target, runtime)}
    models[f"layer {args.layer}"].read_features_from(args.layer)
    prefix = list(range(1000, 1150))
    times = {name: {1: [], 33: []} for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            model.reset()
            model.forward(prefix, n_logits=1)
            for size in (1, 33):
                for i in range(10 if size == 1 else 2):
                    start = time.perf_counter()
                    model.forward(list(range(2000 + i * size, 2000 + (i + 1) * size)), n_logits=size)
                    times[name][size].append(time.perf_counter() - start)
    base = {size: np.median(times["final norm"][size]) for size in (1, 33)}
    lines = [f"{args.target}, llama.cpp, one thread, {args.rounds} interleaved rounds (median ms per pass)", "",
             "| features from | 1-token pass | 33-token pass |", "|---|---|---|"]
    for name in models:
        cells = [f"{1000 * np.median(times[name][s]):.1f} ({np.median(times[name][s]) / base[s]:.2f}x)"
                 for s in (1, 33)]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return publish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
