"""Request parsing: the HTTP bodies, the server's defaults, and the plan one request decodes by.

A request is checked as the OpenAI API checks it (temperature in [0, 2], top_p in (0, 1],
a seed >= 0, n = 1) and every refusal names its field. The decoding numbers a request
may set (window, draft_p_min, its budget) are checked by `DecodingOptions`, the same
code that checks the server's defaults when it starts (`ServerOptions`), so a default
no request could use stops the server before it loads a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pydantic import BaseModel, ConfigDict, Field

from autojudge.decoding.modes import DecodingOptions, Mode, parse_mode
from autojudge.decoding.sampling import Sampling
from autojudge.models.runtime import RuntimeOptions
from autojudge.serve.errors import APIError

SERVER_BUDGET = 512  # a request's budget when neither it nor the server names one


@dataclass(frozen=True)
class ServerOptions:
    mode: Mode = parse_mode("exact")  # a request's mode when it names none
    decoding: DecodingOptions = DecodingOptions(max_new_tokens=SERVER_BUDGET)
    """A request's window, budget (its max_tokens) and draft p-min when it names none."""
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)  # how the served pair is loaded
    max_waiting: int = 16  # requests that may wait for a slot before the next is refused
    slots: int | None = None  # requests decoding at once; None: 4 on llama.cpp, 1 on torch


class Message(BaseModel):
    role: str
    content: str


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields are accepted and ignored

    model: str
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1
    # Declared so that asking for them is refused rather than ignored: chat takes a bool
    # (and top_logprobs), completions the number of alternatives per token.
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    # autojudge's own fields, checked by DecodingOptions as the server's defaults are
    mode: str | None = None
    window: int | None = None
    draft_p_min: float | None = None


class ChatRequest(OpenAIRequest):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, gt=0)


class CompletionRequest(OpenAIRequest):
    prompt: str


@dataclass(frozen=True)
class Plan:
    """What one request decodes with, checked, the server's defaults filled in."""
    mode: Mode
    decoding: DecodingOptions  # its budget already cut to the room the context leaves
    sampling: Sampling | None
    stops: list[str]


def plan_request(body: OpenAIRequest, prompt_ids: list[int], *, served_model: str, room: int,
                 defaults: ServerOptions, has_judge: bool) -> Plan:
    """The plan for `body`, or an APIError (400, or 404 for another model) naming the field."""
    if body.model != served_model:
        raise APIError(404, f"the model {body.model!r} does not exist; this server serves {served_model!r}",
                       param="model", code="model_not_found")
    if body.n != 1:
        raise APIError(400, "n must be 1", param="n")
    _refuse_logprobs(body)
    try:
        mode = parse_mode(body.mode) if body.mode else defaults.mode
    except ValueError as exc:
        raise APIError(400, str(exc), param="mode") from None
    if mode.needs_judge and not has_judge:
        raise APIError(400, f"mode {mode.name} needs a judge; start the server with --judge or --task",
                       param="mode")
    sampling = _sampling(body, mode)
    prompt_field = "messages" if isinstance(body, ChatRequest) else "prompt"
    if len(prompt_ids) >= room:
        raise APIError(400, f"the prompt has {len(prompt_ids)} tokens; the context holds {room}",
                       param=prompt_field, code="context_length_exceeded")
    budget = getattr(body, "max_completion_tokens", None) or body.max_tokens or defaults.decoding.max_new_tokens
    decoding = _decoding_options(defaults.decoding, body.window, min(budget, room - len(prompt_ids)),
                                 body.draft_p_min)
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return Plan(mode, decoding, sampling, [s for s in stops if s])


def _refuse_logprobs(body: OpenAIRequest) -> None:
    # The engine keeps no per-token distributions, so they cannot be returned; a client
    # that asked for them must hear so rather than get a reply without them.
    if body.logprobs is not None and body.logprobs is not False:
        raise APIError(400, "logprobs: this server does not return token log-probabilities", param="logprobs")
    if body.top_logprobs is not None:
        raise APIError(400, "top_logprobs: this server does not return token log-probabilities",
                       param="top_logprobs")


def _sampling(body: OpenAIRequest, mode: Mode) -> Sampling | None:
    if not body.temperature:  # None or 0: greedy
        return None
    if not mode.samples:
        raise APIError(400, f"sampling (temperature > 0) goes with the target, exact and judge modes, "
                            f"not {mode.name}", param="temperature")
    return Sampling(body.temperature, 1.0 if body.top_p is None else body.top_p, body.seed)


def _decoding_options(defaults: DecodingOptions, window: int | None, budget: int,
                      draft_p_min: float | None) -> DecodingOptions:
    """The defaults with what the request names; DecodingOptions refuses what no decoding
    can run with, its message starting with the field's name."""
    asked = {"window": window, "max_new_tokens": budget, "draft_p_min": draft_p_min}
    try:
        return replace(defaults, **{name: value for name, value in asked.items() if value is not None})
    except ValueError as exc:
        named = next((name for name in asked if str(exc).startswith(name)), None)
        raise APIError(400, str(exc), param="max_tokens" if named == "max_new_tokens" else named) from None


__all__ = ["ChatRequest", "CompletionRequest", "Message", "OpenAIRequest", "Plan", "ServerOptions", "plan_request"]
