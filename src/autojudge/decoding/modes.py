"""Decoding modes: a typed `Mode`, parsed once from its name, and the policy registry.

    target              the target alone, greedy
    exact               speculative decoding, lossless
    topk:K              accept a draft token among the target's K most likely
    fly[:H[:L]]         FLy: accept a mismatch where the entropy of the target's top 3 is
                        above H (0.3) and the next L draft tokens (6) match
    typical[:E[:A]]     typical acceptance: p_target > min(E, A * exp(-entropy)) (0.09, 0.3)
    judge:T[:L]         accept a mismatch when the judge's P(important) < T; with L, only
                        if the next L draft tokens then match (lookahead)
    judge@R[:L]         the same, with the threshold whose validation recall of important
                        mismatches is R (e.g. judge@0.9)
    judge-or-fly:T[:H[:L]]  keep what the judge keeps (P(important) < T) or what FLy keeps
                        (entropy above H, the next L draft tokens matching); judge-or-fly@R too

Arguments are separated by ":" so that a list of modes can be separated by commas.

Every policy is registered below, so the registry is complete once this module is
imported. The judge's policy takes the trained judge as an argument (any object with its
`groups` and `prob_important`), so decoding imports nothing of the stage that trains it.
Adding a policy is one class, one `register_policy` call and its tests.

A mode is parsed once, where it comes in (a command's flag, a request's field, an
evaluation's list), and travels as a `Mode` from there; code asks the Mode
(`is_target`, `is_lossless`, `needs_judge`, `samples`) rather than comparing names.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

from autojudge.decoding import defaults
from autojudge.decoding.controller import DraftLengthController
from autojudge.decoding.drafters import LookupDrafter
from autojudge.decoding.engine import Generation, generate
from autojudge.decoding.policies import (
    AcceptancePolicy,
    Exact,
    FLy,
    JudgeOrFLy,
    JudgePolicy,
    TopK,
    Typical,
    number,
    spelled,
)
from autojudge.decoding.sampling import Sampling
from autojudge.models.backend import MAX_WINDOW, ModelPair

# New tokens per generation when the caller names no budget. Tasks name their own
# (autojudge.tasks.base.task_budget), which every command that runs a task passes in.
DEFAULT_BUDGET = 512


@dataclass(frozen=True)
class PolicySpec:
    name: str
    params: tuple[str, ...]  # positional arguments, in order
    defaults: tuple  # one per parameter; None: required
    build: Callable[..., AcceptancePolicy]  # build(*values) or, with needs_judge, build(judge, *values)
    needs_judge: bool = False  # "@R" then names the first value by recall, from the judge's table
    label: str = ""  # the family's name in tables and plots
    lossless: bool = False  # emits the target's own greedy tokens: a baseline, never an operating point
    samples: bool = False  # has a sampled form (temperature > 0), verified by speculative sampling


POLICIES: dict[str, PolicySpec] = {}


def register_policy(spec: PolicySpec) -> None:
    POLICIES[spec.name] = spec


register_policy(PolicySpec("exact", (), (), Exact, label="exact speculative decoding", lossless=True, samples=True))
register_policy(PolicySpec("topk", ("k",), (None,), lambda k: TopK(int(k)), label="Top-K"))
register_policy(PolicySpec("fly", ("entropy", "lookahead"), (0.3, 6), FLy, label="FLy"))
register_policy(PolicySpec("typical", ("epsilon", "alpha"), (0.09, 0.3), Typical, label="typical acceptance"))
register_policy(PolicySpec("judge", ("threshold", "lookahead"), (None, 0), JudgePolicy, needs_judge=True,
                           label="judge", samples=True))
register_policy(PolicySpec("judge-or-fly", ("threshold", "entropy", "lookahead"), (None, 0.3, 6), JudgeOrFLy,
                           needs_judge=True, label="judge or FLy"))

TARGET = "target"  # the target alone: a mode with no policy, so no entry of POLICIES


@dataclass(frozen=True)
class Mode:
    """One way to decode: the target alone, or a registered policy with its arguments."""

    policy: str  # TARGET or a key of POLICIES
    values: tuple[float, ...] = ()  # every parameter, defaults filled in
    by_recall: bool = False  # judge@R: values[0] is a recall, turned into a threshold by the judge

    @property
    def spec(self) -> PolicySpec | None:
        return POLICIES.get(self.policy)

    @property
    def is_target(self) -> bool:
        """The target alone: no draft, no window, no policy."""
        return self.policy == TARGET

    @property
    def is_lossless(self) -> bool:
        """Target alone or exact decoding: the baselines every lossy mode is set against."""
        return self.is_target or self.spec.lossless

    @property
    def needs_judge(self) -> bool:
        return self.spec is not None and self.spec.needs_judge

    @property
    def samples(self) -> bool:
        """Decodes with sampling (temperature > 0) too: the target alone, exact and judge modes."""
        return self.is_target or self.spec.samples

    @property
    def name(self) -> str:
        """The one canonical spelling, as the user writes it (records and reports are keyed by it)."""
        if self.is_target:
            return TARGET
        return spelled(self.policy, self.values, self.spec.defaults, "@" if self.by_recall else ":")

    def __str__(self) -> str:
        return self.name

    def shown(self, judge=None) -> str:
        """The name as written, with the threshold beside a recall once a judge gives it:
        "judge@0.95 (T=0.155)"."""
        return self.name + self.threshold_note(self.threshold(judge) if judge is not None else None)

    def threshold_note(self, threshold: float | None) -> str:
        """" (T=0.155)" beside a mode named by recall, the threshold it ran at; "" beside any
        other mode, whose name says all."""
        return f" (T={threshold:.3g})" if self.by_recall and threshold is not None else ""

    def threshold(self, judge) -> float | None:
        """The P(important) threshold a judge mode runs at with `judge`; None for other modes."""
        return self.with_threshold(judge).values[0] if self.needs_judge else None

    def with_threshold(self, judge) -> Mode:
        """judge@R[:L] as judge:T[:L], T the threshold `judge` gives recall R; any other mode as it is."""
        if not self.by_recall:
            return self
        return Mode(self.policy, (judge.threshold_for_recall(self.values[0]), *self.values[1:]))

    def policy_for(self, judge=None) -> AcceptancePolicy:
        if self.is_target:
            raise ValueError("the target alone has no acceptance policy")
        spec, values = self.spec, self.values
        if not spec.needs_judge:
            return spec.build(*values)
        if judge is None:
            raise ValueError(f"mode {self.name} needs a judge")
        return spec.build(judge, *self.with_threshold(judge).values)


def parse_mode(text: str) -> Mode:
    """A Mode from its name (see the module's table); a clear ValueError otherwise."""
    text = text.strip()
    if text == TARGET:
        return Mode(TARGET)
    cut = min((i for i in (text.find(":"), text.find("@")) if i >= 0), default=len(text))
    name, sep, rest = text[:cut], text[cut:cut + 1], text[cut + 1:]
    spec = POLICIES.get(name)
    if spec is None:
        known = ", ".join([TARGET, *POLICIES])
        raise ValueError(f"unknown mode {text!r}; choose one of: {known}")
    if sep == "@" and not spec.needs_judge:
        raise ValueError(f"bad mode {text!r}: only judge modes name a recall with @")
    try:
        given = [_value(v) for v in rest.split(":")] if rest else []
    except ValueError:
        raise ValueError(f"bad mode {text!r}: its arguments must be numbers") from None
    if len(given) > len(spec.params):
        raise ValueError(f"bad mode {text!r}: {name} takes {len(spec.params)} argument(s) "
                         f"({', '.join(spec.params) or 'none'})")
    values = tuple(given) + spec.defaults[len(given):]
    if None in values:
        missing = spec.params[values.index(None)]
        raise ValueError(f"bad mode {text!r}: write {name}:{missing.upper()} (its {missing} has no default)")
    if spec.needs_judge:
        values = (float(values[0]), *values[1:])  # a threshold or recall: one spelling, "1.0"
    if spec.needs_judge and not 0.0 <= values[0] <= 1.0:
        raise ValueError(f"bad mode {text!r}: the threshold or recall must lie in [0, 1]")
    mode = Mode(name, values, sep == "@")
    if not spec.needs_judge:
        mode.policy_for()  # the policy checks its own arguments (K >= 1 and the like)
    return mode


def _value(text: str) -> int | float:
    # "4" stays an int and "1.0" a float, so that a mode is spelled back as it was written.
    text = text.strip()
    return int(text) if text.lstrip("+-").isdigit() else float(text)


def judge_mode(threshold: float | None = None, recall: float | None = None) -> Mode:
    """The judge's mode from the commands' --threshold and --recall: judge:T for a
    threshold, judge@R for a recall, and the measured best, defaults.JUDGE_MODE, when
    neither is given."""
    if threshold is not None:
        return parse_mode(f"judge:{number(float(threshold))}")
    if recall is not None:
        return parse_mode(f"judge@{number(float(recall))}")
    return parse_mode(defaults.JUDGE_MODE)


@dataclass(frozen=True)
class DecodingOptions:
    """The numbers a decoding mode runs with, the same for every prompt of a run.

    A library call gets what it asks for: plain fixed windows unless told otherwise. The
    commands (generate, eval, serve, demo) start from the measured defaults instead,
    autojudge.decoding.defaults."""

    window: int = 8
    """Draft tokens proposed per cycle, 1 to MAX_WINDOW; the target alone ignores it."""

    max_new_tokens: int = DEFAULT_BUDGET
    """The budget: a generation stops after this many new tokens (stop reason "length")."""

    draft_p_min: float = 0.0
    """Adaptive draft length: the draft stops proposing before a token it gives a
    probability below this; 0 drafts the whole window every cycle."""

    draft_length: str = "fixed"
    """"fixed": up to `window` draft tokens every cycle; "adaptive": the controller
    (autojudge.decoding.controller) chooses each cycle's count, zero included; "auto":
    adaptive for a lookup, fixed for a model (autojudge.decoding.defaults.resolve)."""

    drafter: str = "model"
    """"model": the pair's draft model proposes; "lookup": n-grams of the prompt and the
    text so far, no draft model (policies reading the draft's states are refused);
    "auto": a lookup for exact greedy decoding on a CPU, else the model."""

    def __post_init__(self):
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window {self.window}: 1 to {MAX_WINDOW} draft tokens per cycle")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens {self.max_new_tokens}: at least 1")
        if not 0.0 <= self.draft_p_min <= 1.0:
            raise ValueError(f"draft_p_min {self.draft_p_min}: a probability, 0 to 1")
        if self.draft_length not in defaults.DRAFT_LENGTHS:
            raise ValueError(f"draft_length {self.draft_length!r}: one of {', '.join(defaults.DRAFT_LENGTHS)}")
        if self.drafter not in defaults.DRAFTERS:
            raise ValueError(f"drafter {self.drafter!r}: one of {', '.join(defaults.DRAFTERS)}")


