"""Algorithm 1: swap each draft token in, let the target finish, see if the answer changes.

For a prompt x the target answers y greedily. The draft, teacher-forced on x + y,
proposes its own token at every position; where it differs from y (a mismatch at t),
the target regenerates from x + y[:t] + draft_t. If the task's answer is unchanged,
the mismatch is unimportant and y becomes the regenerated answer; otherwise it is
important and y stays. The reference is the target's own answer, not the gold one.

Regeneration is most of the cost. The old answer usually re-converges with the new
one, so it is proposed as a draft (`LookupDrafter`) and verified many tokens per
target pass; with exact verification the labels are those of plain regeneration.

A task may say when a text's answer is settled: no continuation can change it (code:
the program's block is closed). Then a regeneration stops at that point (its
alternative response ends there), and a mismatch after it is labelled unimportant
without regenerating, since every regeneration would find the same answer. Such a
label keeps the current response (`settled=True`; its alternative response is the
prefix with the draft token). The response itself is finished greedily once, at the
end, so the prose after a program is labelled too. Up to the settle point, labels and
response are those of plain Algorithm 1.

Every answer is generated up to the task's budget (`task_budget`), chosen so that the
target's answers end by themselves; each label records how its regeneration stopped
and each problem how its first answer did, so a run can state the share cut short.

Features, per label: the final-norm hidden states of both models after reading the
draft token, and the logit features of both models' next-token distributions at its
position (autojudge.decoding.features), all from one short pass of each model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from autojudge.decoding.drafters import LookupDrafter, common_prefix_length
from autojudge.decoding.engine import generate
from autojudge.decoding.features import logit_features
from autojudge.errors import PromptError
from autojudge.models.backend import CausalLM
from autojudge.models.loading import ModelPair
from autojudge.tasks.base import Problem, Task, task_budget


@dataclass
class LabelledMismatch:
    position: int  # index in the response
    target_token: int
    draft_token: int
    important: bool
    alt_answer: str | None
    alt_response: str  # the whole response with the draft token swapped in
    settled: bool = False  # the answer was settled before the swap: no regeneration needed
    # How the regeneration ended: "eos", "settled", "length" or "context" (the last two:
    # cut by the budget); None for a settled label, which regenerates nothing.
    regeneration_stop: str | None = None


@dataclass
class MinedProblem:
    problem_id: int
    answer: str | None  # the target's own answer: the reference for every label
    response: str
    token_ids: list[int] = field(default_factory=list)  # of the response
    mismatches: list[LabelledMismatch] = field(default_factory=list)
    draft_features: list[torch.Tensor] = field(default_factory=list)  # [draft hidden] each
    target_features: list[torch.Tensor] = field(default_factory=list)
    logit_features: list[torch.Tensor] = field(default_factory=list)  # [len(LOGIT_FEATURES)] each
    target_passes: int = 0
    first_answer_stop: str | None = None  # how the target's first answer ended (see regeneration_stop)
    response_stop: str | None = None  # how the final response ended


def next_token_predictions(model: CausalLM, seq: Sequence[int], first: int) -> list[int]:
    """Greedy next-token predictions after each of seq[first:], reusing the cached prefix."""
    keep = min(common_prefix_length(model.tokens, seq), first)
    model.truncate(keep)
    logits = model.forward(list(seq[keep:])).logits
    return logits[first - keep:].argmax(dim=-1).tolist()


def features_at(model: CausalLM, seq: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(next-token logits before the last token of `seq`, final-norm hidden state after
    reading it), from one pass over what the cache lacks (at least those two tokens)."""
    keep = min(common_prefix_length(model.tokens, seq), len(seq) - 2)
    model.truncate(keep)
    out = model.forward(list(seq[keep:]), n_logits=2)
    return out.logits[-2], out.hidden[-1]


def is_cut(stop_reason: str | None) -> bool:
    """Whether a generation stopped at the budget or the context, not by itself."""
    return stop_reason in ("length", "context")


