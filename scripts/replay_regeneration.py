"""Replay a mining run's regenerations offline, to compare ways of proposing old text.

    python scripts/replay_regeneration.py data/mined/gsm8k/shard-* --task gsm8k \
        --costs docs/bench/costs-llamacpp.json

Mining regenerates the target's answer after each swapped token, verifying the old
answer's suffix as a draft (`LookupDrafter`). The regenerated text of every label is
in the run's records, so how a proposal rule would have fared needs no model: replay
the greedy verification against the known continuation, count the target passes and
price each pass with the measured per-pass costs (`autojudge costs --out`). Rules
replayed: no proposal (plain greedy), the shipped lookup with the window mining uses,
the same lookup capped at k tokens, and an oracle that proposes exactly the tokens
that will be accepted (the bound for this source of proposals).

Approximations: token ids come from re-encoding the recorded text; a label whose old
answer is not recorded (before the first unimportant swap of a problem whose first
answer was replaced) is skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autojudge.costmodel import load_costs
from autojudge.decoding.drafters import LookupDrafter
from autojudge.models.loading import load_tokenizer
from autojudge.models.registry import DEFAULT_TARGET
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks import get_task

REGEN_WINDOW = 32  # mine_problem's regen_window


def regenerations(runs: list[Path], task, split: str, tokenizer) -> list[tuple[list[int], list[int], list[int]]]:
    """(reference = prompt + old answer, prompt + answer up to the swap, continuation) per label."""
    problems = {p.id: p for p in task.load(split)}
    cases = []
    for run in runs:
        for line in (run / "problems.jsonl").read_text().splitlines():
            record = json.loads(line)
            labels = [m for m in record["mismatches"] if not m.get("settled")]
            prompt = chat_prompt_ids(tokenizer, task.messages(problems[record["problem_id"]]))
            replaced = any(not m["important"] for m in labels)
            answer = None if replaced else tokenizer.encode(record["response"])
            for m in labels:
                alternative = tokenizer.encode(m["alt_response"])
                t = m["position"]
                if answer is not None and alternative[:t] == answer[:t] and len(alternative) > t + 1:
                    cases.append((prompt + answer, prompt + answer[:t] + [m["draft_token"]], alternative[t + 1:]))
                if not m["important"]:  # Algorithm 1 goes on from the regenerated answer
                    answer = alternative
    return cases


def _matching(draft: list[int], goal: list[int], at: int) -> int:
    """How many of `draft` equal `goal` from position `at`: what verification accepts."""
    n = 0
    while n < len(draft) and draft[n] == goal[at + n]:
        n += 1
    return n


def replay(cases, propose, cost) -> tuple[int, float]:
    """Target passes and modelled seconds of greedy verification of `propose`'s drafts."""
    passes, seconds = 0, 0.0
    for reference, head, continuation in cases:
        drafter, goal, seq = propose(reference), head + continuation, list(head)
        while len(seq) < len(goal):
            draft = drafter(seq, min(REGEN_WINDOW, len(goal) - len(seq) - 1), goal)
            accepted = _matching(draft, goal, len(seq))
            passes, seconds = passes + 1, seconds + cost(1 + len(draft))
            seq = goal[:len(seq) + accepted + 1]  # the accepted drafts and the target's own token
            drafter.rollback(len(seq) - 1)
    return passes, seconds


class _Lookup:
    """The shipped lookup capped at `cap` tokens (0: plain greedy); `oracle`: its proposal
    cut to what will be accepted, looking as far as the window."""

    def __init__(self, reference, cap=REGEN_WINDOW, oracle=False):
        self.lookup, self.cap, self.oracle = LookupDrafter(reference), cap, oracle
        if oracle:
            self.lookup.length = REGEN_WINDOW  # and never adapted: see rollback

    def __call__(self, seq, k, goal):
        draft = self.lookup.propose(seq, min(k, self.cap), frozenset(), False).tokens if self.cap else []
        return draft[:_matching(draft, goal, len(seq))] if self.oracle else draft

    def rollback(self, length):
        if not self.oracle:
            self.lookup.rollback(length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="directories written by `autojudge mine`")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--split", default="mine", help="the split the runs mined (default: %(default)s)")
    parser.add_argument("--target", default=DEFAULT_TARGET, help="the mined pair's target (its tokenizer)")
    parser.add_argument("--costs", default="docs/bench/costs-llamacpp.json", help="`autojudge costs --out` JSON")
    args = parser.parse_args()

    tokenizer = load_tokenizer(args.target)
    cases = regenerations(args.runs, get_task(args.task), args.split, tokenizer)
    cost = load_costs(args.costs)[args.target]
    rules = {"plain greedy (no proposal)": lambda reference: _Lookup(reference, cap=0),
             "shipped lookup, window 32": _Lookup}
    rules.update({f"lookup, at most {cap}": (lambda reference, cap=cap: _Lookup(reference, cap))
                  for cap in (1, 2, 3, 4, 8, 16)})
    rules["oracle: exactly what is accepted"] = lambda reference: _Lookup(reference, oracle=True)
    tokens = sum(len(c) for _, _, c in cases)
    print(f"{len(cases)} regenerations, {tokens} tokens; pass costs from {args.costs}\n")
    print("| proposals | target passes | tokens/pass | modelled seconds | vs plain | vs shipped |")
    print("|---|---|---|---|---|---|")
    results = {name: replay(cases, rule, cost) for name, rule in rules.items()}
    plain, shipped = results["plain greedy (no proposal)"][1], results["shipped lookup, window 32"][1]
    for name, (passes, seconds) in results.items():
        print(f"| {name} | {passes} | {tokens / passes:.2f} | {seconds:.0f} | {plain / seconds:.2f}x | "
              f"{shipped / seconds:.2f}x |")


if __name__ == "__main__":
    main()
