"""Greedy speculative decoding, batch size 1, over any two backends with one vocabulary.

Invariant between cycles: `seq` is prompt + generated tokens; each model's cache
holds a prefix of `seq` (the target's: all but the last token, which is "pending").
A cycle drafts k tokens, runs the target once over [pending, d_0 .. d_{k-1}], asks
the acceptance policy how many draft tokens to keep (n), emits d_0 .. d_{n-1} and the
target's own token at position n (a correction, or the bonus when n == k), and crops
both caches back to what is still valid. With the `Exact` policy the output is the
target's own greedy output, token for token.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

from autojudge.decoding.controller import DraftLengthController
from autojudge.decoding.drafters import Drafter, ModelDrafter
from autojudge.decoding.policies import AcceptancePolicy, Exact, Window
from autojudge.decoding.sampling import Sampling, speculative_sample
from autojudge.errors import PromptError
from autojudge.models.backend import MAX_WINDOW, CausalLM, keep_shared_prefix


@dataclass
class DecodeStats:
    new_tokens: int = 0
    cycles: int = 0  # target verification passes (the prefill is not one)
    accept_histogram: list[int] = field(default_factory=list)  # [n] = cycles that kept n drafts
    target_forwards: int = 0
    draft_forwards: int = 0
    drafted_tokens: int = 0
    accepted_mismatches: int = 0  # draft tokens kept although the target's argmax differed
    prefill_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def mean_accepted(self) -> float:
        """Tokens emitted per target verification pass, the papers' headline metric."""
        return self.new_tokens / self.cycles if self.cycles else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_accepted": self.mean_accepted,
                "tokens_per_second": self.tokens_per_second}


# Stop reasons of a generation the budget (or the context) cut short, not one that ended
# by itself: its "answer" is whatever stood last at the cut.
CUT_STOPS = ("length", "context")


def is_cut(stop_reason: str | None) -> bool:
    return stop_reason in CUT_STOPS


@dataclass
class Generation:
    token_ids: list[int]
    stop_reason: str  # "eos", "length" (max_new_tokens) or "context" (model context full)
    stats: DecodeStats


def _check_prompt(prompt_ids: Sequence[int], models: Sequence[CausalLM]) -> int:
    context = min(m.max_context for m in models)
    if not prompt_ids:
        raise PromptError("the prompt is empty")
    if len(prompt_ids) >= context:
        raise PromptError(f"the prompt has {len(prompt_ids)} tokens; the context holds {context}")
    return context