def mine_problem(pair: ModelPair, task: Task, problem: Problem, prompt_ids: list[int], *,
                 max_new_tokens: int | None = None, window: int = 4, regen_window: int = 32,
                 fast: bool = True) -> MinedProblem:
    """Label every mismatch Algorithm 1 visits for one problem.

    `fast=False` regenerates with plain greedy decoding (the reference the fast path is
    tested against); `regen_window` is how many old-suffix tokens one pass verifies.
    """
    target, draft, stop = pair.target, pair.draft, pair.stop_ids
    max_new_tokens = max_new_tokens or task_budget(task)
    decode = lambda ids: pair.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    settles = getattr(task, "settled", None)
    is_settled = (lambda ids: settles(decode(ids), problem)) if settles else (lambda ids: False)  # noqa: E731
    x = list(prompt_ids)
    # The draft reads every response too: on a mixed pair its context may be the shorter.
    room = min(target.max_context, draft.max_context)
    if len(x) >= room:
        raise PromptError(f"the prompt has {len(x)} tokens; the context holds {room}")

    def finish(head: list[int], until_settled: bool = True, **speculation) -> tuple[list[int], str, int]:
        """Greedy continuation of x + head until EOS, the budget or (if asked) a settled
        answer: (continuation, how it stopped, target passes)."""
        budget = min(max_new_tokens, room - len(x)) - len(head)
        # A response that filled the context has no room left after a swap at its end.
        if head and head[-1] in stop:
            return [], "eos", 0
        if budget <= 0:
            return [], "length" if max_new_tokens <= room - len(x) else "context", 0
        watch = (lambda new: is_settled(head + new)) if settles and until_settled else None  # noqa: E731
        out = generate(target, x + head, max_new_tokens=budget, stop_ids=stop, stop_when=watch, **speculation)
        new = out.token_ids
        if out.stop_reason == "settled":  # a cycle may overshoot: end exactly at the settle point
            while len(new) > 1 and is_settled(head + new[:-1]):
                new = new[:-1]
        return new, out.stop_reason, out.stats.target_forwards

    # window 0: the target alone, the fastest on llama.cpp, where a draft does not pay off.
    y, stop_reason, passes = finish([], draft=draft if window else None, window=window)
    unfinished = stop_reason == "settled"  # y ends at its settle point: finished at the end
    answer = task.extract_answer(decode(y), problem)
    result = MinedProblem(problem.id, answer, decode(y), list(y), first_answer_stop=stop_reason,
                          response_stop=stop_reason)
    if answer is None:  # nothing to compare against: no labels from this problem
        return result

    predicted = next_token_predictions(draft, x + y, len(x) - 1)[: len(y)]
    t = 0
    while True:
        t = next((i for i in range(t, len(y)) if y[i] != predicted[i]), None)
        if t is None:
            if not unfinished:
                break
            # y stopped at its settle point: finish it, then label the rest (all settled).
            start = len(y)
            rest, result.response_stop, more = finish(y, until_settled=False)
            y, passes, unfinished = y + rest, passes + more, False
            predicted = predicted[:start] + next_token_predictions(draft, x + y, len(x) + start - 1)[: len(rest)]
            t = start
            continue
        swapped = predicted[t]
        prefix = x + y[:t] + [swapped]
        draft_logits, draft_hidden = features_at(draft, prefix)
        target_logits, target_hidden = features_at(target, prefix)
        result.draft_features.append(draft_hidden)
        result.target_features.append(target_hidden)
        result.logit_features.append(logit_features(target_logits[None], draft_logits[None],
                                                    torch.tensor([swapped]))[0])
        passes += 1
        if is_settled(y[:t]):
            result.mismatches.append(LabelledMismatch(t, y[t], swapped, False, answer,
                                                      decode(y[:t] + [swapped]), settled=True))
            t += 1
            continue
        continuation, regen_stop, more = finish(y[:t] + [swapped], drafter=LookupDrafter(x + y) if fast else None,
                                                window=regen_window if fast else 0)
        passes += more
        alt = y[:t] + [swapped] + continuation
        alt_answer = task.extract_answer(decode(alt), problem)
        important = not task.equivalent(alt_answer, answer)
        result.mismatches.append(LabelledMismatch(t, y[t], swapped, important, alt_answer, decode(alt),
                                                  regeneration_stop=regen_stop))
        if not important:
            y, unfinished, result.response_stop = alt, regen_stop == "settled", regen_stop
            predicted = predicted[: t + 1] + next_token_predictions(draft, x + y, len(x) + t)[: len(y) - t - 1]
        t += 1
    result.response, result.token_ids = decode(y), y
    result.target_passes = passes
    return result
