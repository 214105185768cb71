"""Where draft tokens come from: a small model, or a lookup in text we already have.

A drafter proposes up to k tokens to follow a sequence; the target verifies them, so
any drafter is exact under the `Exact` policy, and only its cost and hit rate matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from autojudge.models.backend import MAX_WINDOW, CausalLM, keep_shared_prefix


@dataclass
class Proposal:
    tokens: list[int]
    hidden: torch.Tensor | None  # [len(tokens), hidden]: state after reading each token
    forwards: int  # model passes spent (0 for a lookup)
    logits: torch.Tensor | None = None  # [len(tokens), vocab]: the logits each token was drafted from
    match: int = 0  # a lookup's evidence: how many tokens before the proposal matched (0: none, or a model)


class Drafter(Protocol):
    name: str
    provides_hidden: bool  # and logits: both come from a model
    free: bool  # proposing costs no model pass: propose the window, then choose how much to verify

    def start(self, seq: Sequence[int]) -> None:
        """A new generation begins from `seq`; keep whatever cached state still applies."""

    def propose(self, seq: list[int], k: int, stop_ids: frozenset[int], want_hidden: bool,
                want_logits: bool = False, sampling=None) -> Proposal:
        """Up to k tokens to follow `seq` (fewer when a stop token is drafted); drawn
        with `sampling` when given, else greedy."""

    def rollback(self, length: int) -> None:
        """Only the first `length` tokens of the last sequence are still valid."""


class ModelDrafter:
    """Greedy drafting with a small model and its KV cache.

    `p_min` > 0 makes the draft length adaptive: drafting stops before a token the draft
    itself gives a probability below p_min (as llama.cpp's draft p-min does), since a
    token it doubts is likely rejected, and on a CPU a wasted draft token costs about
    half a target token. A proposal may then be empty: the target decodes one token.
    """

    provides_hidden = True
    free = False

    def __init__(self, model: CausalLM, p_min: float = 0.0):
        self.model = model
        self.name = model.name
        self.p_min = p_min

    def start(self, seq: Sequence[int]) -> None:
        # Keep the shared prefix, but at least the last token must be read again: its
        # logits propose the first draft token.
        keep_shared_prefix(self.model, seq, len(seq) - 1)

    def propose(self, seq: list[int], k: int, stop_ids: frozenset[int], want_hidden: bool,
                want_logits: bool = False, sampling=None) -> Proposal:
        """With `sampling` (autojudge.decoding.sampling), tokens are drawn, not argmax."""
        tokens: list[int] = []
        hidden: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        step = self.model.forward(seq[self.model.cached_length:], n_logits=1)
        forwards = 1
        while True:
            row = step.logits[-1]
            probs = None if sampling is None else sampling.probs(row[None])[0]  # what the token is drawn from
            token = int(row.argmax()) if probs is None else sampling.draw(probs)
            if self.p_min > 0:
                confidence = torch.softmax(row.float(), dim=-1) if probs is None else probs
                if float(confidence[token]) < self.p_min:
                    break
            tokens.append(token)
            logits.append(row)
            if len(tokens) == k or token in stop_ids:
                break
            step = self.model.forward([token], n_logits=1)
            forwards += 1
            hidden.append(step.hidden[-1])
        # Stopped by p_min, the last proposed token was read already; otherwise reading it
        # for its state takes one more pass.
        if want_hidden and len(hidden) < len(tokens):
            step = self.model.forward([tokens[-1]], n_logits=1)
            forwards += 1
            hidden.append(step.hidden[-1])
        return Proposal(tokens, (torch.stack(hidden) if tokens else None) if want_hidden else None, forwards,
                        (torch.stack(logits) if tokens else None) if want_logits else None)

    def rollback(self, length: int) -> None:
        if self.model.cached_length > length:
            self.model.truncate(length)


class LookupDrafter:
    """Propose what followed an earlier occurrence of the sequence's last few tokens.

    Searched first: `reference`, a previous sequence with the same positions (mining
    regenerates after a one-token swap, and the new text usually re-converges with
    the old, so the old suffix is an excellent draft); among several matches, the one
    nearest the current position wins. Then the sequence itself, as in prompt-lookup
    decoding: the longest tail of `ngram` tokens down to `min_ngram` that occurred
    before, at its latest occurrence. With no match it proposes nothing, and the target
    decodes one token. Without a reference it is a decoding drafter of its own
    (`--drafter lookup`): answers that copy from their prompt (code, quotes, extraction)
    get many tokens per target pass for no model pass at all.

    `adapt_length`: the proposal length doubles after a fully accepted proposal and
    halves after a rejection. A wasted draft token is cheap in a torch pass but costs
    about a quarter of a 1-token pass on llama.cpp, so once mining's new text has left
    the old one, long guesses would make regeneration slower than plain decoding. Under
    the draft-length controller it is off: the lookup proposes the whole window and the
    controller decides how much of it to verify, from the proposal's `match` (a tail of
    8 matched tokens is far better evidence than one of 3: docs/bench/lookup-evidence).
    """

    provides_hidden = False
    free = True
    name = "lookup"

    def __init__(self, reference: Sequence[int] = (), ngram: int = 3, start_length: int = 4,
                 min_ngram: int = 1, adapt_length: bool = True):
        if not 1 <= min_ngram <= ngram:
            raise ValueError(f"n-gram sizes {min_ngram} to {ngram}: need 1 <= min_ngram <= ngram")
        self.reference = list(reference)
        self.ngram, self.min_ngram = ngram, min_ngram
        self.length = start_length if adapt_length else MAX_WINDOW
        self.adapt_length = adapt_length
        self._proposed_at = self._proposed = 0
        self._index = NgramIndex(ngram)

    def start(self, seq: Sequence[int]) -> None:
        self._index = NgramIndex(self.ngram)

    def propose(self, seq: list[int], k: int, stop_ids: frozenset[int], want_hidden: bool,
                want_logits: bool = False, sampling=None) -> Proposal:
        if want_hidden or want_logits or sampling is not None:
            raise ValueError("a lookup drafter has no hidden states, logits or sampling; use a model drafter")
        tokens, match = self._lookup(seq, min(k, self.length))
        for i, token in enumerate(tokens):
            if token in stop_ids:
                tokens = tokens[: i + 1]
                break
        self._proposed_at, self._proposed = len(seq), len(tokens)
        return Proposal(tokens, None, 0, match=match if tokens else 0)

    def _lookup(self, seq: list[int], k: int) -> tuple[list[int], int]:
        here = len(seq)
        self._index.extend(seq, here - 1)  # occurrences ending before the tail itself
        for n in range(min(self.ngram, len(seq) - 1), self.min_ngram - 1, -1):
            tail = seq[-n:]
            end = nearest_match_end(self.reference, tail, len(self.reference), here) if self.reference else None
            if end is not None and end < len(self.reference):
                return list(self.reference[end:end + k]), n
            end = self._index.latest_end(tail)
            if end is not None:
                return list(seq[end:end + k]), n
        return [], 0

    def rollback(self, length: int) -> None:
        if self._proposed:
            if self.adapt_length:
                accepted = length - self._proposed_at
                self.length = self.length * 2 if accepted >= self._proposed else max(1, self.length // 2)
                self.length = min(self.length, MAX_WINDOW)
            # Judged once: a cycle that drafts nothing (a controller's zero) must not judge it again.
            self._proposed = 0


class NgramIndex:
    """The latest end of every n-gram (n = 1..ngram) of a growing sequence, so that a
    lookup costs a dictionary read, not a scan of everything generated so far (which,
    at 8 n-gram sizes over a 1,000-token sequence, would cost milliseconds a cycle)."""

    def __init__(self, ngram: int):
        self.ngram = ngram
        self.ends: dict[tuple[int, ...], int] = {}
        self.indexed = 0  # seq[:indexed] is indexed
        self.last: int | None = None  # seq[indexed - 1], to tell a continuation from another sequence

    def extend(self, seq: Sequence[int], upto: int) -> None:
        """Index the n-grams of seq ending at positions up to `upto` (seq[:upto] read).
        A sequence that is not a continuation of the last one (shorter, or another token
        where the last indexed one stood) is indexed afresh; a drafter's start() resets it
        for each generation anyway, so the check stays O(1) on the decoding loop."""
        if self.indexed > upto or (self.indexed and seq[self.indexed - 1] != self.last):
            self.ends, self.indexed = {}, 0
        for end in range(self.indexed + 1, upto + 1):
            for n in range(1, min(self.ngram, end) + 1):
                self.ends[tuple(seq[end - n:end])] = end
        self.indexed = max(self.indexed, upto)
        self.last = seq[self.indexed - 1] if self.indexed else None

    def latest_end(self, pattern: Sequence[int]) -> int | None:
        return self.ends.get(tuple(pattern))


def nearest_match_end(source: Sequence[int], pattern: list[int], limit: int, near: int,
                      start: int = 0) -> int | None:
    """End index of the occurrence of `pattern` within source[start:limit] nearest `near`."""
    n, best = len(pattern), None
    for end in range(start + n, min(limit, len(source)) + 1):
        if source[end - n:end] == pattern and (best is None or abs(end - near) <= abs(best - near)):
            best = end
    return best