@torch.inference_mode()
def generate(
    target: CausalLM,
    prompt_ids: Sequence[int],
    *,
    draft: CausalLM | None = None,
    drafter: Drafter | None = None,
    policy: AcceptancePolicy | None = None,
    window: int = 8,
    max_new_tokens: int = 256,
    stop_ids: frozenset[int] = frozenset(),
    stop_when: Callable[[list[int]], bool] | None = None,
    draft_p_min: float = 0.0,
    sampling: Sampling | None = None,
    draft_length: str | DraftLengthController = "fixed",
) -> Generation:
    """Decode greedily from `target`, speculating with a draft model or another drafter.

    Without either (or with window 0) this is plain greedy decoding through the same
    code path, which is what `exact` speculative decoding is tested against. Cached
    keys and values of a shared prefix with the previous call are reused, not recomputed.
    `stop_when(new_tokens)`, checked after every cycle, ends decoding ("settled") when true.
    `draft_p_min` > 0 lets a draft model stop early (see ModelDrafter): adaptive windows.
    `sampling` (temperature > 0): the target's distribution is sampled, and a draft's
    tokens verified by speculative sampling (autojudge.decoding.sampling), which keeps
    that distribution; only the exact and judge policies go with it.
    `draft_length` "fixed" drafts up to `window` tokens every cycle; "adaptive" (or a
    DraftLengthController, e.g. with given costs) chooses each cycle's count, zero
    included, for the most expected tokens per second (autojudge.decoding.controller).
    """
    if draft is not None and drafter is not None:
        raise ValueError("pass a draft model or a drafter, not both")
    if draft is not None:
        drafter = ModelDrafter(draft, p_min=draft_p_min)
    policy = policy or Exact()
    if sampling is not None and not (isinstance(policy, Exact) or hasattr(policy, "harmless")):
        raise ValueError(f"sampling goes with exact and judge decoding, not {policy.name}")
    needs_logits = getattr(policy, "needs_draft_logits", False) or sampling is not None
    if (policy.needs_hidden or needs_logits) and drafter is not None and not drafter.provides_hidden:
        raise ValueError(f"policy {policy.name} needs hidden states or logits that {drafter.name} cannot give")
    if window > MAX_WINDOW:
        raise ValueError(f"window {window}: at most {MAX_WINDOW} draft tokens per cycle")
    context = _check_prompt(prompt_ids, [target] if draft is None else [target, draft])
    window = window if drafter is not None else 0
    controller = None
    if isinstance(draft_length, DraftLengthController):
        controller = draft_length
        if drafter is not None and controller.window != window:
            raise ValueError(f"the controller chooses among {controller.window} draft tokens, the window is {window}")
    elif draft_length == "adaptive" and drafter is not None:
        # A free draft is verified only where its evidence has paid so far.
        controller = DraftLengthController.timing(window, free=drafter.free, shape=getattr(target, "pass_shape", None))
    elif draft_length not in ("fixed", "adaptive"):
        raise ValueError(f"draft length {draft_length!r}: fixed or adaptive")
    if drafter is None:
        controller = None
    free = drafter is not None and drafter.free  # a lookup: propose first, then choose how much to verify
    stats = DecodeStats(accept_histogram=[0] * (window + 1))
    start = time.perf_counter()

    seq = list(prompt_ids)
    # The target's cache must hold seq[:-1]: keep what it shares with that, read the rest.
    keep_shared_prefix(target, seq, len(seq) - 1)
    if target.cached_length < len(seq) - 1:
        target.forward(seq[target.cached_length:-1], n_logits=1)
        stats.target_forwards += 1
    if drafter is not None:
        drafter.start(seq)
    stats.prefill_seconds = time.perf_counter() - start

    limit = min(len(prompt_ids) + max_new_tokens, context)
    stop_reason = "length" if limit == len(prompt_ids) + max_new_tokens else "context"
    while len(seq) < limit:
        before = len(seq)
        k = min(window, limit - before - 1)
        chosen = controller is not None and k > 0 and not free
        if chosen:
            k = min(k, controller.choose())  # a model's draft costs: choose before drafting
        drafted, draft_hidden, draft_logits = [], None, None
        drafting = time.perf_counter()
        if k > 0:
            proposal = drafter.propose(seq, k, stop_ids, policy.needs_hidden, needs_logits, sampling)
            drafted, draft_hidden, draft_logits = proposal.tokens, proposal.hidden, proposal.logits
            if controller is not None and free and drafted:
                # A lookup costs nothing: see what it has, then choose how much to verify.
                drafted = drafted[:controller.choose(context=proposal.match, limit=len(drafted))]
                chosen = True
            stats.draft_forwards += proposal.forwards
            stats.drafted_tokens += len(drafted)

        verifying = time.perf_counter()
        out = target.forward([seq[-1], *drafted])
        stats.target_forwards += 1
        view = Window(
            draft_tokens=torch.tensor(drafted, dtype=torch.long, device=out.logits.device),
            target_logits=out.logits,
            target_hidden=out.hidden[1:],
            draft_hidden=draft_hidden,
            draft_logits=draft_logits,
        )
        if sampling is None:
            accepted = policy(view) if drafted else 0
            emitted = drafted[:accepted] + [int(view.target_tokens[accepted])]
            mismatches = int((~view.matches[:accepted]).sum()) if accepted else 0
        else:
            harmless = policy.harmless(view) if drafted and hasattr(policy, "harmless") else None
            accepted, token, mismatches = speculative_sample(sampling, out.logits, draft_logits, drafted, harmless)
            emitted = drafted[:accepted] + [token]
        if chosen:  # (a lookup that found nothing left the controller no choice)
            # The verification's time includes the policy's (a judge's features and scores).
            controller.observe(len(drafted), accepted, verifying - drafting, time.perf_counter() - verifying)

        stats.cycles += 1
        stats.accept_histogram[accepted] += 1
        stats.accepted_mismatches += mismatches
        for token in emitted:
            seq.append(token)
            if token in stop_ids:
                stop_reason = "eos"
                break
        if stop_reason == "eos":
            break
        if stop_when is not None and stop_when(seq[len(prompt_ids):]):
            stop_reason = "settled"
            break
        # The target saw [pending, d_0..d_{k-1}]; only [pending, d_0..d_{n-1}] stays valid.
        target.truncate(before + accepted)
        if drafter is not None:
            drafter.rollback(before + accepted)

    generated = seq[len(prompt_ids):]
    stats.new_tokens = len(generated)
    stats.seconds = time.perf_counter() - start
    return Generation(token_ids=generated, stop_reason=stop_reason, stats=stats)
