"""Algorithm 1: swap each draft token in, let the target finish, see if the answer changes.

For a prompt x the target answers y greedily. The draft, teacher-forced on x + y,
proposes its own token at every position; where it differs from y (a mismatch at t),
the target regenerates from x + y[:t] + draft_t. If the task's answer is unchanged,
the mismatch is unimportant and y becomes the regenerated answer; otherwise it is
important and y stays. The reference is the target's own answer, not the gold one.

Regeneration is most of the cost. The old answer usually re-converges with the new
one, so it is proposed as a draft (`LookupDrafter`) and verified many tokens per
target pass; with exact verification the labels are those of plain regeneration.
On a CPU a verified token still costs over half a decoded one, so an opt-in shortcut
skips verifying what re-joins the old text (`Miner`, "re-join").

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

from autojudge.decoding.drafters import LookupDrafter, nearest_match_end
from autojudge.decoding.engine import generate
from autojudge.decoding.features import logit_features
from autojudge.errors import PromptError
from autojudge.mining.options import MiningOptions
from autojudge.models.backend import CausalLM, ModelPair, keep_shared_prefix
from autojudge.tasks.base import Problem, Task, can_rejoin, compare, settled_check

# Old-response tokens one pass of a fast regeneration verifies (LookupDrafter's window).
REGEN_WINDOW = 32


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
    # With confirmation: whether a second regeneration, through the other pass layout,
    # changed the answer too (None: not asked, or not important the first time).
    confirmed: bool | None = None
    # When the second regeneration overturned the first: the answer the first gave (the
    # label's own alt_answer is then the second's), to read what the runtime's noise did.
    overturned_answer: str | None = None
    # Tokens of the regenerated response (None: settled, nothing regenerated): the
    # lengths a budget is judged by (autojudge.mining.budget).
    regeneration_tokens: int | None = None
    # For a task whose answers a model compares: its probability that the two responses
    # give the same answer (None: no model was asked, e.g. identical answer lines).
    same_probability: float | None = None


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
    first_answer_tokens: int | None = None  # tokens of the target's first answer


def next_token_predictions(model: CausalLM, seq: Sequence[int], first: int) -> list[int]:
    """Greedy next-token predictions after each of seq[first:], reusing the cached prefix."""
    keep = keep_shared_prefix(model, seq, first)
    logits = model.forward(list(seq[keep:])).logits
    return logits[first - keep:].argmax(dim=-1).tolist()


def features_at(model: CausalLM, seq: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(next-token logits before the last token of `seq`, final-norm hidden state after
    reading it), from one pass over what the cache lacks (at least those two tokens)."""
    keep = keep_shared_prefix(model, seq, len(seq) - 2)
    out = model.forward(list(seq[keep:]), n_logits=2)
    return out.logits[-2], out.hidden[-1]


def mine_problem(pair: ModelPair, task: Task, problem: Problem, prompt_ids: list[int],
                 options: MiningOptions = MiningOptions(), *, regen_window: int = REGEN_WINDOW) -> MinedProblem:
    """Label every mismatch Algorithm 1 visits for one problem, as `options` say.

    `options.fast=False` regenerates with plain greedy decoding (the reference the fast
    path is tested against); `options.rejoin` > 0 turns on the re-join shortcut (see
    `Miner`), which can change labels; `options.confirm` keeps a label important only if
    a second regeneration agrees (see `Miner`). `regen_window` is how many old-suffix
    tokens one pass of a fast regeneration verifies.
    """
    return Miner(pair, task, problem, prompt_ids, options, regen_window=regen_window).run()


