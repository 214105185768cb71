"""Merge the forward passes of several threads into one llama.cpp pass per model.

Each thread drives its own sequences (see `LlamaCppLM.parallel`) with ordinary,
sequential code: mining one problem, say. When it calls `forward`, its request waits
at the gate until every member thread has one waiting too; then one thread decodes
them all, one `llama_decode` per model, and each gets its own rows back. A member busy
elsewhere (running a sandboxed program, say) is waited for only `patience` seconds.

Merging changes which tokens share a pass, not what any sequence attends to, so each
thread computes what it would alone, up to float rounding in llama.cpp's kernels.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np


@dataclass
class PassRequest:
    """Tokens to append to one sequence, and which of them need outputs."""
    seq_id: int
    start: int  # position of the first token
    tokens: Sequence[int]
    wanted: list[bool]


class PassRunner(Protocol):
    """A loaded model that runs passes for many sequences (llama.cpp's runtime)."""

    def decode(self, requests: list[PassRequest]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every request's (logits, hidden) rows for its wanted tokens, in one pass."""

    def remove(self, seq_id: int, start: int) -> bool:
        """Drop a sequence's cached tokens from position `start` on."""


class _Slot:
    __slots__ = ("value", "error", "done")

    def __init__(self):
        self.value, self.error, self.done = None, None, False


class PassGate:
    def __init__(self, patience: float = 0.02):
        self.patience = patience
        self._cond = threading.Condition()
        self._members = 0
        self._pending: list[tuple[PassRunner, PassRequest, _Slot]] = []
        self.passes = 0  # llama_decode groups run, for statistics
        self.requests = 0

    @contextmanager
    def member(self) -> Iterator[None]:
        """The calling thread takes part: its passes are waited for, while it is in here."""
        with self._cond:
            self._members += 1
        try:
            yield
        finally:
            with self._cond:
                self._members -= 1
                if self._pending and len(self._pending) >= self._members:
                    self._flush()  # the others were waiting for this thread

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """No pass runs while the caller is in here. A llama.cpp context does not allow
        changing one sequence's cache (llama_memory_seq_rm) during another's pass: a
        thread that resets its sequences while others decode does it in here."""
        with self._cond:
            yield

    def run(self, runtime: PassRunner, request: PassRequest) -> tuple[np.ndarray, np.ndarray]:
        slot = _Slot()
        with self._cond:
            self._pending.append((runtime, request, slot))
            while not slot.done:
                if len(self._pending) >= self._members:
                    self._flush()
                elif not self._cond.wait(self.patience) and not slot.done:
                    self._flush()  # a member is busy elsewhere: go without it
        if slot.error is not None:
            raise slot.error
        return slot.value

    def _flush(self) -> None:
        """Decode everything pending, one group per model. Called holding the lock, when
        no member can be adding requests (they are all waiting or busy elsewhere)."""
        pending, self._pending = self._pending, []
        runtimes = list(dict.fromkeys(runtime for runtime, _, _ in pending))
        for runtime in runtimes:
            group = [(request, slot) for r, request, slot in pending if r is runtime]
            try:
                outputs = runtime.decode([request for request, _ in group])
            except Exception:
                # One bad request (a token outside the vocabulary, say) must not fail the
                # others: undo what the pass cached, then give each its own pass.
                for request, slot in group:
                    runtime.remove(request.seq_id, request.start)
                    try:
                        slot.value = runtime.decode([request])[0]
                    except Exception as exc:
                        slot.error = exc
            else:
                for (_, slot), output in zip(group, outputs):
                    slot.value = output
            self.passes += 1
        self.requests += len(pending)
        for _, _, slot in pending:
            slot.done = True
        self._cond.notify_all()
