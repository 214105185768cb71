"""One summary row per decoding mode, built from an evaluation's records.

Modes are compared only on the problems that all of them finished. Speed ratios are
against target-only and exact speculative decoding measured in the same run (one call
of run_eval, so one machine), on the same problems: tokens/s of two machines never
meet in one ratio, a problem whose baseline was measured in another run is left out
of that ratio, with the count shown, and runs weigh by their problems, not their
seconds (a slow machine's run counts as much per problem as a fast one's). A method
on a named runtime is set against the baselines of that runtime (and, for exact, of
its window): `Method.baseline`. Absolute tokens/s are given per machine (`Machines`),
never pooled across machines.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from autojudge.decoding.engine import is_cut
from autojudge.evaluation.methods import Method, parse_method
from autojudge.evaluation.statistics import (
    paired_accuracy_difference,
    paired_speed_ratio,
    per,
    ratio,
    single_stream,
    tokens_per_second_by_run,
    wilson,
)


@dataclass(frozen=True)
class Machines:
    """Which machine timed each run, where that is known: the host runs.jsonl names for
    the run, or, in a report of which a single run named no host, that run (one run is
    one machine). Several runs that named no host could be any machines, and records
    from before runs were named any number of them: their tokens/s are shown nowhere."""
    of_run: dict[str, str]  # {run: its machine}
    unknown_runs: int  # the named runs whose machine is not known
    unnamed_records: bool = False  # whether some records come from before runs were named

    @classmethod
    def of(cls, records: list[dict], hosts: dict[str, str] | None = None) -> Machines:
        """The machines of `records`' runs, from `hosts` ({run: host}, runs.jsonl's)."""
        hosts = hosts or {}
        runs = list(dict.fromkeys(r.get("run") for r in records))
        unknown = [run for run in runs if run not in hosts and run is not None]
        of_run = {run: hosts[run] for run in runs if run in hosts}
        if len(unknown) == 1 and None not in runs:
            of_run[unknown[0]] = f"run {unknown[0]} (host not recorded)"
            unknown = []
        return cls(of_run, len(unknown), None in runs)

    def names(self) -> list[str]:
        """Each machine once, in the order the records first name it."""
        return list(dict.fromkeys(self.of_run.values()))


@dataclass(frozen=True)
class MachineSpeed:
    """A mode's single-stream tokens/s on one machine, over the problems it timed there."""
    machine: str
    problems: int
    tokens_per_second: float


@dataclass(frozen=True)
class PairedWithExact:
    """A mode's answers against exact decoding's on the same problems (all None for exact itself)."""
    accuracy_difference: float | None  # this mode's accuracy minus exact's
    ci_low: float | None  # the paired 95% interval of that difference
    ci_high: float | None
    answer_differs: float | None  # the share of problems whose answer is not exact's


@dataclass(frozen=True)
class BaselineRatios:
    """A mode against one lossless baseline (target alone or exact decoding)."""
    speed: float | None  # tokens/s over the baseline's, on the problems it was measured on in the same run
    speed_problems: int  # how many problems that is
    # Tokens per cycle over the baseline's: they do not depend on the machine, so every problem counts.
    accepted: float | None


@dataclass(frozen=True)
class ModeSummary:
    mode: str
    problems: int
    accuracy: float | None
    ci_low: float  # Wilson 95% interval of the accuracy
    ci_high: float
    mean_accepted: float | None  # tokens per cycle, that is per target pass
    # Single-stream tokens/s, machine by machine: records batched or stalled, and those of
    # runs whose machine is not known, are left out.
    speed_by_machine: tuple[MachineSpeed, ...]
    accepted_mismatches_per_100_tokens: float | None
    mean_length: float | None
    # Stopped at the budget: such an "answer" is whatever stood last at the cut.
    cut_fraction: float | None
    threshold: float | None  # judge@R: the threshold the judge's table gave for recall R
    runs: str  # the runs that measured this mode (records from before runs were named: "unnamed")
    # The share of problems decoded to the very tokens of the target alone (same runtime):
    # 1.0 for a lossless mode in exact arithmetic; what is missing is the runtime's rounding.
    identical_to_target: float | None
    paired_with_exact: PairedWithExact | None  # None when exact decoding is not among the modes
    against_target: BaselineRatios
    against_exact: BaselineRatios

    @property
    def method(self) -> Method:
        return parse_method(self.mode)

    @property
    def lossless(self) -> bool:
        """Target alone or exact decoding: a baseline, never an operating point."""
        return self.method.lossless

    @property
    def shown(self) -> str:
        """The method as written, with the threshold beside a recall: "judge@0.95 (T=0.155)"."""
        mode = self.method.mode
        return self.mode + (mode.threshold_note(self.threshold) if mode is not None else "")

    @property
    def tokens_per_second(self) -> float | None:
        """Single-stream tokens/s when one machine timed every timed record of the mode;
        None when none or several did (figures of two machines do not average)."""
        return self.speed_by_machine[0].tokens_per_second if len(self.speed_by_machine) == 1 else None

    @property
    def accuracy_vs_exact(self) -> float | None:
        return self.paired_with_exact.accuracy_difference if self.paired_with_exact else None

    def as_dict(self) -> dict:
        """The row as summary.json and summary.csv write it: flat, the keys in this order,
        and the keys paired with exact only when exact decoding was among the modes."""
        row = {name: getattr(self, name) for name in _SCALAR_FIELDS}
        for speed in self.speed_by_machine:
            row[f"tokens_per_second on {speed.machine}"] = speed.tokens_per_second
            row[f"timed_problems on {speed.machine}"] = speed.problems
        if self.paired_with_exact is not None:
            paired = self.paired_with_exact
            row.update(accuracy_vs_exact=paired.accuracy_difference, vs_exact_ci_low=paired.ci_low,
                       vs_exact_ci_high=paired.ci_high, answer_differs_from_exact=paired.answer_differs)
        target, exact = self.against_target, self.against_exact
        row.update(speed_vs_target=target.speed, speed_vs_target_problems=target.speed_problems,
                   speed_vs_exact=exact.speed, speed_vs_exact_problems=exact.speed_problems,
                   accepted_vs_target=target.accepted, accepted_vs_exact=exact.accepted)
        return row


