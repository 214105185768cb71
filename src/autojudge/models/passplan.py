"""Read tokens in the passes that cost least: pad a pass to a cheaper size, or split it.

llama.cpp's CPU matrix kernels work on tiles of rows, so the cost of a pass is far from
proportional to its tokens. On this project's 2-core machine, one thread, the default
target reads 16 tokens in 302 ms and 15 in 440 ms; the draft reads 2 tokens in one pass
in 73 ms and in two passes in 2 x 21 ms (docs/bench/pass-shapes). Speculative decoding
runs exactly such passes every cycle: a verification of window + 1 tokens, a draft
catching up on one or two.

Given a model's measured cost per pass size (`autojudge costs --out`), a `PassPlan` says
for each number of tokens the cheapest way to read them: as they are; padded with
throwaway tokens to a size that costs less (their cache entries are dropped at once); or
as several passes. Tokens attend only to those before them, so padding never changes
what the real tokens compute; another pass size may round differently, as any change of
window does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from autojudge.errors import ModelLoadError

# A plan other than the plain pass must save at least this share of its cost: timings are
# medians of a few passes, and a plan that wins by noise would churn for nothing.
MIN_SAVING = 0.05

Chunk = tuple[int, int]  # (real tokens, tokens in the pass: real plus padding)


@dataclass(frozen=True)
class PassPlan:
    chunks: dict[int, tuple[Chunk, ...]]  # for n tokens: the passes that read them, in order
    seconds: dict[int, float]  # the measured costs the plan was made from

    @classmethod
    def from_costs(cls, seconds: dict[int, float]) -> PassPlan:
        """The cheapest plan for every n up to the largest measured size.

        Dynamic programming: n tokens are read in one pass of a measured size m >= n
        (padded by m - n), or as a first part and the best plan for the rest.
        """
        if not seconds or any(s <= 0 for s in seconds.values()) or min(seconds) < 1:
            raise ValueError("pass costs need positive seconds for sizes of at least one token")
        sizes = sorted(seconds)
        best: dict[int, tuple[float, tuple[Chunk, ...]]] = {}
        for n in range(1, sizes[-1] + 1):
            options = [(seconds[m], ((n, m),)) for m in sizes if m >= n]
            options += [(best[k][0] + best[n - k][0], best[k][1] + best[n - k][1]) for k in range(1, n)]
            cost, chunks = min(options, key=lambda option: (option[0], len(option[1])))
            plain = seconds.get(n)
            if plain is not None and cost > plain * (1 - MIN_SAVING):
                cost, chunks = plain, ((n, n),)
            best[n] = (cost, chunks)
        return cls({n: chunks for n, (_, chunks) in best.items()}, dict(seconds))

    def __call__(self, n: int) -> tuple[Chunk, ...]:
        """The passes that read n tokens; beyond the measured sizes, one plain pass."""
        return self.chunks.get(n, ((n, n),))

    def changed(self) -> dict[int, tuple[Chunk, ...]]:
        """The sizes read otherwise than in one plain pass (for reports)."""
        return {n: chunks for n, chunks in self.chunks.items() if chunks != ((n, n),)}


def load_pass_plan(path: str | Path, model_name: str, described: dict) -> PassPlan:
    """The plan for `model_name` from an `autojudge costs --out` file, refusing costs that
    were measured on another model file or thread count than `described` (the model's
    `describe()`): a plan is only as good as the timings behind it."""
    try:
        data = json.loads(Path(path).read_text())
        pair = data["pair"]
        roles = [role for role in ("target", "draft") if pair.get(role) == model_name]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: not a pass-costs file of `autojudge costs --out` ({exc})") from None
    if not roles:
        raise ModelLoadError(f"{path} holds no pass costs of {model_name} "
                             f"(it has {pair.get('target')} and {pair.get('draft')})")
    role = roles[0]
    measured_on = pair.get(f"{role}_backend", {})
    for key in ("backend", "gguf", "threads"):
        if measured_on.get(key) != described.get(key):
            raise ModelLoadError(f"{path}: the costs of {model_name} were measured with {key} "
                                 f"{measured_on.get(key)!r}, this model runs with {described.get(key)!r}; "
                                 "measure them again with `autojudge costs --out`")
    try:
        return PassPlan.from_costs({int(n): float(s) for n, s in data[role].items()})
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: unreadable pass costs of {model_name} ({exc})") from None
