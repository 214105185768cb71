"""The decode loop: one request decoding on a slot, in that slot's thread, its text
handed piece by piece to the event loop.

A request waits for a slot in arrival order, decodes on it in the slot's thread, and
gives it back when that thread is done, however it ends. A client that goes away while
waiting leaves the line at once; one that goes away while decoding ends it at the next
verification cycle.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from functools import partial

from autojudge.decoding.engine import Generation, is_cut
from autojudge.decoding.modes import decode
from autojudge.models.backend import ModelPair
from autojudge.serve.requests import Plan
from autojudge.serve.slots import SlotPool


@dataclass
class Outcome:
    result: Generation
    text: str  # cut before the first stop string
    finish_reason: str  # "length" or "stop", as OpenAI names them


def decode_text(slot: ModelPair, prompt_ids: list[int], plan: Plan, judge, on_text, cancelled: threading.Event
                ) -> Outcome:
    """Decode on `slot` by `plan`, in its thread; on_text(piece) for each new piece of text."""
    shown = [""]

    def watch(new_tokens: list[int]) -> bool:
        text = slot.tokenizer.decode(new_tokens, skip_special_tokens=True)
        cut = _first_stop(text, plan.stops)
        visible = text if cut is None else text[:cut]
        if not visible.endswith("\ufffd") and len(visible) > len(shown[0]):  # never half a character
            on_text(visible[len(shown[0]):])
            shown[0] = visible
        return cut is not None or cancelled.is_set()

    result = decode(slot, prompt_ids, plan.mode, plan.decoding, judge=judge, sampling=plan.sampling,
                    stop_when=watch)
    text = slot.tokenizer.decode(result.token_ids, skip_special_tokens=True)
    cut = _first_stop(text, plan.stops)
    final = text if cut is None else text[:cut]
    if len(final) > len(shown[0]):
        on_text(final[len(shown[0]):])
    return Outcome(result, final, "length" if is_cut(result.stop_reason) else "stop")


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


class InFlight:
    """One request from its turn for a slot to its outcome. Made on the event loop after
    `slots.join()`; `pieces` yields its text and then None; `task` gives its Outcome."""

    def __init__(self, slots: SlotPool, prompt_ids: list[int], plan: Plan, judge):
        self.slots = slots
        self.pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self.arrived = time.perf_counter()
        self.first_piece_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._cancelled = threading.Event()
        self._in_line = False  # waiting for a slot: a client gone then leaves the line at once
        self._work = partial(decode_text, prompt_ids=prompt_ids, plan=plan, judge=judge, on_text=self._on_text,
                             cancelled=self._cancelled)
        self.task = asyncio.create_task(self._decode_in_turn())

    def _on_text(self, piece: str) -> None:  # in the slot's thread
        if self.first_piece_at is None:
            self.first_piece_at = time.perf_counter()
        self._loop.call_soon_threadsafe(self.pieces.put_nowait, piece)

    async def _decode_in_turn(self) -> Outcome | None:
        self._in_line = True
        try:
            slot = await self.slots.take()
        finally:
            self._in_line = False
        if self._cancelled.is_set():
            self.slots.give_back(slot)
            return None
        job = self._loop.run_in_executor(self.slots.threads, self.slots.decode_on, slot, self._work)
        # The slot goes back when its thread is done, however it ends, and not before:
        # neither a failed decoding nor this task's cancellation may leak or share it.
        job.add_done_callback(lambda _: self.slots.give_back(slot))
        try:
            return await asyncio.shield(job)
        finally:
            self._loop.call_soon_threadsafe(self.pieces.put_nowait, None)

    def leave(self) -> None:
        """The client is gone: decoding ends at the next cycle, a wait for a slot at once."""
        self._cancelled.set()
        if self._in_line:
            self.task.cancel()
