"""Is speculative decoding faster than the target alone here? Configurations side by side.

Each configuration names a pair ("old": the Q4_K_M pair; "new": the defaults' pair), a
mode and DecodingOptions: the target alone on each pair, the old defaults (window 8 as
`generate` had, 16 as eval, serve and demo had, p-min 0), the new defaults
(decoding.defaults), the draft-length controller, the lookup drafter, and the judge.
Every configuration runs on a problem before the next problem starts, each from cold
caches, in one process (one core: run it under taskset), so slow drift of the machine
hits all alike; their order is shuffled per problem (seeded by the problem, so a resumed
run keeps it), so no configuration always runs first after a model's caches were cold or
always last before the next problem's. Records are appended as they come (resumable: a rerun decodes what is
missing); the report gives tokens per second and the ratio to the target alone of the
same pair, per task.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from autojudge.decoding import defaults
from autojudge.decoding.modes import DecodingOptions, decode, parse_mode, resolved_drafter
from autojudge.models.backend import ModelPair
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import append_record, check_meta, host_description, read_records, run_lock
from autojudge.tasks.base import Task, task_budget

FIXED = {"draft_p_min": 0.0, "draft_length": "fixed", "drafter": "model"}


@dataclass(frozen=True)
class SpeedConfig:
    name: str
    pair: str  # a key of the pairs given to run_speed_bench: "old" or "new"
    mode: str
    options: dict = field(default_factory=dict)  # DecodingOptions fields; the rest at the defaults

    @property
    def baseline(self) -> str:
        """The target alone on the same pair: what this configuration's speed is set against."""
        return f"target/{self.pair}"


MODEL = {"drafter": "model", "draft_length": "fixed"}


def default_configs(judge: bool = True) -> list[SpeedConfig]:
    configs = [
        SpeedConfig("target/old", "old", "target"),
        SpeedConfig("target/new", "new", "target"),
        SpeedConfig("old-defaults/exact/w8", "old", "exact", {**FIXED, "window": 8}),
        # The draft model at the defaults' window and p-min (the defaults before the lookup's).
        SpeedConfig("model/exact", "new", "exact", MODEL),
        SpeedConfig("model+controller/exact", "new", "exact", {"drafter": "model", "draft_length": "adaptive"}),
        SpeedConfig("lookup/exact", "new", "exact", {"drafter": "lookup", "draft_length": "fixed"}),
        # What `generate` runs by default (drafter and draft length "auto": here, the
        # lookup under the controller).
        SpeedConfig("defaults/exact", "new", "exact"),
    ]
    if judge:
        configs += [
            SpeedConfig("model/judge@0.8", "new", "judge@0.8", MODEL),
            # The lookup under the controller with the target-only judge: a lossy mode with
            # no draft model pass at all.
            SpeedConfig("lookup/judge@0.8", "new", "judge@0.8", {"drafter": "lookup", "draft_length": "adaptive"}),
        ]
    return configs


def run_speed_bench(pairs: dict[str, ModelPair], tasks: list[Task], out: str | Path, n: int,
                    configs: list[SpeedConfig] | None = None, judges: dict | None = None,
                    split: str = "eval", max_new_tokens: int | None = None) -> str:
    """Decode what is missing under `out` (records.jsonl), then write summary.md and
    summary.json; returns the summary's Markdown. `judges`: {task name: {drafter: judge}}
    for the judge configurations, a judge for "model" drafts and one for "lookup" drafts
    (judge.shipped.load_judge's, which read the same target layer), set on the pair's
    target before its task runs."""
    configs = configs if configs is not None else default_configs(judge=bool(judges))
    out = Path(out)
    meta = {"tasks": [t.name for t in tasks], "split": split, "max_new_tokens": max_new_tokens,
            "pairs": {key: pair.describe(machine=False) for key, pair in pairs.items()}}
    with run_lock(out, "speed bench"):
        check_meta(out, meta, "speed bench")
        path = out / "records.jsonl"
        records = read_records(path)
        done = {(r["task"], r["config"], r["problem"]) for r in records}
        run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        append_record(out / "runs.jsonl", {"run": run, "host": host_description()})
        for task in tasks:
            by_drafter = (judges or {}).get(task.name, {})
            for judge in by_drafter.values():
                if hasattr(judge, "feature_layer"):
                    pairs["new"].target.read_features_from(judge.feature_layer)  # the layer this task's judges read
            budget = max_new_tokens or task_budget(task)
            for problem in task.load(split)[:n]:
                for config in run_order(configs, task.name, problem.id):
                    if (task.name, config.name, problem.id) in done:
                        continue
                    judge = by_drafter.get(config.options.get("drafter", "model"))
                    if parse_mode(config.mode).needs_judge and judge is None:
                        continue
                    record = _decode(pairs[config.pair], task, problem, config, budget, judge)
                    record["run"] = run
                    append_record(path, record)
                    records.append(record)
        summary = summarize(records, configs, [t.name for t in tasks])
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = render(summary)
    (out / "summary.md").write_text(text + "\n")
    return text


def run_order(configs: list[SpeedConfig], task: str, problem_id) -> list[SpeedConfig]:
    """The configurations in a shuffled order that depends only on the task and problem."""
    order = list(configs)
    random.Random(f"{task}/{problem_id}").shuffle(order)
    return order


