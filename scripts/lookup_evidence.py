"""When does a lookup draft pay? Replayed on the target's own answers, no model run.

Exact decoding emits the target's own greedy tokens whatever is drafted, so how a
drafter would have fared is known from the answers alone: at each cycle the lookup
drafter (autojudge.decoding.drafters.LookupDrafter) proposes from the prompt and the
answer so far, the proposal is accepted as far as it equals the answer, and the cycle
costs one target pass over the verified tokens, priced by the measured pass shapes of
the Q4_0 target on one llama.cpp thread (docs/bench/pass-shapes/costs-q4_0.json). This
prices verification only (no per-cycle overhead), so it is an upper bound of what a rule
gains; scripts/bench_speed.py measures it. The rules are priced twice: by the pass-shape
bench, and by the passes as the controller timed them in decoding (dearer: DECODED); a
hindsight rule, which knows how far each proposal will be copied on, bounds what any
way of choosing the draft length could gain from these lookups.

The answers: every problem's target-alone record in docs/eval/gsm8k-q4_0-w32 and
docs/eval/humaneval-q4_0-w32. Writes docs/bench/lookup-evidence.md:

    taskset -c 1 .venv/bin/python scripts/lookup_evidence.py
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from autojudge.decoding import defaults
from autojudge.decoding.controller import LOOKUP_PRIORS, DraftLengthController, GivenCosts
from autojudge.decoding.drafters import LookupDrafter
from autojudge.evaluation.render import table
from autojudge.models.loading import load_tokenizer
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks import get_task

REPORTS = {"gsm8k": "docs/eval/gsm8k-q4_0-w32", "humaneval": "docs/eval/humaneval-q4_0-w32"}
COSTS = "docs/bench/pass-shapes/costs-q4_0.json"
# Target passes as the draft-length controller timed them while decoding GSM8K and
# HumanEval on one quiet core (MeasuredCosts, four problems), against a 1-token pass: dearer
# than the pass-shape bench's 2.13x, 4.02x and 5.17x (docs/speed.md, "Free drafts").
DECODED = {1: 1.0, 4: 2.65, 8: 5.15, 16: 7.6}
WINDOW = 15  # proposals of up to 15 tokens: passes of up to 16, the defaults' window


def pass_cost(shapes: dict[int, float]):
    """Seconds of a target pass over n tokens: measured, or interpolated between sizes."""
    sizes = sorted(shapes)

    def cost(n: int) -> float:
        if n in shapes:
            return shapes[n]
        below = max(s for s in sizes if s < n)
        above = min(s for s in sizes if s > n)
        return shapes[below] + (n - below) / (above - below) * (shapes[above] - shapes[below])
    return cost


def decoded_cost(bench):
    """The bench's pass costs rescaled to DECODED: by the ratio at its sizes, linear between them."""
    one = bench(1)
    scale = {n: DECODED[n] / (bench(n) / one) for n in DECODED}
    sizes = sorted(scale)

    def cost(n: int) -> float:
        if n >= sizes[-1]:
            return bench(n) * scale[sizes[-1]]
        below = max(s for s in sizes if s <= n)
        above = min(s for s in sizes if s >= n)
        factor = scale[below] if below == above else \
            scale[below] + (n - below) / (above - below) * (scale[above] - scale[below])
        return bench(n) * factor
    return cost


def replay_hindsight(prompt: list[int], answer: list[int], cost) -> tuple[int, float]:
    """(tokens, seconds) when each cycle verifies the length with the most tokens per
    second for its very proposal (known only in hindsight: a bound, not a rule)."""
    drafter = LookupDrafter(ngram=defaults.LOOKUP_NGRAM, min_ngram=1, adapt_length=False)
    i, seconds = 0, 0.0
    while i < len(answer):
        tokens = drafter.propose(prompt + answer[:i], min(WINDOW, len(answer) - i - 1), frozenset(),
                                 want_hidden=False).tokens if i + 1 < len(answer) else []
        copied = 0
        while copied < len(tokens) and tokens[copied] == answer[i + copied]:
            copied += 1
        k = max(range(copied + 1), key=lambda n: (n + 1) / cost(n + 1))
        seconds += cost(k + 1)
        i += k + 1
    return len(answer), seconds