class Miner:
    """Algorithm 1 on one problem, step by step: `first_answer`, then for each mismatch
    (`next_mismatch`) its `features`, a `regeneration` and a label (`run`).

    State: `y`, the current response, which an unimportant swap replaces by its
    regeneration; `predicted`, the draft's greedy predictions along y, computed lazily
    a chunk at a time up to the next mismatch (after a swap the rest of y changes, so
    predictions far ahead would be thrown away).

    The re-join shortcut (`options.rejoin` = M > 0, off by default; only for tasks that say
    which edits are `interchangeable`): a regeneration that reproduces M tokens of the
    old response in a row is taken to continue as the old response does, when the
    stretches before the re-join, old and new, are interchangeable for the task (GSM8K:
    the same numbers and operators). The label is then that of the old answer, and the
    rest of the old response is not verified again, which is most of a regeneration's
    cost on a CPU. It is a bet that the target, back on the old text, stays on it: it
    can change labels, and `bench-mining` measures how often it does.

    Confirmation (`options.confirm`, off by default): a label found important is regenerated
    a second time through the other pass layout (plain if fast, fast if plain) and
    stays important only if that answer changes too. On a runtime whose rounding
    depends on a pass's shape (llama.cpp), a near-tie can flip one regeneration's
    answer for no reason; confirmed labels are sturdier, at one more regeneration per
    important label.
    """

    PREDICTION_CHUNK = 16  # draft tokens read per pass while looking for the next mismatch

    def __init__(self, pair: ModelPair, task: Task, problem: Problem, prompt_ids: list[int],
                 options: MiningOptions = MiningOptions(), *, regen_window: int = REGEN_WINDOW):
        self.pair, self.task, self.problem, self.options = pair, task, problem, options
        self.target, self.draft, self.stop = pair.target, pair.draft, pair.stop_ids
        self.max_new_tokens, self.window, self.fast = options.budget(task), options.window, options.fast
        self.regen_window = regen_window
        self.rejoin = options.rejoin if can_rejoin(task) else 0
        self.confirm = options.confirm
        settles = settled_check(task)
        self.settles = settles is not None
        self.is_settled = (lambda ids: settles(self.decode(ids), problem)) if settles else (lambda ids: False)
        self.x = list(prompt_ids)
        # The draft reads every response too: on a mixed pair its context may be the shorter.
        self.room = min(self.target.max_context, self.draft.max_context)
        if len(self.x) >= self.room:
            raise PromptError(f"the prompt has {len(self.x)} tokens; the context holds {self.room}")
        self.y: list[int] = []
        self.predicted: list[int] = []
        self.passes = 0

    def decode(self, ids: Sequence[int]) -> str:
        return self.pair.tokenizer.decode(ids, skip_special_tokens=True)

    def run(self) -> MinedProblem:
        y, stop_reason = self.first_answer()
        # A response stopped at its settle point is finished greedily once, at the end.
        unfinished = stop_reason == "settled"
        answer = self.task.extract_answer(self.decode(y), self.problem)
        result = MinedProblem(self.problem.id, answer, self.decode(y), list(y), first_answer_stop=stop_reason,
                              response_stop=stop_reason, first_answer_tokens=len(y))
        if answer is None:  # nothing to compare against: no labels from this problem
            result.target_passes = self.passes
            return result
        t = 0
        while True:
            t = self.next_mismatch(t)
            if t is None:
                if not unfinished:
                    break
                # y stopped at its settle point: finish it, then label the rest (all settled).
                t = len(self.y)
                rest, result.response_stop, more = self.finish(self.y, until_settled=False)
                self.y, self.passes, unfinished = self.y + rest, self.passes + more, False
                continue
            swapped = self.predicted[t]
            self.features(result, t, swapped)
            if self.is_settled(self.y[:t]):
                result.mismatches.append(LabelledMismatch(t, self.y[t], swapped, False, answer,
                                                          self.decode(self.y[:t] + [swapped]), settled=True))
                t += 1
                continue
            alt, regen_stop = self.regeneration(t, swapped)
            alt_answer, verdict = self.judge_answer(alt, answer)
            important = not verdict.same
            confirmed = overturned = None
            if important and self.confirm:
                # Regenerated again through the other pass layout: a change that does not
                # survive it came from the runtime's rounding, not from the swap.
                second, second_stop = self.regeneration(t, swapped, fast=not self.fast)
                second_answer, second_verdict = self.judge_answer(second, answer)
                confirmed = not second_verdict.same
                if not confirmed:
                    overturned = alt_answer
                    important, alt, regen_stop, alt_answer, verdict = (False, second, second_stop, second_answer,
                                                                       second_verdict)
            result.mismatches.append(LabelledMismatch(t, self.y[t], swapped, important, alt_answer,
                                                      self.decode(alt), regeneration_stop=regen_stop,
                                                      confirmed=confirmed, overturned_answer=overturned,
                                                      same_probability=verdict.p_same,
                                                      regeneration_tokens=len(alt)))
            if not important:
                if regen_stop != "rejoined":  # a re-joined response ends as the old one did
                    unfinished, result.response_stop = regen_stop == "settled", regen_stop
                self.y, self.predicted = alt, self.predicted[: t + 1]  # predicted[t] is the swapped token
            t += 1
        result.response, result.token_ids, result.target_passes = self.decode(self.y), self.y, self.passes
        return result

    def judge_answer(self, alt: list[int], answer: str | None):
        """(alt's answer, the verdict on whether it is the current response's answer)."""
        alt_text = self.decode(alt)
        alt_answer = self.task.extract_answer(alt_text, self.problem)
        return alt_answer, compare(self.task, self.problem, alt_text, alt_answer, self.decode(self.y), answer)

    def first_answer(self) -> tuple[list[int], str]:
        """The target's answer: with window 0, the target alone (the fastest on llama.cpp)."""
        self.y, stop_reason, self.passes = self.finish([], draft=self.draft if self.window else None,
                                                       window=self.window)
        return self.y, stop_reason

    def next_mismatch(self, t: int) -> int | None:
        """The first position from t on where the draft's prediction differs from y."""
        y, predicted = self.y, self.predicted
        for i in range(t, len(y)):
            if i >= len(predicted):
                end = min(len(y), len(predicted) + self.PREDICTION_CHUNK)
                predicted += next_token_predictions(self.draft, self.x + y[:end],
                                                    len(self.x) + len(predicted) - 1)[: end - len(predicted)]
            if y[i] != predicted[i]:
                return i
        return None

    def features(self, result: MinedProblem, t: int, swapped: int) -> None:
        """Both models' hidden states after the draft token, and the logit features at it."""
        prefix = self.x + self.y[:t] + [swapped]
        draft_logits, draft_hidden = features_at(self.draft, prefix)
        target_logits, target_hidden = features_at(self.target, prefix)
        result.draft_features.append(draft_hidden)
        result.target_features.append(target_hidden)
        result.logit_features.append(logit_features(target_logits[None], draft_logits[None],
                                                    torch.tensor([swapped]))[0])
        self.passes += 1

    def regeneration(self, t: int, swapped: int, fast: bool | None = None) -> tuple[list[int], str]:
        """The target's answer with the draft token at t: (the whole response, how it stopped).
        `fast` overrides the run's method (the confirming regeneration takes the other)."""
        fast = self.fast if fast is None else fast
        head = self.y[:t] + [swapped]
        rejoined = _Rejoin(self, t) if self.rejoin and fast else None
        continuation, stop_reason, more = self.finish(
            head, drafter=LookupDrafter(self.x + self.y) if fast else None,
            window=self.regen_window if fast else 0, rejoin=rejoined)
        self.passes += more
        alt = head + continuation
        if rejoined is not None and rejoined.at is not None:
            alt, stop_reason = alt + self.y[rejoined.at:], "rejoined"
        return alt, stop_reason

    def finish(self, head: list[int], until_settled: bool = True, rejoin: _Rejoin | None = None,
               **speculation) -> tuple[list[int], str, int]:
        """Greedy continuation of x + head until EOS, the budget, (if asked) a settled
        answer or a re-join: (continuation, how it stopped, target passes)."""
        x, room = self.x, self.room
        budget = min(self.max_new_tokens, room - len(x)) - len(head)
        # A response that filled the context has no room left after a swap at its end.
        if head and head[-1] in self.stop:
            return [], "eos", 0
        if budget <= 0:
            return [], "length" if self.max_new_tokens <= room - len(x) else "context", 0
        settle = self.settles and until_settled
        watch = None
        if settle or rejoin is not None:
            def watch(new: list[int]) -> bool:
                return (settle and self.is_settled(head + new)) or (rejoin is not None and rejoin(head + new))
        out = generate(self.target, x + head, max_new_tokens=budget, stop_ids=self.stop, stop_when=watch,
                       **speculation)
        new, stop_reason = out.token_ids, out.stop_reason
        if stop_reason == "settled" and rejoin is not None and rejoin.at is not None:
            stop_reason = "rejoined"
        elif stop_reason == "settled":  # a cycle may overshoot: end exactly at the settle point
            while len(new) > 1 and self.is_settled(head + new[:-1]):
                new = new[:-1]
        return new, stop_reason, out.stats.target_forwards


class _Rejoin:
    """Watches a regeneration for the re-join shortcut (see `Miner`): called with the
    response so far, true (and `at` set: where the old response goes on) once its last
    M tokens stand in the old response too, after an interchangeable stretch."""

    def __init__(self, miner: Miner, t: int):
        self.miner, self.t, self.at = miner, t, None

    def __call__(self, alt: list[int]) -> bool:
        m, y = self.miner.rejoin, self.miner.y
        if len(alt) - self.t < m + 1:  # the swapped token and M more
            return False
        end = nearest_match_end(y, alt[-m:], limit=len(y), near=len(alt), start=self.t)
        if end is None:
            return False
        old, new = self.miner.decode(y[self.t:end - m]), self.miner.decode(alt[self.t:len(alt) - m])
        if not self.miner.task.interchangeable(old, new):
            return False
        self.at = end
        return True