def select_configs(names: str, judge: bool = True) -> list[SpeedConfig]:
    """The default configurations named in a comma-separated list (every baseline they
    are set against is added), in the order of default_configs."""
    configs = default_configs(judge=judge)
    by_name = {c.name: c for c in configs}
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    unknown = sorted(wanted - set(by_name))
    if unknown:
        raise ValueError(f"unknown configuration {', '.join(unknown)}: choose among {', '.join(by_name)}")
    wanted |= {by_name[name].baseline for name in wanted}
    return [c for c in configs if c.name in wanted]


def _decode(pair: ModelPair, task: Task, problem, config: SpeedConfig, budget: int, judge) -> dict:
    for model in (pair.target, pair.draft):
        if model is not None:
            model.reset()  # every configuration pays for its prompt alike
    # What the commands run by default (decoding.defaults), changed where the configuration says.
    base = DecodingOptions(defaults.WINDOW, budget, defaults.DRAFT_P_MIN, defaults.DRAFT_LENGTH, defaults.DRAFTER)
    options = replace(base, **config.options)
    cpu_start = time.process_time()
    mode = parse_mode(config.mode)
    drafter, draft_length = (None, None) if mode.is_target else resolved_drafter(pair, mode, options)
    result = decode(pair, chat_prompt_ids(pair.tokenizer, task.messages(problem)), mode, options,
                    judge=judge if mode.needs_judge else None)
    cpu_seconds = time.process_time() - cpu_start
    text = pair.tokenizer.decode(result.token_ids, skip_special_tokens=True)
    stats = result.stats
    return {"task": task.name, "config": config.name, "problem": problem.id, "options": asdict(options),
            "drafter": drafter, "draft_length": draft_length,  # what "auto" stood for
            "new_tokens": stats.new_tokens, "cycles": stats.cycles, "seconds": stats.seconds,
            # CPU time too: where another process shared the core, wall-clock speeds mean little.
            "cpu_seconds": cpu_seconds,
            # When it ended: a decode that overlapped another heavy process can be found and redone.
            "ended": time.time(),
            "drafted_tokens": stats.drafted_tokens, "draft_forwards": stats.draft_forwards,
            "correct": task.is_correct(text, problem), "token_ids": result.token_ids}


def summarize(records: list[dict], configs: list[SpeedConfig], tasks: list[str]) -> dict:
    """Per task and configuration, over the problems every configuration of it has done."""
    rows = []
    by_name = {c.name: c for c in configs}
    for task in tasks:
        mine = [r for r in records if r["task"] == task and r["config"] in by_name]
        present = {c for c in by_name if any(r["config"] == c for r in mine)}
        problems = set.intersection(*({r["problem"] for r in mine if r["config"] == c} for c in present)) \
            if present else set()
        totals = {}
        for name in by_name:
            runs = [r for r in mine if r["config"] == name and r["problem"] in problems]
            if runs:
                tokens, seconds = sum(r["new_tokens"] for r in runs), sum(r["seconds"] for r in runs)
                cpu = sum(r.get("cpu_seconds", r["seconds"]) for r in runs)
                cycles = sum(r["cycles"] for r in runs)
                totals[name] = {"task": task, "config": name, "problems": len(runs),
                                "correct": sum(r["correct"] for r in runs), "tokens": tokens,
                                "tokens_per_cycle": tokens / cycles if cycles else 0.0,
                                "tokens_per_second": tokens / seconds if seconds else 0.0,
                                "tokens_per_cpu_second": tokens / cpu if cpu else 0.0,
                                "stalled": sum(r["seconds"] > 1.5 * r.get("cpu_seconds", r["seconds"]) for r in runs)}
        for name, row in totals.items():
            base = totals.get(by_name[name].baseline)
            row["vs_target"] = row["tokens_per_second"] / base["tokens_per_second"] if base else None
            row["vs_target_cpu"] = row["tokens_per_cpu_second"] / base["tokens_per_cpu_second"] if base else None
            rows.append(row)
    return {"rows": rows}


def render(summary: dict) -> str:
    lines = ["| task | configuration | problems | correct | tokens/cycle | tok/s | vs the target alone (same pair) "
             "| by CPU time | decodes stalled |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        ratio = "-" if r["vs_target"] is None else f"{r['vs_target']:.2f}x"
        cpu_ratio = "-" if r.get("vs_target_cpu") is None else f"{r['vs_target_cpu']:.2f}x"
        lines.append(f"| {r['task']} | {r['config']} | {r['problems']} | {r['correct']} | "
                     f"{r['tokens_per_cycle']:.2f} | {r['tokens_per_second']:.2f} | {ratio} | {cpu_ratio} | "
                     f"{r.get('stalled', 0)} |")
    lines += ["", f"pairs: old = the Q4_K_M pair; new = {defaults.DRAFT} / {defaults.TARGET} "
              f"(the defaults: window {defaults.WINDOW}, p-min {defaults.DRAFT_P_MIN}); model: the draft model "
              "proposes, fixed length; lookup: n-grams of the prompt and the text so far; controller: the "
              "draft-length controller; defaults: what generate runs (drafter and draft length auto)"]
    return "\n".join(lines)
