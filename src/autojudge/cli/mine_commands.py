"""Commands that mine labels, measure mining and the label noise, and train the judge."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from autojudge.cli.common import load_task, runtime_options
from autojudge.errors import AutojudgeError
from autojudge.models.runtime import RuntimeOptions


def cmd_mine(args) -> int:
    from autojudge.mining.budget import budget_warnings
    from autojudge.mining.options import MiningOptions
    from autojudge.mining.run import mine
    from autojudge.mining.store import labelled_problems
    from autojudge.models.loading import load_pair
    task = load_task(args.task, args.split)
    runtime = runtime_options(args)
    if args.ray is not None and (args.parallel > 1 or args.plain):
        raise AutojudgeError("--ray mines with fast regeneration, one problem per worker: drop --parallel "
                             "and --plain (add workers instead)")
    options = MiningOptions(max_new_tokens=args.max_new_tokens, window=args.window, fast=not args.plain,
                            rejoin=args.rejoin, confirm=args.confirm)
    skip = labelled_problems(args.skip_mined, task.name, args.split)
    if args.ray is not None:
        from autojudge.mining.distributed import mine_on_ray
        from autojudge.workers import PairSpec
        store = mine_on_ray(PairSpec(args.draft, args.target, runtime), args.task, args.split, args.out, options,
                            address=None if args.ray == "local" else args.ray, workers=args.ray_workers,
                            cpus_per_worker=args.ray_cpus, gpus_per_worker=args.ray_gpus, limit=args.limit,
                            shard=args.shard, skip=skip, pin=args.ray_pin, checker=args.checker,
                            checker_threshold=args.checker_threshold)
    else:
        pair = load_pair(args.draft, args.target, runtime)
        _attach_checker(task, pair, args, runtime)
        store = mine(pair, task, args.split, args.out, options, limit=args.limit, shard=args.shard, skip=skip,
                     parallel=args.parallel)
    summary = store.summary()
    first, regenerated = summary["first_answers_cut"], summary["regenerations_cut"]
    print(f"{summary['problems']} problems, {summary['labels']} labelled mismatches, "
          f"{summary['important_fraction'] or 0:.1%} important; cut by the budget of {args.max_new_tokens}: "
          f"{first['cut']}/{first['of']} first answers, {regenerated['cut']}/{regenerated['of']} regenerations "
          f"-> {args.out}")
    for warning in budget_warnings(store.records, args.max_new_tokens):  # the whole run's, resumed parts too
        print(f"autojudge: warning: {warning.replace(' so far', '')}", file=sys.stderr)
    return 0


def cmd_bench_mining(args) -> int:
    from autojudge.mining.bench import BENCH_OPTIONS, bench_markdown, bench_mining
    from autojudge.models.loading import load_pair
    task = load_task(args.task, args.split)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options = replace(BENCH_OPTIONS, max_new_tokens=args.max_new_tokens)
    for method in methods:  # a misspelt method is refused before the models load
        options.with_method(method)
    side_by_side = [m.strip() for m in args.side_by_side.split(",") if m.strip()] if args.side_by_side else None
    if set(side_by_side or ()) - set(methods):
        raise AutojudgeError(f"--side-by-side {args.side_by_side}: name methods of --methods")
    pair = load_pair(args.draft, args.target, runtime_options(args))
    rows = bench_mining(pair, task, args.split, args.n, args.out, options, parallel=args.parallel, methods=methods,
                        side_by_side=side_by_side)
    print(bench_markdown(rows, f"{task.name}, {args.split}, <= {args.max_new_tokens} new tokens"))
    print(f"\nrecords and summary.md: {args.out}")
    return 0


def cmd_noise_floor(args) -> int:

    from autojudge.mining.noise import NULL_SWAP_OPTIONS, null_swap_markdown, null_swaps
    from autojudge.models.loading import load_pair
    task = load_task(args.task, args.split)
    runtime = runtime_options(args)
    options = replace(NULL_SWAP_OPTIONS, max_new_tokens=args.max_new_tokens)
    pair = load_pair(args.draft, args.target, runtime)
    _attach_checker(task, pair, args, runtime)
    swaps = null_swaps(pair, task, args.split, args.n, args.per_problem, args.out, options, seed=args.seed)
    described = pair.target.describe()
    runtime_name = described["backend"] + (", uniform passes" if described.get("uniform_passes") else "")
    table = null_swap_markdown(swaps, f"{task.name}, first {args.n} problems of {args.split}, <= "
                                      f"{args.max_new_tokens} new tokens, target {pair.target.name} on {runtime_name}; "
                                      "the fast regeneration path, the target's own token swapped in")
    print(table)
    (Path(args.out) / "summary.md").write_text(table + "\n")
    return 0


def _attach_checker(task, pair, args, runtime: RuntimeOptions) -> None:
    """A task whose answers a model compares gets its checker (by default the target)."""
    from autojudge.models.loading import model_beside
    from autojudge.tasks.equivalence import attach_checker, wants_checker
    if wants_checker(task):
        attach_checker(task, *model_beside(pair, args.checker, runtime), args.checker_threshold)


def cmd_calibrate_checker(args) -> int:
    from autojudge.evaluation.checker_calibration import (
        calibrate,
        calibration_markdown,
        calibration_summary,
        known_pairs,
    )
    from autojudge.models.loading import load_pair
    from autojudge.tasks.base import compares_with_a_model
    from autojudge.tasks.equivalence import LLMEquivalence
    task = load_task(args.task)
    if compares_with_a_model(task):
        raise AutojudgeError(f"{task.name} has no exact checker to calibrate against; use gsm8k, mbpp or humaneval")
    known_pairs(task, args.data)  # bad folders are found out before a model is loaded
    model = load_pair(None, args.checker or args.target, runtime_options(args))
    checker = LLMEquivalence(model.target, model.tokenizer, args.checker_threshold)
    records = calibrate(checker, task, args.data, args.n, args.out, seed=args.seed)
    summary = calibration_summary(records, args.checker_threshold)
    table = calibration_markdown(summary, f"The model checker ({checker.model.name}, "
                                          f"{checker.model.describe()['backend']}) against {task.name}'s exact "
                                          f"checker, on labels mined in {', '.join(args.data)}")
    (Path(args.out) / "summary.md").write_text(table + "\n")
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table)
    return 0


def cmd_rule_features(args) -> int:
    from autojudge.mining.rule_features import add_rule_features
    from autojudge.models.loading import load_pair
    metas = [_mining_meta(run) for run in args.data]
    pair = load_pair(args.draft, args.target, runtime_options(args))
    for run, meta in zip(args.data, metas):
        mined_with = {k: meta[k] for k in ("draft", "target")}
        if mined_with != {"draft": pair.draft.name, "target": pair.target.name}:
            raise AutojudgeError(f"{run} was mined with {mined_with['draft']} and {mined_with['target']}, "
                                 f"not {pair.draft.name} and {pair.target.name}")
        summary = add_rule_features(pair, load_task(meta["task"], meta["split"]), run, limit=args.limit)
        print(f"{run}: {summary.written} problems written, {summary.problems} with labels; "
              f"{len(summary.untokenizable)} left out (their response does not tokenize back to their labels); "
              f"{summary.disagreements} labels where a model's token at the mismatch moved (near-ties)")
    return 0


def cmd_contrast_labels(args) -> int:
    from autojudge.mining.contrast import contrast_labels
    from autojudge.models.loading import load_pair
    metas = [_mining_meta(run) for run in args.data]
    pair = load_pair(None, args.target, runtime_options(args))
    for run, meta in zip(args.data, metas):
        if meta["target"] != pair.target.name:
            raise AutojudgeError(f"{run} was mined with {meta['target']}, not {pair.target.name}")
        s = contrast_labels(pair, load_task(meta["task"], meta["split"]), run, meta["max_new_tokens"],
                            meta["split"], limit=args.limit, temperature=args.temperature)
        rate = f"{s['labels'] / (s['seconds'] / 3600):.0f} labels per core-hour" if s["seconds"] else "nothing new"
        print(f"{run}: {s['labels']} important labels nudged, {s['kept']} kept their answer; {rate}"
              + (f"; {s['untokenizable']} left out (response does not tokenize back)" if s["untokenizable"] else ""))
    return 0


def cmd_head_to_head(args) -> int:
    from autojudge.judge.headtohead import compare_rules, head_to_head_markdown
    from autojudge.judge.labels import LABEL_DEFINITIONS
    from autojudge.judge.train import load_mined
    definitions = [d.strip() for d in args.labels.split(",") if d.strip()]
    if unknown := [d for d in definitions if d not in LABEL_DEFINITIONS]:
        raise AutojudgeError(f"unknown label definition {unknown[0]!r}; choose from {', '.join(LABEL_DEFINITIONS)}")
    if not Path(args.out).parent.is_dir():
        raise AutojudgeError(f"{args.out}: the folder {Path(args.out).parent} does not exist")
    data = load_mined(args.data)
    task = load_task(data.meta["task"], data.meta["split"])
    result = compare_rules(args.data, data, task, definitions, draws=args.draws)
    Path(args.out + ".json").write_text(json.dumps(result["rows"], indent=2) + "\n")
    table = head_to_head_markdown(result, f"Acceptance rules as classifiers of held-out labels: {task.name}")
    Path(args.out + ".md").write_text(table + "\n")
    print(table)
    return 0


def _mining_meta(run: str) -> dict:
    path = Path(run) / "meta.json"
    if not path.is_file():
        raise AutojudgeError(f"{run}: not a mining run ({path} is missing)")
    return json.loads(path.read_text())


def cmd_train(args) -> int:

    from autojudge.judge.baselines import CHANCE, learning_warnings, one_position_rules
    from autojudge.judge.report import auc_markdown, auc_report, plot_learning_curve
    from autojudge.judge.train import load_borrowed, load_mined, load_reused, train_judge
    for written in [args.out] + ([args.report] if args.report else []):
        if not Path(written).parent.is_dir():  # found out now, not after the cross-validation
            raise AutojudgeError(f"{written}: the folder {Path(written).parent} does not exist")
    if args.reuse and args.borrow:
        raise AutojudgeError("--reuse and --borrow both add labels that only train: give one of them")
    data = load_mined(args.data)
    if args.labels != "answer-changed":
        if args.reuse or args.borrow:
            raise AutojudgeError(f"--labels {args.labels} applies to the scored runs only; train it without "
                                 "--reuse or --borrow")
        from autojudge.judge.labels import define_labels
        data, _ = define_labels(data, args.data, args.labels, load_task(data.meta["task"], data.meta["split"]))
    reused = load_reused(args.reuse, data) if args.reuse else None
    reused = load_borrowed(args.borrow, data) if args.borrow else reused
    judge, meta = train_judge(data, features=args.features, seed=args.seed, reused=reused)
    meta["labels"] = args.labels  # the same dict as the judge's: saved with it
    # Whether it learned anything: against chance and against rules that need no training.
    auc, labels, problems = meta["validation_auc"], meta["validation"]["mismatches"], meta["validation"]["problems"]
    meta["one_position_rules"] = one_position_rules(data.logits, data.important)
    for warning in learning_warnings(auc, meta["one_position_rules"], labels, problems):
        print(f"autojudge: warning: {warning}", file=sys.stderr)
    if auc < CHANCE and not args.force:
        raise AutojudgeError(f"not written: cross-validated ROC-AUC {auc:.3f} on {labels} labels of {problems} "
                             f"problems is below {CHANCE}, worse than chance, and its thresholds would mean nothing; "
                             "mine more problems, or pass --force to write it anyway")
    judge.save(args.out)
    if args.report:
        # train_judge has already cross-validated the shipped feature set on the same folds.
        shipped = {args.features: {"auc": meta["validation_auc"], "C": meta["C"]}}
        report = auc_report(data, seed=args.seed, curve_features=args.features, reused=reused,
                            known=None if reused else shipped, known_reused=shipped if reused else None)
        report["one_position_rules"] = meta["one_position_rules"]
        with open(args.report + ".json", "w") as handle:
            json.dump(report, handle, indent=2)
        with open(args.report + ".md", "w") as handle:
            handle.write(auc_markdown(report) + "\n")
        plot_learning_curve(report, args.report + ".png")
        print(auc_markdown(report), end="\n\n")
    train_only = meta.get("reused") or meta.get("borrowed")
    kind = "reused" if "reused" in meta else f"borrowed {meta['borrowed']['task']}" if train_only else ""
    reuse_note = (f" (and {train_only['mismatches']} {kind} labels of {train_only['problems']} problems, "
                  "trained on, never scored)" if train_only else "")
    print(f"ROC-AUC {meta['validation_auc']:.3f} ({meta['validation']['method']}) at C={meta['C']:g}; "
          f"{meta['validation']['mismatches']} mismatches from {meta['validation']['problems']} problems, "
          f"{meta['important_fraction']:.1%} important{reuse_note} -> {args.out}")
    print("| recall of important | threshold | mismatches accepted |")
    print("|---|---|---|")
    for recall in (0.99, 0.95, 0.9, 0.8, 0.7, 0.5):
        threshold = judge.threshold_for_recall(recall)
        row = next(r for r in meta["thresholds"] if r["threshold"] == threshold)
        print(f"| {row['recall']:.3f} | {threshold:.4f} | {row['accept_rate']:.1%} |")
    return 0
