"""How far apart are llama.cpp's logits for the same text read in passes of different sizes?

For each GGUF file of the pair (both formats), reads a 150-token prefix, then the same 33
tokens four ways: one token per pass, three per pass, all in one pass, and one per pass
with uniform passes (each lone token read with the one before it again). Reports, over
the 33 positions, the median and largest |logit difference| from the one-pass reading
and how often the argmax agrees. One thread, as the evaluations run.

    taskset -c 1 python scripts/pass_shape_logits.py --out docs/bench/pass-shape-logits.md
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
from script_report import publish

from autojudge.models.convert import gguf_path
from autojudge.models.llamacpp import LlamaCppLM
from autojudge.models.registry import REGISTERED

MODELS = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_0",
          "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_0")
PREFIX, READ = 150, 33


def readings(name: str, prefix: list[int], tokens: list[int]) -> dict[str, np.ndarray]:
    """The logits after each of `tokens`, read each way."""
    path = gguf_path(REGISTERED[name])
    plain = LlamaCppLM(path, name, n_ctx=1024, n_threads=1)
    uniform = LlamaCppLM(path, name, n_ctx=1024, n_threads=1, uniform_passes=True)

    def read(model: LlamaCppLM, step: int) -> np.ndarray:
        model.reset()
        model.forward(prefix, n_logits=1)
        return np.concatenate([model.forward(tokens[i:i + step]).logits.numpy() for i in range(0, len(tokens), step)])

    return {"one pass": read(plain, len(tokens)), "one token per pass": read(plain, 1),
            "three tokens per pass": read(plain, 3), "one token per pass, uniform passes": read(uniform, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the report here too (markdown)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    prefix = [rng.randrange(1000, 20000) for _ in range(PREFIX)]
    tokens = [rng.randrange(1000, 20000) for _ in range(READ)]
    lines = [f"{PREFIX} random tokens, then {READ} more read each way; |logit difference| from reading the "
             f"{READ} in one pass (median and largest over the {READ} positions), one llama.cpp thread", "",
             "| model | read | median | largest | same argmax |", "|---|---|---|---|---|"]
    for name in MODELS:
        read = readings(name, prefix, tokens)
        reference = read.pop("one pass")
        for way, logits in read.items():
            gap = np.abs(logits - reference).max(axis=1)
            same = int((logits.argmax(1) == reference.argmax(1)).sum())
            lines.append(f"| {name} | {way} | {np.median(gap):.2g} | {gap.max():.2g} | {same}/{READ} |")
    return publish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