def answers() -> list[tuple[str, list[int], list[int]]]:
    tokenizer = load_tokenizer(defaults.TARGET)
    out = []
    for name, report in REPORTS.items():
        task = get_task(name)
        problems = {str(p.id): p for p in task.load("eval")}
        seen = set()
        for line in open(Path(report) / "records.jsonl"):
            record = json.loads(line)
            if record["mode"] != "target" or record["problem"] in seen:
                continue
            seen.add(record["problem"])
            prompt = chat_prompt_ids(tokenizer, task.messages(problems[str(record["problem"])]))
            out.append((name, prompt, record["token_ids"]))
    return out


def replay(prompt: list[int], answer: list[int], choose, cost) -> tuple[int, float]:
    """(tokens, seconds) of exact decoding of `answer` with `choose(proposal) -> k`."""
    drafter = LookupDrafter(ngram=defaults.LOOKUP_NGRAM, min_ngram=1, adapt_length=False)
    drafter.start(prompt)
    i, seconds = 0, 0.0
    while i < len(answer):
        seq = prompt + answer[:i]
        proposal = drafter.propose(seq, min(WINDOW, len(answer) - i - 1), frozenset(), want_hidden=False) \
            if i + 1 < len(answer) else None
        k = min(choose(proposal), len(proposal.tokens)) if proposal is not None and proposal.tokens else 0
        accepted = 0
        while accepted < k and proposal.tokens[accepted] == answer[i + accepted]:
            accepted += 1
        if hasattr(choose, "observe") and proposal is not None and proposal.tokens:
            choose.observe(k, accepted)
        seconds += cost(k + 1)
        i += accepted + 1
    return len(answer), seconds


class Controlled:
    """The draft-length controller as the engine runs it for a lookup, at given costs."""

    def __init__(self, cost, prior: float, min_ngram: int, priors: dict[int, float] | None = None):
        self.controller = DraftLengthController(WINDOW, GivenCosts(target=cost), prior=prior, free=True,
                                                priors=priors)
        self.min_ngram = min_ngram

    def __call__(self, proposal) -> int:
        self._chosen = proposal.match >= self.min_ngram
        return self.controller.choose(context=proposal.match, limit=len(proposal.tokens)) if self._chosen else 0

    def observe(self, k: int, accepted: int) -> None:
        if self._chosen:
            self.controller.observe(k, accepted, 0.0, 0.0)


