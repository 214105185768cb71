"""Response bodies: a whole completion, or server-sent events as the text arrives."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from autojudge.serve.decode_loop import InFlight, Outcome
from autojudge.serve.errors import decoding_failed
from autojudge.serve.metrics import Metrics
from autojudge.serve.requests import Plan


class Reply:
    """What every body of one request's reply shares: its id, kind, model and usage."""

    def __init__(self, chat: bool, model_id: str, prompt_tokens: int, plan: Plan, metrics: Metrics):
        self.chat, self.model_id, self.prompt_tokens, self.plan, self.metrics = chat, model_id, prompt_tokens, plan, \
            metrics
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def whole(self, outcome: Outcome, first_piece_delay: float | None) -> dict:
        return {**self._head("chat.completion" if self.chat else "text_completion"),
                "choices": [self._choice(outcome.text, outcome.finish_reason, delta=False)],
                "usage": self._usage(outcome, first_piece_delay)}

    async def events(self, request: InFlight) -> AsyncIterator[str]:
        """A chunk per piece of text, a last one with the finish reason and usage, then
        [DONE]; a failure after the first byte is an error event, as OpenAI sends."""
        head = self._head("chat.completion.chunk" if self.chat else "text_completion")
        try:
            while (piece := await request.pieces.get()) is not None:
                yield _sse({**head, "choices": [self._choice(piece, None, delta=True)]})
            try:
                outcome = await request.task
            except Exception as exc:  # noqa: BLE001 - too late for a status: an error event
                self.metrics.requests.labels("error").inc()
                yield _sse(decoding_failed(exc).body())
                return
            delay = None if request.first_piece_at is None else request.first_piece_at - request.arrived
            yield _sse({**head, "choices": [self._choice(None, outcome.finish_reason, delta=True)],
                        "usage": self._usage(outcome, delay)})
            yield "data: [DONE]\n\n"
        finally:
            request.leave()  # a client gone mid-stream, or waiting: its slot or place is freed

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model_id}

    def _choice(self, text: str | None, finish: str | None, delta: bool) -> dict:
        if not self.chat:
            return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        if delta:
            return {"index": 0, "delta": {} if text is None else {"role": "assistant", "content": text},
                    "finish_reason": finish, "logprobs": None}
        return {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                "logprobs": None}

    def _usage(self, outcome: Outcome, first_piece_delay: float | None) -> dict:
        stats, mode = outcome.result.stats, self.plan.mode
        self.metrics.count_success(stats, first_piece_delay)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": stats.new_tokens,
                "total_tokens": self.prompt_tokens + stats.new_tokens,
                "speculative": {"mode": mode.name, "window": None if mode.is_target else
                                self.plan.decoding.window, "cycles": stats.cycles,
                                "mean_accepted": stats.mean_accepted,
                                "accepted_mismatches": stats.accepted_mismatches,
                                "drafted_tokens": stats.drafted_tokens,
                                "tokens_per_second": stats.tokens_per_second}}


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"
