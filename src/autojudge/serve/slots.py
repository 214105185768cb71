"""The server's slots: the sequences requests decode on, several at once where the runtime allows.

A slot is one pair of sequences (target and draft) on the loaded pair's weights. On
llama.cpp the server makes `n` of them once, with `ModelPair.parallel`: one KV cache per
model holds them all, and the running requests' threads, each inside the gate's
`member()`, have their forward passes merged into one llama_decode per model. Torch
holds one sequence per model: one slot, the pair itself.

A request counts itself in (`join`, refused with `ServerFull` when `max_waiting` already
wait), waits for a free slot in arrival order (`take`), decodes on it in a thread of its
own (`decode_on`), and the slot is given back when that thread is done (`give_back`).
`join`, `take` and `give_back` run on the event loop only, so they need no lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import TypeVar

from autojudge.errors import AutojudgeError
from autojudge.models.backend import ModelPair

DEFAULT_SLOTS = 4  # where the runtime holds several sequences
T = TypeVar("T")


class ServerFull(Exception):
    """Every slot is busy and `max_waiting` requests already wait."""


def holds_several_sequences(pair: ModelPair) -> bool:
    """Whether every model of the pair can run several sequences side by side (llama.cpp)."""
    return all(hasattr(m, "parallel") for m in (pair.target, pair.draft) if m is not None)


def slot_count(pair: ModelPair, asked: int | None) -> int:
    """`asked`, or by default 4 where the runtime holds several sequences and 1 where it
    holds one. Asking for several where it cannot is refused rather than quietly
    served one at a time: whoever asked for them is counting on the throughput."""
    several = holds_several_sequences(pair)
    if asked is None:
        return DEFAULT_SLOTS if several else 1
    if asked < 1:
        raise AutojudgeError(f"--slots {asked}: at least one request must be able to run")
    if asked > 1 and not several:
        raise AutojudgeError(f"--slots {asked}: the torch runtime holds one sequence per model, so it decodes "
                             "one request at a time; use --slots 1, or --backend llamacpp to decode several "
                             "together")
    return asked


class SlotPool:
    def __init__(self, pair: ModelPair, slots: int, max_waiting: int):
        if slots > 1:
            self.pairs, self.gate = pair.parallel(slots)
        else:
            self.pairs, self.gate = [pair], None
        self.max_waiting = max_waiting
        # One thread per slot: the loop's default executor has min(32, cores + 4), and a
        # request queued there for a thread would wait although its slot is free.
        self.threads = ThreadPoolExecutor(len(self.pairs), thread_name_prefix="autojudge-slot")
        self._free = list(self.pairs)
        self._turns = asyncio.Semaphore(len(self.pairs))  # fair: waiting requests go in arrival order
        self._joined = 0  # requests counted in that do not hold a slot yet

    @property
    def size(self) -> int:
        return len(self.pairs)

    @property
    def running(self) -> int:
        return len(self.pairs) - len(self._free)

    @property
    def waiting(self) -> int:
        """Requests counted in beyond the free slots: those that must wait for one."""
        return max(0, self._joined - len(self._free))

    def join(self) -> None:
        """Count a request in, or refuse it at once when `max_waiting` already wait.
        Synchronous, so that requests arriving together cannot all slip past the limit."""
        if self.waiting >= self.max_waiting:
            raise ServerFull(f"the server is full ({self.max_waiting} requests waiting); retry later")
        self._joined += 1

    async def take(self) -> ModelPair:
        """A free slot, after `join`; cancelling the wait leaves the line."""
        try:
            await self._turns.acquire()
        finally:
            self._joined -= 1
        return self._free.pop()

    def give_back(self, slot: ModelPair) -> None:
        self._free.append(slot)
        self._turns.release()

    def decode_on(self, slot: ModelPair, work: Callable[[ModelPair], T]) -> T:
        """In the slot's thread: work(slot) on a fresh slot, its passes merged with those
        of the other running requests."""
        # Another request's cache: nothing to share with this one, and an answer must not
        # depend on what ran before it (a reset waits for any merged pass in flight).
        for model in (slot.target, slot.draft):
            if model is not None:
                model.reset()
        with self.gate.member() if self.gate is not None else nullcontext():
            return work(slot)


__all__ = ["DEFAULT_SLOTS", "ServerFull", "SlotPool", "holds_several_sequences", "slot_count"]