_NESTED_FIELDS = ("speed_by_machine", "paired_with_exact", "against_target", "against_exact")
_SCALAR_FIELDS = tuple(f.name for f in fields(ModeSummary) if f.name not in _NESTED_FIELDS)


def summarize(records: list[dict], modes: list[str], machines: Machines | None = None) -> list[ModeSummary]:
    """A row per mode; `machines` (default: from the records' runs alone, no host known)
    say which records' tokens/s may stand together."""
    machines = machines or Machines.of(records)
    # The latest record of a (mode, problem) stands for it; earlier ones stay available
    # as baselines of their own run.
    records = [r for r in records if r["mode"] in modes]
    by_problem: dict[int, dict[str, dict]] = {}
    for (mode, problem), record in latest_records(records).items():
        by_problem.setdefault(problem, {})[mode] = record
    measured = {(r["mode"], r["problem"], r.get("run")): r for r in records}
    complete = [runs for runs in by_problem.values() if all(m in runs for m in modes)]
    runs_of = {mode: [runs[mode] for runs in complete] for mode in modes}
    mean_accepted = {mode: tokens_per_cycle(runs) for mode, runs in runs_of.items()}
    return [_summary(mode, runs_of, measured, mean_accepted, machines) for mode in modes]


@dataclass(frozen=True)
class HeadToHead:
    """One judge mode, the current judge against an earlier one, on the problems both
    decoded: did retraining change the answers, and how many tokens each cycle keeps."""
    mode: str
    problems: int
    accuracy: float | None  # the current judge's
    earlier_accuracy: float | None
    difference: PairedWithExact  # current minus earlier, paired; answer_differs between the two
    mean_accepted: float | None
    earlier_mean_accepted: float | None


@dataclass(frozen=True)
class EarlierJudge:
    """The comparison as an earlier judge (since retrained) left it: its judge-mode
    records beside every other mode's, on the problems that all of them finished; and,
    mode by mode, the current judge against it on the problems both decoded."""
    judge: str  # the earlier judge's fingerprint
    rows: list[ModeSummary]
    head_to_head: list[HeadToHead] = ()

    @property
    def problems(self) -> int:
        return self.rows[0].problems


def earlier_judges(records: list[dict], modes: list[str], judged_by: dict[str, list[dict]],
                   machines: Machines | None = None) -> list[EarlierJudge]:
    """One EarlierJudge per fingerprint in `judged_by` ({judge: its judge-mode records})
    that finished every mode of some problem, most problems first. `records` are the
    current report's: their modes that no judge decodes stand beside each earlier judge."""
    unjudged = [r for r in records if r.get("judge") is None]
    found = []
    for judge, judged in judged_by.items():
        # Its own modes beside every mode no judge decodes: a judge mode added after it was
        # retrained, which it never decoded, would leave it no problem with every mode done.
        decoded = {r["mode"] for r in unjudged + judged}
        its_modes = [m for m in modes if m in decoded] + [m for m in dict.fromkeys(r["mode"] for r in judged)
                                                          if m not in modes]
        found.append(EarlierJudge(judge, summarize(unjudged + judged, its_modes, machines),
                                  head_to_head(records, judged, its_modes)))
    return sorted((e for e in found if e.problems), key=lambda e: -e.problems)


def head_to_head(current: list[dict], earlier: list[dict], modes: list[str]) -> list[HeadToHead]:
    """Each of `modes` that both record lists hold, problem by problem (the latest record
    of each (mode, problem) stands for it)."""
    now, then = latest_records(current), latest_records(earlier)
    rows = []
    for mode in modes:
        problems = sorted(p for m, p in then if m == mode and (m, p) in now)
        if not problems:
            continue
        ours, theirs = [now[mode, p] for p in problems], [then[mode, p] for p in problems]
        rows.append(HeadToHead(mode, len(problems), per(sum(r["correct"] for r in ours), len(ours)),
                               per(sum(r["correct"] for r in theirs), len(theirs)), _paired(ours, theirs),
                               tokens_per_cycle(ours), tokens_per_cycle(theirs)))
    return rows


