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
response's usage carries the speculative statistics beside the token counts. Requests
are checked as the OpenAI API checks them (autojudge.serve.requests); token
log-probabilities are refused with a 400, not ignored.

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

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import generate_latest

from autojudge.errors import PromptError
from autojudge.models.backend import ModelPair
from autojudge.prompting import chat_prompt_ids
from autojudge.serve.decode_loop import InFlight
from autojudge.serve.errors import APIError, decoding_failed, install_error_handlers
from autojudge.serve.metrics import Metrics
from autojudge.serve.requests import ChatRequest, CompletionRequest, OpenAIRequest, ServerOptions, plan_request
from autojudge.serve.responses import Reply
from autojudge.serve.slots import ServerFull, SlotPool, slot_count


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
    install_error_handlers(app, metrics.requests.labels("error").inc)

    async def complete(body: OpenAIRequest, prompt_ids: list[int], chat: bool):
        plan = plan_request(body, prompt_ids, served_model=model_id, room=room, defaults=options,
                            has_judge=judge is not None)
        try:
            slots.join()
        except ServerFull as exc:
            metrics.requests.labels("refused").inc()
            raise APIError(503, str(exc), kind="server_error", code="server_busy") from None
        request = InFlight(slots, prompt_ids, plan, judge)
        reply = Reply(chat, model_id, len(prompt_ids), plan, metrics)
        if body.stream:
            return StreamingResponse(reply.events(request), media_type="text/event-stream")
        try:
            outcome = await asyncio.shield(request.task)
        except asyncio.CancelledError:  # the client went away: end its decoding early
            request.leave()
            raise
        except Exception as exc:
            raise decoding_failed(exc) from exc
        delay = None if request.first_piece_at is None else request.first_piece_at - request.arrived
        return reply.whole(outcome, delay)

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


__all__ = ["ServerOptions", "build_app"]