def decode(pair: ModelPair, prompt_ids: Sequence[int], mode: str | Mode = "exact",
           options: DecodingOptions = DecodingOptions(), *, judge=None, sampling: Sampling | None = None,
           stop_when=None) -> Generation:
    """Decode in `mode` with `options`; greedy, or sampled with `sampling` (exact and judge
    modes); `stop_when(new_tokens)` may end it early (stop reason "settled")."""
    mode = parse_mode(mode) if isinstance(mode, str) else mode
    if mode.is_target:
        return generate(pair.target, prompt_ids, max_new_tokens=options.max_new_tokens, stop_ids=pair.stop_ids,
                        sampling=sampling, stop_when=stop_when)
    policy = mode.policy_for(judge)
    if getattr(policy, "judge", None) is not None:  # it reads the target's features: from its layer?
        policy.judge.check_reads(pair.target)
    drafter_name, draft_length = resolved_drafter(pair, mode, options, sampling)
    # A lookup needs no draft model: one loaded beside it is left alone.
    draft, drafter = (None, None) if drafter_name == "lookup" else (pair.draft, None)
    if drafter_name == "lookup":
        drafter = LookupDrafter(ngram=defaults.LOOKUP_NGRAM, min_ngram=defaults.LOOKUP_MIN_NGRAM,
                                adapt_length=draft_length == "fixed")
    controller = draft_length
    if draft_length == "adaptive":
        controller = learnt_controller(pair.target, (drafter_name, options.window, options.draft_p_min, policy.name),
                                       options.window, free=drafter_name == "lookup")
    return generate(pair.target, prompt_ids, draft=draft, drafter=drafter, policy=policy, window=options.window,
                    max_new_tokens=options.max_new_tokens, stop_ids=pair.stop_ids,
                    draft_p_min=options.draft_p_min, sampling=sampling, stop_when=stop_when,
                    draft_length=controller)