def operating_point(rows: list[ModeSummary], max_drop: float = 0.01) -> ModeSummary | None:
    """The lossy mode with the most accepted tokens per cycle within `max_drop` of exact."""
    lossy = [r for r in rows if not r.lossless and r.accuracy_vs_exact is not None
             and r.accuracy_vs_exact >= -max_drop - 1e-12]
    return max(lossy, key=lambda r: r.mean_accepted, default=None)


def _summary(mode: str, runs_of: dict[str, list[dict]], measured: dict,
             mean_accepted: dict[str, float | None], machines: Machines) -> ModeSummary:
    runs, method = runs_of[mode], parse_method(mode)
    target, exact = method.target_baseline, method.exact_baseline
    n, tokens = len(runs), sum(r["new_tokens"] for r in runs)
    correct = sum(r["correct"] for r in runs)
    low, high = wilson(correct, n)
    target_runs, exact_runs = runs_of.get(target), runs_of.get(exact)
    return ModeSummary(
        mode=mode, problems=n, accuracy=per(correct, n), ci_low=low, ci_high=high,
        mean_accepted=mean_accepted[mode], speed_by_machine=_speed_by_machine(runs, machines),
        accepted_mismatches_per_100_tokens=per(100 * sum(r.get("accepted_mismatches", 0) for r in runs), tokens),
        mean_length=per(tokens, n), cut_fraction=_cut_fraction(runs),
        threshold=next((r.get("threshold") for r in runs), None),
        runs=", ".join(sorted({r.get("run") or "unnamed" for r in runs})),
        identical_to_target=_identical(runs, target_runs),
        paired_with_exact=None if exact_runs is None else _paired_with_exact(mode == exact, runs, exact_runs),
        against_target=_against(mode, runs, target, measured, mean_accepted),
        against_exact=_against(mode, runs, exact, measured, mean_accepted))


def _speed_by_machine(runs: list[dict], machines: Machines) -> tuple[MachineSpeed, ...]:
    timed = [r for r in runs if single_stream(r) and r.get("run") in machines.of_run]
    on = {name: [r for r in timed if machines.of_run[r["run"]] == name] for name in machines.names()}
    speeds = [(name, len({r["problem"] for r in records}), tokens_per_second_by_run(records))
              for name, records in on.items() if records]
    return tuple(MachineSpeed(name, problems, speed) for name, problems, speed in speeds if speed)


def _cut_fraction(runs: list[dict]) -> float | None:
    if not all("stop_reason" in r for r in runs):  # records from before stops were kept: unknown
        return None
    return per(sum(is_cut(r["stop_reason"]) for r in runs), len(runs))


def _identical(runs: list[dict], target_runs: list[dict] | None) -> float | None:
    pairs = [(r["token_ids"], t["token_ids"]) for r, t in zip(runs, target_runs or [])
             if "token_ids" in r and "token_ids" in t]
    return per(sum(a == b for a, b in pairs), len(pairs))


def latest_records(records: list[dict]) -> dict[tuple[str, int], dict]:
    """{(mode, problem): the record that stands for it}: the latest one, records coming in
    the order they were measured (a problem decoded again in a later run is that run's)."""
    return {(r["mode"], r["problem"]): r for r in records}


def tokens_per_cycle(runs: list[dict]) -> float | None:
    """Tokens per cycle (per target pass) over `runs`: their tokens over their cycles."""
    return per(sum(r["new_tokens"] for r in runs), sum(r["cycles"] for r in runs))


def _paired_with_exact(is_exact: bool, runs: list[dict], exact_runs: list[dict]) -> PairedWithExact:
    """Same problems, same order as exact's runs: the comparison is problem by problem."""
    if not runs or is_exact:
        return PairedWithExact(None, None, None, None)
    return _paired(runs, exact_runs)


def _paired(runs: list[dict], other_runs: list[dict]) -> PairedWithExact:
    """`runs` against `other_runs` of the same problems, in the same order."""
    difference, low, high = paired_accuracy_difference(runs, other_runs)
    differs = sum(r.get("answer") != o.get("answer") for r, o in zip(runs, other_runs)) / len(runs)
    return PairedWithExact(difference, low, high, differs)


def _against(mode: str, runs: list[dict], base: str, measured: dict,
             mean_accepted: dict[str, float | None]) -> BaselineRatios:
    # Speed: each record against the baseline of its own problem and run (absent when
    # the baseline was not measured there), single-stream records only.
    pairs = [(r, measured.get((base, r["problem"], r.get("run")))) for r in runs if single_stream(r)]
    pairs = [(r, b) for r, b in pairs if b is not None and single_stream(b)]
    return BaselineRatios(speed=paired_speed_ratio(pairs),
                          speed_problems=len(pairs),
                          accepted=ratio(mean_accepted[mode], mean_accepted.get(base)))
