"""How Algorithm 1 runs on one problem: the options every mining function takes as one value.

Run-level choices (which problems, how many side by side, where the run is written,
the Ray workers) are arguments of the run functions, not options: they do not change
a problem's labels. Frozen and plain, so that it pickles to Ray workers; no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autojudge.errors import AutojudgeError
from autojudge.tasks.base import task_budget


@dataclass(frozen=True)
class MiningOptions:
    max_new_tokens: int | None = None
    """New tokens per answer, first answers and regenerations alike; None: the task's
    budget (`autojudge.tasks.base.task_budget`), chosen so that answers end by themselves."""

    window: int = 4
    """Draft window of the target's first answer (speculative decoding, exact); 0: the
    target alone (the fastest on llama.cpp)."""

    fast: bool = True
    """Regenerate with the old response proposed as a draft and verified many tokens per
    pass (`LookupDrafter`); False: plain greedy decoding, the slow reference. Exact
    arithmetic gives both the same labels."""

    rejoin: int = 0
    """The re-join shortcut (fast regeneration only; a task that says which edits are
    `interchangeable`): a regeneration that reproduces this many tokens of the old
    response in a row is taken to go on as it does. 0: off. Can change labels."""

    confirm: bool = False
    """Keep a label important only if a second regeneration, through the other pass
    layout (plain if fast, fast if plain), changes the answer too."""

    @property
    def regeneration(self) -> str:
        """"plain", "fast", "fast+rejoin:M", "...+confirm": the method's name in meta.json
        and in bench-mining (`from_method` reads it back)."""
        return (("fast" if self.fast else "plain") + (f"+rejoin:{self.rejoin}" if self.rejoin else "")
                + ("+confirm" if self.confirm else ""))

    def budget(self, task) -> int:
        """`max_new_tokens`, or the task's budget when it is None."""
        return self.max_new_tokens or task_budget(task)

    def resolved(self, task) -> MiningOptions:
        """These options with the budget written out for `task`."""
        return replace(self, max_new_tokens=self.budget(task))

    @classmethod
    def from_method(cls, method: str, **fields) -> MiningOptions:
        """Options for a regeneration method's name: "plain", "fast", "fast+rejoin:M"
        (M >= 1), each with "+confirm" or not; `fields` give the others (budget, window)."""
        base, *extras = method.split("+")
        confirm = "confirm" in extras
        rest = [e for e in extras if e != "confirm"]
        rejoin = rest[0].removeprefix("rejoin:") if len(rest) == 1 and rest[0].startswith("rejoin:") else None
        if base not in ("plain", "fast") or extras.count("confirm") > 1 or len(rest) > 1 or \
                (rest and (base != "fast" or rejoin is None or not rejoin.isdigit() or int(rejoin) < 1)):
            raise AutojudgeError(f"unknown regeneration method {method!r}; write plain, fast or fast+rejoin:M, "
                                 "each with +confirm or not")
        return cls(fast=base == "fast", rejoin=int(rejoin) if rejoin else 0, confirm=confirm, **fields)

    def with_method(self, method: str) -> MiningOptions:
        """These options (budget, window) with the regeneration method named `method`."""
        return MiningOptions.from_method(method, max_new_tokens=self.max_new_tokens, window=self.window)
