"""What speculative decoding can gain on a machine, from the cost of single forward passes.

A cycle with window W costs the draft's W single-token passes (plus one catch-up
token) and one target pass over W + 1 tokens; it emits the accepted tokens plus one.
Given the measured per-pass costs, the tokens per second of any acceptance profile
follow, and so does the ceiling: the speed-up when every draft token is accepted.
Measured runs are checked against these predictions in the benchmark report.

Every pass size a window can produce is measured, not interpolated: llama.cpp's CPU
kernels work on tiles of rows, so a pass of 16 tokens can cost less than one of 15
(the default target on one core: 302 ms against 440 ms, docs/bench/pass-shapes), and a window whose
verification pass falls just past a tile costs far more than its neighbours suggest.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from autojudge.evaluation.methods import parse_method
from autojudge.models.backend import CausalLM

# Every size up to a window of 16 (17 tokens), then the common wide windows and their + 1.
SIZES = (*range(1, 18), 24, 25, 32, 33, 64, 65)


@dataclass
class PassCosts:
    """Median seconds of one forward pass of n tokens, at a fixed KV-cache length."""

    name: str
    seconds: dict[int, float] = field(default_factory=dict)

    def __call__(self, n: int) -> float:
        if n in self.seconds:
            return self.seconds[n]
        # Linear interpolation between measured sizes (cost is close to affine in n).
        sizes = sorted(self.seconds)
        lower = max((s for s in sizes if s <= n), default=sizes[0])
        upper = min((s for s in sizes if s >= n), default=sizes[-1])
        if lower == upper:
            return self.seconds[lower] * n / lower
        frac = (n - lower) / (upper - lower)
        return self.seconds[lower] + frac * (self.seconds[upper] - self.seconds[lower])


def measure_pass_costs(model: CausalLM, context: int = 300, sizes=SIZES, repeats: int = 3) -> PassCosts:
    """Time forwards of n tokens (all logits, as in verification) after `context` tokens."""
    model.reset()
    vocab = model.vocab_size  # any tokens will do; keep them in range for small vocabularies
    model.forward([(100 + i % 1000) % vocab for i in range(context)], n_logits=1)
    costs = PassCosts(model.name)
    for n in sizes:
        samples = []
        for attempt in range(repeats + 1):  # the first, untimed, warms up kernels for this shape
            start = time.perf_counter()
            # Reading a logit waits for the pass to finish where it runs asynchronously (GPU).
            model.forward([(200 + i) % vocab for i in range(n)]).logits[-1, 0].item()
            if attempt:
                samples.append(time.perf_counter() - start)
            model.truncate(context)
        costs.seconds[n] = statistics.median(samples)
    return costs


def cycle_seconds(draft: PassCosts | None, target: PassCosts, window: int) -> float:
    if draft is None or window == 0:
        return target(1)
    # The draft catches up on ~2 tokens, then proposes one token per pass.
    return draft(2) + (window - 1) * draft(1) + target(window + 1)


def predicted_tokens_per_second(draft: PassCosts | None, target: PassCosts, window: int,
                                tokens_per_cycle: float) -> float:
    return tokens_per_cycle / cycle_seconds(draft, target, window)


def expected_tokens_per_cycle(accept_rate: float, window: int) -> float:
    """Tokens per cycle when each draft token is accepted independently with this rate."""
    if accept_rate >= 1.0:
        return window + 1.0
    return (1 - accept_rate ** (window + 1)) / (1 - accept_rate)


def ceiling(draft: PassCosts, target: PassCosts, windows=(1, 2, 3, 4, 6, 7, 8, 12, 15, 16, 24, 32)) -> list[dict]:
    """Speed-up over target-only for perfect acceptance, and at typical acceptance rates."""
    rows = []
    for window in windows:
        row = {"window": window, "cycle_seconds": cycle_seconds(draft, target, window)}
        for rate in (0.8, 0.9, 0.95, 1.0):
            tps = predicted_tokens_per_second(draft, target, window, expected_tokens_per_cycle(rate, window))
            row[f"speedup_at_{rate:g}"] = tps * target(1)
        rows.append(row)
    return rows


def costs_report(draft: PassCosts, target: PassCosts) -> str:
    """Markdown: per-pass costs of both models by pass size, then the predicted speed-up ceiling."""
    sizes = sorted(set(draft.seconds) | set(target.seconds))
    lines = [f"| tokens in the pass | {draft.name} | {target.name} | target per token / a 1-token pass |",
             "|---|---|---|---|"]
    for n in sizes:
        lines.append(f"| {n} | {draft(n) * 1e3:.0f} ms | {target(n) * 1e3:.0f} ms | "
                     f"{target(n) / n / target(1):.2f} |")
    lines += ["", f"draft token / target token: {draft(1) / target(1):.2f}; "
              f"target pass of 16 tokens / of 1: {target(16) / target(1):.1f}", "",
              "| window | cycle | speed-up at 80% acceptance | 90% | 95% | 100% (ceiling) |",
              "|---|---|---|---|---|---|"]
    for row in ceiling(draft, target):
        lines.append(f"| {row['window']} | {row['cycle_seconds'] * 1e3:.0f} ms | "
                     f"{row['speedup_at_0.8']:.2f}x | {row['speedup_at_0.9']:.2f}x | "
                     f"{row['speedup_at_0.95']:.2f}x | {row['speedup_at_1']:.2f}x |")
    return "\n".join(lines)


def load_costs(path) -> dict[str, PassCosts]:
    """Read `autojudge costs --out` JSON: {model name: PassCosts} for one backend."""
    import json
    data = json.loads(open(path).read())
    return {data["pair"][role]: PassCosts(data["pair"][role], {int(n): s for n, s in data[role].items()})
            for role in ("draft", "target")}


def predicted_decode_seconds(record: dict, draft: PassCosts | None, target: PassCosts, window: int) -> float:
    """Seconds a run's passes should take (prefill excluded), from its pass counts alone."""
    verifications = record["target_forwards"] - 1  # minus the prefill
    seconds = verifications * target(window + 1 if window else 1)
    if draft is not None:
        seconds += record["draft_forwards"] * draft(1)
    return seconds