# What each target's draft-length controllers have learnt (acceptance by position and
# matched length, the passes' costs), kept from one decode to the next: a server, an
# eval or a bench decodes request after request on one target, and a fresh controller
# would pay to learn the same again each time (replayed on 246 answers of the target at
# its decoded pass costs, docs/bench/lookup-evidence: GSM8K 0.99x to 1.01x the target
# alone, HumanEval 1.36x to 1.38x). One per drafter, window, p-min and policy, since
# each accepts differently; held weakly, so it goes with its target.
_LEARNT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def learnt_controller(target, key: tuple, window: int, *, free: bool) -> DraftLengthController:
    """The controller `target` has used for `key` so far, or a new one."""
    controllers = _LEARNT.setdefault(target, {})
    if key not in controllers:
        controllers[key] = DraftLengthController.timing(window, free=free, shape=getattr(target, "pass_shape", None))
    return controllers[key]


def resolved_drafter(pair: ModelPair, mode: Mode, options: DecodingOptions,
                     sampling: Sampling | None = None) -> tuple[str, str]:
    """The drafter ("model" or "lookup") and draft length ("fixed" or "adaptive") that
    `options` stand for with this pair and mode ("auto": defaults.resolve)."""
    on_cpu = pair.target.describe().get("device", "cpu") == "cpu"
    exact_greedy = not mode.is_target and mode.spec.lossless and sampling is None
    return defaults.resolve(options.drafter, options.draft_length, exact_greedy=exact_greedy, on_cpu=on_cpu)
