"""How many tokens to draft each cycle: the count with the most expected tokens per second.

A drafted token pays only if it is accepted often enough to cover what it costs: on a
CPU the 0.5B draft costs 0.4-0.5 of a 1.5B target token, and every token added to the
verification pass costs the target more again. The usual adaptive drafts stop a
proposal early from the draft's own confidence (llama.cpp's draft p-min, transformers'
assistant_confidence_threshold, AdaEDL's entropy bound) or from a trained head (DISCO,
SpecDec++), or grow and shrink the length on full or partial acceptance (transformers'
heuristic num_assistant_tokens); none of them decides not to draft at all, so a draft
that does not pay still costs its first token every cycle. vLLM turns speculation off
under load and sizes it from an online acceptance estimate and the cost of a pass;
this controller does that for one sequence.

Before each cycle it picks k in 0..window maximising

    E[tokens | k] / seconds(k),    E[tokens | k] = 1 + sum_{j=1..k} prod_{i<j} a_i,
    seconds(k) = k draft tokens + one target pass over k + 1 tokens,

a_i being the acceptance of draft token i given that the ones before it were accepted,
estimated online (exponentially forgetting, and drawn toward the rate pooled over all
positions where a position has been seen little). k = 0 is a cycle of the target alone,
so once drafting stops paying, decoding runs at the target's own speed plus this
arithmetic. At zero nothing new is learnt about the draft, so it probes: after
`probe_every` cycles at zero it drafts the best non-zero length once. A probe wholly
accepted is followed by another at once (a draft that has started to agree is learnt
in a few cycles); one that is not doubles the wait (up to `max_probe_every`), which
bounds what probing costs against a draft that never agrees.

The costs are measured as decoding goes (`MeasuredCosts`), or given (`GivenCosts`, e.g.
the cost model's PassCosts from `autojudge costs`). The controller only chooses how
many tokens are drafted: the acceptance policy still decides which are kept, so exact
decoding stays the target's own output and every lossy policy works unchanged.
"""

from __future__ import annotations

from typing import Callable, Protocol

# A target pass over n tokens costs about 1 + SLOPE * (n - 1) one-token passes: the Q4_0
# target on llama.cpp, one thread, reads 4 tokens for 2.1x one (docs/bench/pass-shapes).
# Only a prior: it stands in for pass sizes not yet timed.
PASS_SLOPE = 0.37

# The acceptance assumed before any is seen. A model's draft: 0.8. A lookup's: 0.7, the
# best of 0.3 to 0.9 replayed on 246 GSM8K and HumanEval answers of the target
# (docs/bench/lookup-evidence).
MODEL_PRIOR = 0.8
LOOKUP_PRIOR = 0.7
# A lookup's prior by the length of its matched tail: a proposal after 8 matched tokens
# is copied on far more often than one after 3 (docs/bench/lookup-evidence: its first
# token is accepted 0.56 to 0.81 of the time on GSM8K, 0.64 to 0.97 on HumanEval, and a
# later one more often, given those before it were). Replayed on those 246 answers, the
# priors of this table let HumanEval's answers gain from their long matches from the
# first cycles (1.18x to 1.36x the target alone, at the passes' decoded costs) where one
# prior of 0.7 had to learn each length first; GSM8K stays as it was (0.99x).
LOOKUP_PRIORS = {3: 0.6, 4: 0.7, 5: 0.75, 6: 0.8, 7: 0.8, 8: 0.9}
# A free drafter's probes: after 32 cycles at zero in a context, then 64, ... up to 512.
FREE_PROBE_EVERY, FREE_MAX_PROBE_EVERY = 32, 512
# The chosen lengths a controller keeps for reports and tests: one that lives across many
# requests (autojudge.decoding.modes.decode keeps one per target) must not grow forever.
HISTORY_KEPT = 4096


class Costs(Protocol):
    def draft(self, k: int) -> float:
        """Seconds to draft k tokens (0 for k == 0)."""

    def target(self, n: int) -> float:
        """Seconds of one target pass over n tokens."""

    def known(self) -> bool:
        """Whether there is enough to decide on (else the controller drafts to find out)."""

    def timed(self, n: int) -> bool:
        """Whether a target pass of n tokens has been timed (or is given)."""

    def observe(self, drafted: int, draft_seconds: float, target_tokens: int, target_seconds: float) -> None:
        """One cycle's timings."""


class GivenCosts:
    """Fixed costs: `target(n)` seconds of a target pass over n tokens, `draft(n)` of a
    draft pass over n tokens (one token per pass while drafting), None for free drafts
    (a lookup). costmodel.PassCosts objects fit both."""

    def __init__(self, target: Callable[[int], float], draft: Callable[[int], float] | None = None):
        self._target, self._draft = target, draft

    def draft(self, k: int) -> float:
        return 0.0 if k == 0 or self._draft is None else k * self._draft(1)

    def target(self, n: int) -> float:
        return self._target(n)

    def known(self) -> bool:
        return True

    def timed(self, n: int) -> bool:
        return True

    def observe(self, drafted, draft_seconds, target_tokens, target_seconds) -> None:
        pass


