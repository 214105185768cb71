"""What an experiment decodes: a mode, on a runtime, with a window.

A method is spelled `[runtime/]mode[/wW][/pP]`, the mode as autojudge.decoding.modes spells it:

    exact                        the run's pair and window (what `autojudge eval` takes)
    llamacpp/exact/w8            the pair on llama.cpp, 8 draft tokens per cycle
    llamacpp/exact/w32/p0.3      up to 32, the draft stopping before a token it gives p < 0.3
    torch+llamacpp/topk:4/w16    a torch target verifying a llama.cpp draft
    torch/assisted               transformers' assisted generation on the same models

The runtime names the target's runtime, then "+" and the draft's when they differ (names
from autojudge.models.runtime.RUNTIMES). Without a runtime, a window or a draft p-min, the run's
own apply, so every `eval` mode is a method of the same name and old records stay valid.

An adapter decodes by another library's loop instead of ours (`assisted`); it is a
method with no policy of ours, compared like any other.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from autojudge.decoding.modes import Mode, parse_mode
from autojudge.decoding.policies import number
from autojudge.evaluation.adapters import ADAPTERS
from autojudge.models.backend import MAX_WINDOW
from autojudge.models.runtime import RUNTIMES

_WINDOW = re.compile(r"w(\d+)")
_P_MIN = re.compile(r"p(0?\.\d+|0|1(\.0*)?)")


@dataclass(frozen=True)
class Method:
    mode: Mode | None  # None for an adapter
    runtime: str | None = None  # "torch", "llamacpp", "torch+llamacpp"; None: the run's pair
    window: int | None = None  # None: the run's window
    adapter: str | None = None  # a key of ADAPTERS
    draft_p_min: float | None = None  # adaptive draft length; None: the run's

    @property
    def name(self) -> str:
        """The one canonical spelling; records and reports are keyed by it."""
        parts = [self.runtime] if self.runtime else []
        parts.append(self.adapter or self.mode.name)
        if self.window is not None:
            parts.append(f"w{self.window}")
        if self.draft_p_min is not None:
            parts.append(f"p{number(self.draft_p_min)}")
        return "/".join(parts)

    def __str__(self) -> str:
        return self.name

    @property
    def lossless(self) -> bool:
        """Target alone and exact decoding: the baselines of every comparison."""
        return self.mode is not None and self.mode.is_lossless

    @property
    def is_target(self) -> bool:
        """The target alone: the baseline every speed ratio divides by."""
        return self.mode is not None and self.mode.is_target

    @property
    def needs_judge(self) -> bool:
        return self.mode is not None and self.mode.needs_judge

    @property
    def uses_draft(self) -> bool:
        return not self.is_target

    @property
    def backends(self) -> tuple[str, str] | None:
        """(target runtime, draft runtime), or None for the run's pair."""
        if self.runtime is None:
            return None
        target, _, draft = self.runtime.partition("+")
        return target, draft or target

    @property
    def target_baseline(self) -> str:
        """The name of the lossless method this one's speed is set against first: the
        target alone on the runtime of this method's target."""
        return Method(parse_mode("target"), self.backends[0] if self.backends else None).name

    @property
    def exact_baseline(self) -> str:
        """The name of exact decoding on this method's runtime, window and draft p-min."""
        return Method(parse_mode("exact"), self.runtime, self.window, draft_p_min=self.draft_p_min).name


@functools.lru_cache(maxsize=1024)
def parse_method(text: str) -> Method:
    """A Method from its name (see the module's table); a clear ValueError otherwise.
    Cached: reports and resumed runs read the same few names once per record."""
    parts = [part.strip() for part in text.strip().split("/")]
    runtime = window = p_min = None
    if len(parts) > 1 and _P_MIN.fullmatch(parts[-1]):
        p_min = float(parts.pop()[1:])
    if len(parts) > 1 and _WINDOW.fullmatch(parts[-1]):
        window = int(parts.pop()[1:])
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"bad method {text!r}: a window is 1 to {MAX_WINDOW} draft tokens")
    if len(parts) == 2:
        runtime = _runtime(parts.pop(0), text)
    if len(parts) != 1 or not parts[0]:
        raise ValueError(f"bad method {text!r}: write [runtime/]mode[/wW][/pP], e.g. llamacpp/exact/w8")
    name = parts[0]
    if name in ADAPTERS:
        needed = ADAPTERS[name].runtime
        if runtime is None or runtime.partition("+")[0] != needed:
            raise ValueError(f"{name!r} is another library's loop on {needed}: write {needed}/{name}")
        if p_min is not None:
            raise ValueError(f"bad method {text!r}: {name} drafts by its own rule, it takes no /pP")
        return Method(None, runtime, window, adapter=name)
    try:
        mode = parse_mode(name)
    except ValueError as exc:
        raise ValueError(f"{exc} (a method is [runtime/]mode[/wW][/pP], the window after a slash: "
                         "llamacpp/exact/w8, torch/topk:4/w16)") from None
    if mode.is_target and (window is not None or p_min is not None):
        raise ValueError(f"bad method {text!r}: the target alone drafts nothing, so it takes no window or p-min")
    return Method(mode, runtime, window, draft_p_min=p_min)


def parse_methods(spec: str | list[str | Method]) -> list[Method]:
    """Methods from a comma-separated string, or a list of names and Methods (those kept
    as they are, parsed already), each named once."""
    items = spec.split(",") if isinstance(spec, str) else spec
    methods = [item if isinstance(item, Method) else parse_method(item) for item in items
               if isinstance(item, Method) or item.strip()]
    names = [m.name for m in methods]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} named more than once")
    return methods


def _runtime(text: str, method: str) -> str:
    names = text.split("+")
    if len(names) > 2 or any(n not in RUNTIMES for n in names):
        raise ValueError(f"bad method {method!r}: the runtime {text!r} is not one of {', '.join(RUNTIMES)}, "
                         "or target+draft of them (e.g. torch+llamacpp)")
    return text if len(names) == 1 or names[0] != names[1] else names[0]
