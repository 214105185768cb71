"""Commands that mine labels, measure mining and the label noise, and train the judge."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from autojudge.cli.common import load_task, runtime_options
from autojudge.errors import AutojudgeError
from autojudge.models.runtime import RuntimeOptions


def cmd_mine(args) -> int:
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
        from autojudge.mining.distributed import PairSpec, mine_on_ray
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
    from autojudge.tasks.equivalence import attach_checker
    attach_checker(task, pair, args.checker, args.checker_threshold, runtime)


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


def cmd_train(args) -> int:

    from autojudge.judge.report import auc_markdown, auc_report, plot_learning_curve
    from autojudge.judge.train import load_borrowed, load_mined, load_reused, train_judge
    for written in [args.out] + ([args.report] if args.report else []):
        if not Path(written).parent.is_dir():  # found out now, not after the cross-validation
            raise AutojudgeError(f"{written}: the folder {Path(written).parent} does not exist")
    if args.reuse and args.borrow:
        raise AutojudgeError("--reuse and --borrow both add labels that only train: give one of them")
    data = load_mined(args.data)
    reused = load_reused(args.reuse, data) if args.reuse else None
    reused = load_borrowed(args.borrow, data) if args.borrow else reused
    judge, meta = train_judge(data, features=args.features, seed=args.seed, reused=reused)
    judge.save(args.out)
    if args.report:
        # train_judge has already cross-validated the shipped feature set on the same folds.
        shipped = {args.features: {"auc": meta["validation_auc"], "C": meta["C"]}}
        report = auc_report(data, seed=args.seed, curve_features=args.features, reused=reused,
                            known=None if reused else shipped, known_reused=shipped if reused else None)
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
