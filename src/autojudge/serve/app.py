"""An OpenAI-compatible HTTP server over one loaded pair (FastAPI, run by uvicorn).

    GET  /v1/models              the served model (the target's name)
    POST /v1/chat/completions    messages -> an answer, or server-sent events with "stream"
    POST /v1/completions         a raw prompt, the same way
    GET  /health                 200 once the pair is loaded
    GET  /metrics                Prometheus text: requests, tokens, accepted tokens per
                                 cycle, judge-accepted mismatches, time to first token,
                                 time per output token, running and waiting requests,
                                 and with several slots the merged passes

Beyond the OpenAI fields a request may name its decoding `mode` (any of
autojudge.decoding.modes: exact, judge@0.9, fly, ...), `window` and `draft_p_min`; the
response's usage carries the speculative statistics beside the token counts.

Concurrency: up to `slots` requests decode at once, each on its own sequences in a thread
of its own (autojudge.serve.slots); on llama.cpp (4 slots by default) their forward passes
are merged into one llama_decode per model, so requests in flight share passes. Torch
holds one sequence per model: one slot, requests decode one at a time. The event loop
stays free to accept, stream and refuse. Beyond the running requests at most
`max_waiting` wait, in arrival order; one more is refused at once with a 503 rather than
left to hang. A streaming client that disconnects ends its decoding at the next
verification cycle, which frees its slot; so does a request that fails (a 500). The
judge is only read while decoding, so one judge serves every slot. Temperature 0 (the
default) is greedy decoding; above 0, the exact and judge modes sample by speculative
sampling (autojudge.decoding.sampling), with top_p and seed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, Field

from autojudge.decoding.engine import is_cut
from autojudge.decoding.modes import DecodingOptions, Mode, decode, parse_mode
from autojudge.decoding.sampling import Sampling
from autojudge.errors import PromptError
from autojudge.models.backend import MAX_WINDOW, ModelPair
from autojudge.prompting import chat_prompt_ids
from autojudge.serve.metrics import Metrics
from autojudge.serve.slots import ServerFull, SlotPool, slot_count


class Message(BaseModel):
    role: str
    content: str


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields are accepted and ignored

    model: str
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1
    # autojudge's own fields
    mode: str | None = None
    window: int | None = Field(default=None, gt=0, le=MAX_WINDOW)
    draft_p_min: float | None = Field(default=None, ge=0.0, le=1.0)


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, gt=0)


class CompletionRequest(_Request):
    prompt: str


@dataclass(frozen=True)
class ServerOptions:
    mode: str = "exact"  # the default decoding mode
    window: int = 16
    draft_p_min: float = 0.0
    max_tokens: int = 512  # a request's default budget
    max_waiting: int = 16  # requests that may wait for a slot before the next is refused
    slots: int | None = None  # requests decoding at once; None: 4 on llama.cpp, 1 on torch


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code


def _error_body(status: int, message: str, kind: str, param=None, code=None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)


def build_app(pair: ModelPair, options: ServerOptions = ServerOptions(), judge=None) -> FastAPI:
    """The server for `pair`; `judge` serves the judge modes (none: they are refused).
    With several slots the app decodes on sequences of its own and keeps no reference
    to `pair`'s models: the caller may free them (gigabytes on llama.cpp)."""
    app = FastAPI(title="autojudge", version="1")
    model_id, tokenizer, described = pair.target.name, pair.tokenizer, pair.describe(machine=False)
    room = min(m.max_context for m in (pair.target, pair.draft) if m is not None)  # every slot's too
    slots = SlotPool(pair, slot_count(pair, options.slots), options.max_waiting)
    app.state.slots = slots
    metrics = Metrics(slots)
    default_mode = parse_mode(options.mode)

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError):
        metrics.requests.labels("error").inc()
        return _error_body(exc.status, exc.message, exc.kind, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        metrics.requests.labels("error").inc()
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = "the body is not valid JSON" if first.get("type") == "json_invalid" else \
            f"{where or 'body'}: {first.get('msg', 'invalid request')}"
        return _error_body(400, message, "invalid_request_error", where)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_id}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(generate_latest(metrics.registry).decode(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "autojudge",
                                            **described}]}

    def plan(body: _Request, prompt_ids: list[int]) -> tuple[Mode, int, float, int, list[str], Sampling | None]:
        if body.model != model_id:
            raise APIError(404, f"the model {body.model!r} does not exist; this server serves {model_id!r}",
                           param="model", code="model_not_found")
        if body.n != 1:
            raise APIError(400, "n must be 1", param="n")
        try:
            mode = parse_mode(body.mode) if body.mode else default_mode
        except ValueError as exc:
            raise APIError(400, str(exc), param="mode") from None
        sampling = None
        if (body.temperature or 0) > 0:
            if mode.policy not in ("target", "exact") and not mode.needs_judge:
                raise APIError(400, f"sampling (temperature > 0) goes with the target, exact and judge modes, "
                                    f"not {mode.name}", param="temperature")
            try:
                sampling = Sampling(body.temperature, 1.0 if body.top_p is None else body.top_p, body.seed)
            except ValueError as exc:
                raise APIError(400, str(exc), param="top_p") from None
        if mode.needs_judge and judge is None:
            raise APIError(400, f"mode {mode.name} needs a judge; start the server with --judge or --task",
                           param="mode")
        budget = getattr(body, "max_completion_tokens", None) or body.max_tokens or options.max_tokens
        if len(prompt_ids) >= room:
            raise APIError(400, f"the prompt has {len(prompt_ids)} tokens; the context holds {room}",
                           param="messages", code="context_length_exceeded")
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        window = body.window or options.window
        p_min = options.draft_p_min if body.draft_p_min is None else body.draft_p_min
        return mode, window, p_min, min(budget, room - len(prompt_ids)), [s for s in stops if s], sampling

    def run(prompt_ids, mode, window, p_min, budget, stops, sampling, on_text, cancelled, slot: ModelPair):
        """Decode on `slot`, in its thread; on_text(piece) for each new piece of text."""
        shown = [""]

        def watch(new_tokens: list[int]) -> bool:
            text = slot.tokenizer.decode(new_tokens, skip_special_tokens=True)
            cut = _first_stop(text, stops)
            visible = text if cut is None else text[:cut]
            if not visible.endswith("\ufffd") and len(visible) > len(shown[0]):  # never half a character
                on_text(visible[len(shown[0]):])
                shown[0] = visible
            return cut is not None or cancelled.is_set()

        result = decode(slot, prompt_ids, mode, DecodingOptions(window, budget, p_min), judge=judge,
                        sampling=sampling, stop_when=watch)
        text = slot.tokenizer.decode(result.token_ids, skip_special_tokens=True)
        cut = _first_stop(text, stops)
        final = text if cut is None else text[:cut]
        if len(final) > len(shown[0]):
            on_text(final[len(shown[0]):])
        return result, final, "length" if is_cut(result.stop_reason) else "stop"

    async def complete(body: _Request, prompt_ids: list[int], chat: bool):
        mode, window, p_min, budget, stops, sampling = plan(body, prompt_ids)
        try:
            slots.join()
        except ServerFull as exc:
            metrics.requests.labels("refused").inc()
            raise APIError(503, str(exc), kind="server_error", code="server_busy") from None
        created, rid = int(time.time()), ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        pieces: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()
        arrived = time.perf_counter()
        first_piece = {}

        def on_text(piece: str) -> None:
            first_piece.setdefault("at", time.perf_counter())
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        in_line = [False]  # waiting for a slot: a client gone then leaves the line at once

        async def decode_in_turn():
            in_line[0] = True
            try:
                slot = await slots.take()
            finally:
                in_line[0] = False
            if cancelled.is_set():
                slots.give_back(slot)
                return None
            work = partial(run, prompt_ids, mode, window, p_min, budget, stops, sampling, on_text, cancelled)
            job = loop.run_in_executor(slots.threads, slots.decode_on, slot, work)
            # The slot goes back when its thread is done, however it ends, and not before:
            # neither a failed decoding nor this task's cancellation may leak or share it.
            job.add_done_callback(lambda _: slots.give_back(slot))
            try:
                return await asyncio.shield(job)
            finally:
                loop.call_soon_threadsafe(pieces.put_nowait, None)

        task = asyncio.create_task(decode_in_turn())

        def leave() -> None:
            cancelled.set()  # decoding ends at the next cycle
            if in_line[0]:
                task.cancel()

        def account(result) -> dict:
            stats = result.stats
            metrics.requests.labels("ok").inc()
            metrics.tokens.inc(stats.new_tokens)
            metrics.cycles.inc(stats.cycles)
            metrics.mismatches.inc(stats.accepted_mismatches)
            if stats.cycles:
                metrics.accepted.observe(stats.mean_accepted)
            if "at" in first_piece:
                metrics.ttft.observe(first_piece["at"] - arrived)
            if stats.new_tokens:
                metrics.tpot.observe(stats.seconds / stats.new_tokens)
            return {"prompt_tokens": len(prompt_ids), "completion_tokens": stats.new_tokens,
                    "total_tokens": len(prompt_ids) + stats.new_tokens,
                    "speculative": {"mode": mode.name, "window": None if mode.policy == "target" else window,
                                    "cycles": stats.cycles, "mean_accepted": stats.mean_accepted,
                                    "accepted_mismatches": stats.accepted_mismatches,
                                    "drafted_tokens": stats.drafted_tokens,
                                    "tokens_per_second": stats.tokens_per_second}}

        def choice(text: str | None, finish: str | None, delta: bool) -> dict:
            if chat:
                key, value = ("delta", {} if text is None else {"role": "assistant", "content": text}) if delta \
                    else ("message", {"role": "assistant", "content": text})
                return {"index": 0, key: value, "finish_reason": finish, "logprobs": None}
            return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}

        kind = ("chat.completion" if chat else "text_completion")
        if not body.stream:
            try:
                outcome = await asyncio.shield(task)
            except asyncio.CancelledError:  # the client went away: end its decoding early
                leave()
                raise
            except Exception as exc:
                raise _failed(exc) from exc
            result, text, finish = outcome
            return {"id": rid, "object": kind, "created": created, "model": model_id,
                    "choices": [choice(text, finish, False)], "usage": account(result)}

        async def events() -> AsyncIterator[str]:
            chunk_kind = "chat.completion.chunk" if chat else "text_completion"
            try:
                while (piece := await pieces.get()) is not None:
                    yield _sse({"id": rid, "object": chunk_kind, "created": created, "model": model_id,
                                "choices": [choice(piece, None, True)]})
                try:
                    result, _, finish = await task
                except Exception as exc:  # noqa: BLE001 - too late for a status: an error event, as OpenAI sends
                    error = _failed(exc)
                    metrics.requests.labels("error").inc()
                    yield _sse({"error": {"message": error.message, "type": error.kind, "param": None,
                                          "code": None}})
                    return
                yield _sse({"id": rid, "object": chunk_kind, "created": created, "model": model_id,
                            "choices": [choice(None, finish, True)], "usage": account(result)})
                yield "data: [DONE]\n\n"
            finally:
                leave()  # a client gone mid-stream, or waiting: its slot or place is freed

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        try:
            prompt_ids = chat_prompt_ids(tokenizer, [m.model_dump() for m in body.messages])
        except PromptError as exc:
            raise APIError(400, str(exc), param="messages") from None
        return await complete(body, prompt_ids, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        prompt_ids = list(tokenizer(body.prompt)["input_ids"])
        if not prompt_ids:
            raise APIError(400, "the prompt is empty", param="prompt")
        return await complete(body, prompt_ids, chat=False)

    return app


def _failed(exc: Exception) -> APIError:
    return APIError(500, f"decoding failed: {type(exc).__name__}: {exc}", kind="server_error")


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"


__all__ = ["ServerOptions", "build_app"]