def main() -> int:
    shapes = json.loads(Path(COSTS).read_text())["target"]
    cost = pass_cost({int(n): s for n, s in shapes.items()})
    data = answers()
    tasks = list(REPORTS)

    # How far a proposal is copied on, by the length of the matched tail.
    evidence = defaultdict(lambda: [0, 0, 0])
    for name, prompt, answer in tqdm(data, desc="evidence"):
        drafter = LookupDrafter(ngram=defaults.LOOKUP_NGRAM, min_ngram=1, adapt_length=False)
        for i in range(len(answer) - 1):
            proposal = drafter.propose(prompt + answer[:i], min(WINDOW, len(answer) - i - 1), frozenset(), False)
            if not proposal.tokens:
                continue
            accepted = 0
            while accepted < len(proposal.tokens) and proposal.tokens[accepted] == answer[i + accepted]:
                accepted += 1
            row = evidence[name, proposal.match]
            row[0], row[1], row[2] = row[0] + 1, row[1] + (accepted > 0), row[2] + accepted
    evidence_rows = [[name, str(match), str(n), f"{first / n:.2f}", f"{total / n:.2f}"]
                     for (name, match), (n, first, total) in sorted(evidence.items())]

    def speed(make, cost=cost, run=None, kept=False) -> dict[str, float]:
        """`kept`: one chooser per task for all its answers, as decode keeps a controller."""
        tokens, seconds = defaultdict(int), defaultdict(float)
        choosers = {}
        for name, prompt, answer in data:
            chooser = (choosers.setdefault(name, make()) if kept else make()) if make else None
            t, s = run(prompt, answer, cost) if run else replay(prompt, answer, chooser, cost)
            tokens[name] += t
            seconds[name] += s
        return {name: tokens[name] * cost(1) / seconds[name] for name in tasks}  # vs one token a pass

    rules = {}
    for min_ngram in (1, 2, 3, 4, 6):
        for length in (3, 7, 15):
            rules[f"fixed: {length} tokens on a match of >= {min_ngram}"] = \
                lambda m=min_ngram, n=length: (lambda p: n if p.match >= m else 0)
    for prior in (0.3, 0.5, 0.7, 0.9):
        for min_ngram in (1, 3):
            rules[f"controller, prior {prior}, match >= {min_ngram}"] = \
                lambda p=prior, m=min_ngram: Controlled(cost, p, m)
    speed_rows = []
    for label, make in tqdm(rules.items(), desc="rules"):
        ratios = speed(make)
        speed_rows.append([label, *(f"{ratios[t]:.3f}x" for t in tasks)])

    decoded = decoded_cost(cost)
    priced_rows = []
    for label, priced in (("the pass-shape bench", cost), ("as timed in decoding", decoded)):
        for rule, make, run, kept in (
                ("controller, prior 0.7, match >= 3", lambda c=priced: Controlled(c, 0.7, 3), None, False),
                ("controller, priors by matched length (LOOKUP_PRIORS), match >= 3",
                 lambda c=priced: Controlled(c, 0.7, 3, LOOKUP_PRIORS), None, False),
                ("the same, one controller kept across a task's answers (as decode keeps it)",
                 lambda c=priced: Controlled(c, 0.7, 3, LOOKUP_PRIORS), None, True),
                ("fixed: 3 tokens on a match of >= 4", lambda: (lambda p: 3 if p.match >= 4 else 0), None, False),
                ("hindsight: the best length for each proposal (a bound)", None, replay_hindsight, False)):
            ratios = speed(make, priced, run, kept)
            priced_rows.append([label, rule, *(f"{ratios[t]:.3f}x" for t in tasks)])

    text = "\n".join([
        "# When a lookup draft pays",
        "",
        "Replayed on the target's own answers (every target-alone record of "
        f"{' and '.join(REPORTS.values())}: {len(data)} answers), each cycle priced by the Q4_0 "
        f"target's measured passes on one llama.cpp thread ({COSTS}). Command: "
        "`taskset -c 1 .venv/bin/python scripts/lookup_evidence.py`. Verification cost only, no "
        "per-cycle overhead: an upper bound; docs/bench/speed-defaults measures the defaults.",
        "",
        "## How far a proposal is copied on, by the length of the matched tail",
        "",
        table(["task", "tail matched", "proposals", "first token accepted", "tokens accepted (of 15)"],
                       evidence_rows),
        "",
        "## Speed against the target alone, by rule",
        "",
        table(["rule", *tasks], speed_rows),
        "",
        "## Priced by the passes timed in decoding",
        "",
        f"Passes as the controller timed them while decoding (against a 1-token pass: {DECODED}) cost "
        "more than the pass-shape bench says. At those prices the controller comes to about the target "
        "alone on GSM8K, and the hindsight bound says how much a better guess of how far a proposal will "
        "be copied on could still gain. Every controller row but the kept one starts afresh on each "
        "answer, as a lone `generate` does; a server, an eval or a bench keeps one per target "
        "(autojudge.decoding.modes.decode).",
        "",
        table(["passes priced by", "rule", *tasks], priced_rows),
        "",
    ])
    Path("docs/bench/lookup-evidence.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