class MeasuredCosts:
    """Costs timed on the running decode: an exponentially weighted mean of the seconds
    per drafted token and of each target pass size seen. A size not seen yet is scaled
    from the nearest seen one by `shape` (the runtime's relative pass costs, where it
    knows them: CausalLM.pass_shape), else interpolated between the nearest seen ones,
    or scaled from one by PASS_SLOPE.

    The shape matters on llama.cpp, whose CPU passes are far from linear in their length
    (docs/bench/pass-shapes, Q4_0, one thread: 2 tokens cost 1.9 one-token passes, 4 cost
    2.1, 3 cost 2.8): a straight line through the sizes seen would first try the dearest
    sizes and then judge every draft by them."""

    def __init__(self, weight: float = 0.2, slope: float = PASS_SLOPE, shape: dict[int, float] | None = None):
        self.weight, self.slope = weight, slope
        self.shape = dict(shape) if shape else None
        self.per_draft_token: float | None = None
        self.passes: dict[int, float] = {}

    def _mean(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.weight * (new - old)

    def observe(self, drafted, draft_seconds, target_tokens, target_seconds) -> None:
        if draft_seconds > 0 or drafted:
            # A proposal cut to nothing (p-min, no lookup match) still spent its time.
            self.per_draft_token = self._mean(self.per_draft_token, draft_seconds / max(drafted, 1))
        self.passes[target_tokens] = self._mean(self.passes.get(target_tokens), target_seconds)

    def known(self) -> bool:
        return self.per_draft_token is not None and bool(self.passes)

    def timed(self, n: int) -> bool:
        return n in self.passes

    def draft(self, k: int) -> float:
        return 0.0 if k == 0 else k * (self.per_draft_token or 0.0)

    def target(self, n: int) -> float:
        if n in self.passes:
            return self.passes[n]
        if self.shape is not None:
            seen = min(self.passes, key=lambda s: (abs(s - n), s))
            return self.passes[seen] * shape_at(self.shape, n) / shape_at(self.shape, seen)
        below = max((s for s in self.passes if s < n), default=None)
        above = min((s for s in self.passes if s > n), default=None)
        if below is not None and above is not None:
            share = (n - below) / (above - below)
            return self.passes[below] + share * (self.passes[above] - self.passes[below])
        seen = below if below is not None else above
        return self.passes[seen] * (1 + self.slope * (n - 1)) / (1 + self.slope * (seen - 1))


def shape_at(shape: dict[int, float], n: int) -> float:
    """A relative pass cost at n tokens: the shape's own point, else linear between its
    nearest points (or along its last two beyond them)."""
    if n in shape:
        return shape[n]
    sizes = sorted(shape)
    below = [s for s in sizes if s < n]
    above = [s for s in sizes if s > n]
    if below and above:
        lo, hi = below[-1], above[0]
    elif len(sizes) > 1:
        lo, hi = (sizes[-2], sizes[-1]) if below else (sizes[0], sizes[1])
    else:
        return shape[sizes[0]] * n / sizes[0]
    return shape[lo] + (n - lo) * (shape[hi] - shape[lo]) / (hi - lo)


class DraftLengthController:
    """Chooses each cycle's draft length (see the module's docstring).

    `prior`: the acceptance assumed before any is seen; `memory`: the weight an old
    observation keeps per new one at the same position (0.9: about the last ten count);
    `history`: the length chosen in each cycle (the last HISTORY_KEPT or more), for
    reports and tests.

    A free drafter (a lookup) proposes before the choice, and says how good its evidence
    is (`context`: the length of the matched tail). Acceptance is then learnt apart for
    each context, since an 8-token match is copied on far more often than a 3-token one;
    a model drafter has one context. `priors` gives a context its own prior (else `prior`).

    One controller may serve decode after decode: what it has learnt (acceptance, pass
    costs) carries over, so a new request does not pay to learn it again.
    """

    def __init__(self, window: int, costs: Costs | None = None, *, prior: float = MODEL_PRIOR, memory: float = 0.9,
                 shrink: float = 2.0, probe_every: int = 8, max_probe_every: int = 128, free: bool = False,
                 priors: dict[int, float] | None = None):
        if window < 1:
            raise ValueError(f"window {window}: the controller needs at least one draft token to choose from")
        self.window = window
        self.costs = costs if costs is not None else MeasuredCosts()
        self.prior, self.memory, self.shrink = prior, memory, shrink
        self.priors = dict(priors or {})
        self.base_probe_every, self.max_probe_every = probe_every, max_probe_every
        self.free = free  # the drafter proposes for nothing (a lookup)
        if free:
            # A lookup's context that has stopped paying rarely starts again within one
            # answer, and each probe costs a pass of two or more tokens (about twice a
            # one-token pass on llama.cpp): probe rarely, enough to undo a mistimed pass.
            self.base_probe_every, self.max_probe_every = FREE_PROBE_EVERY, FREE_MAX_PROBE_EVERY
        self.contexts: dict[int, Acceptance] = {}
        self._context = 0
        self.history: list[int] = []

    @classmethod
    def timing(cls, window: int, *, free: bool, shape: dict[int, float] | None = None) -> "DraftLengthController":
        """A controller that times the passes itself (MeasuredCosts, priced by the runtime's
        pass `shape` where known), with the prior of its kind of drafter: a free draft's
        per matched length, lower than a model's, whose tokens the target agrees with more
        often (docs/bench/lookup-evidence)."""
        return cls(window, MeasuredCosts(shape=shape), prior=LOOKUP_PRIOR if free else MODEL_PRIOR,
                   priors=LOOKUP_PRIORS if free else None, free=free)

    def _state(self, context: int) -> "Acceptance":
        if context not in self.contexts:
            self.contexts[context] = Acceptance(self.window, self.base_probe_every)
        return self.contexts[context]

    def acceptance(self, context: int = 0) -> list[float]:
        """a_i for every position: its own rate, drawn toward the pooled one where seen little."""
        state = self._state(context)
        seen, accepted = sum(state.seen), sum(state.accepted)
        prior = self.priors.get(context, self.prior)
        pooled = (accepted + self.shrink * prior) / (seen + self.shrink)
        return [(a + self.shrink * pooled) / (s + self.shrink) for a, s in zip(state.accepted, state.seen)]

    def rates(self, context: int = 0, limit: int | None = None) -> list[float]:
        """Expected tokens per second for every draft length 0..limit (default: the window)."""
        a, costs = self.acceptance(context), self.costs
        rates, expected, survive = [], 1.0, 1.0
        for k in range(min(self.window, self.window if limit is None else limit) + 1):
            if k:
                survive *= a[k - 1]
                expected += survive
            rates.append(expected / max(costs.draft(k) + costs.target(k + 1), 1e-12))
        return rates

    def choose(self, context: int = 0, limit: int | None = None) -> int:
        """The draft length of the next cycle; `limit`: at most this many (what a free
        drafter has proposed), `context`: the proposal's evidence (see the class)."""
        self._context = context
        k = self._choose(self._state(context), limit if limit is not None else self.window)
        self.history.append(k)
        if len(self.history) > 2 * HISTORY_KEPT:
            del self.history[:-HISTORY_KEPT]
        return k

    def _choose(self, state: "Acceptance", limit: int) -> int:
        if limit < 1:
            return 0
        if self.free and not self.costs.timed(1):
            # A free draft teaches nothing about its cost, and a first guess at the window
            # costs a long pass: time the target alone first, then size passes from it.
            return 0
        if not self.history or not self.costs.known():  # nothing seen yet: draft all, to learn the most
            return limit
        if not self.costs.timed(1):  # a cycle of the target alone: the baseline, timed for free
            return 0
        rates = self.rates(self._context, limit)
        best = max(range(len(rates)), key=rates.__getitem__)
        if best > 0:
            state.idle, state.probe_every = 0, self.base_probe_every
            return best
        if not state.probe_again:
            state.idle += 1
            if state.idle < state.probe_every:
                return 0
            state.idle, state.probe_every = 0, min(2 * state.probe_every, self.max_probe_every)
        state.probing, state.probe_again = True, False
        return max(range(1, len(rates)), key=rates.__getitem__)

    def observe(self, drafted: int, accepted: int, draft_seconds: float, target_seconds: float) -> None:
        """One cycle: `drafted` tokens proposed, `accepted` of them kept, and its timings.

        Position i < accepted was accepted; position `accepted`, when drafted, rejected;
        later ones were never judged (their predecessor was rejected), so they teach nothing.
        """
        state = self._state(self._context)
        if state.probing:
            state.probing = False
            if drafted and accepted == drafted:
                state.probe_again, state.probe_every = True, self.base_probe_every
        for i in range(min(accepted + 1, drafted)):
            state.accepted[i] = self.memory * state.accepted[i] + (i < accepted)
            state.seen[i] = self.memory * state.seen[i] + 1
        self.costs.observe(drafted, draft_seconds, drafted + 1, target_seconds)


class Acceptance:
    """What the controller has learnt in one context: forgetting counts of acceptances at
    each draft position, and of the times it was drafted with all before it accepted;
    and its probing state (cycles at zero since the last probe, the current wait)."""

    def __init__(self, window: int, probe_every: int):
        self.accepted = [0.0] * window
        self.seen = [0.0] * window
        self.idle, self.probe_every = 0, probe_every
        self.probing = self.probe_again = False