def check_against_runs(records: list[dict], costs: dict[str, dict[str, PassCosts]], draft: str, target: str) -> str:
    """Markdown: measured vs predicted decode speed per benchmark method.

    `costs` maps a backend to `load_costs` of its costs file; a method is charged its
    target's and its draft's passes on their own backends (torch+llamacpp: torch target,
    llama.cpp draft). Methods of the run's own pair (no runtime named, no window) and
    other libraries' loops are left out. Verification passes are charged at the full window
    (the last few cycles are shorter), so predictions lean slightly slow.
    """
    by_method: dict[str, list[dict]] = {}
    for record in records:
        by_method.setdefault(record["mode"], []).append(record)
    lines = ["| method | measured tok/s (decode only) | predicted tok/s | predicted / measured |",
             "|---|---|---|---|"]
    for name, runs in by_method.items():
        method = parse_method(name)
        if (method.adapter is not None or method.backends is None or not set(method.backends) <= set(costs)
                or (method.uses_draft and method.window is None)):  # the run's window: not in the record
            continue
        target_backend, draft_backend = method.backends
        window = method.window or 0
        tokens = sum(r["new_tokens"] for r in runs)
        measured = sum(r["seconds"] - r["prefill_seconds"] for r in runs)
        predicted = sum(predicted_decode_seconds(r, costs[draft_backend][draft] if window else None,
                                                 costs[target_backend][target], window) for r in runs)
        lines.append(f"| {name} | {tokens / measured:.2f} | {tokens / predicted:.2f} | "
                     f"{measured / predicted:.2f} |")
    return "\n".join(lines)
