"""The `autojudge` command line. Each subcommand is a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from autojudge.errors import AutojudgeError
from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET, REGISTERED


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value:g}")
    return value


def _registered_model(name: str) -> str:
    if name not in REGISTERED:
        raise argparse.ArgumentTypeError(
            f"unknown model {name!r} (registered: {', '.join(sorted(REGISTERED))})")
    return name


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"write I/N, e.g. 1/2; got {text!r}") from None
    if not 1 <= shard[0] <= shard[1]:
        raise argparse.ArgumentTypeError(f"need 1 <= I <= N, got {text!r}")
    return shard


def _add_pair_options(parser: argparse.ArgumentParser, backends: bool = True) -> None:
    parser.add_argument("--draft", default=DEFAULT_DRAFT,
                        help="registered name, local directory or Hugging Face id (default: %(default)s)")
    parser.add_argument("--target", default=DEFAULT_TARGET, help="as --draft (default: %(default)s)")
    if backends:
        parser.add_argument("--backend", choices=["auto", "torch", "llamacpp"], default="auto",
                            help="runtime for both models (default: %(default)s: llamacpp on CPU for "
                                 "GGUF-backed models, else torch)")
        parser.add_argument("--draft-backend", choices=["torch", "llamacpp"],
                            help="another runtime for the draft only (a mixed pair)")
        parser.add_argument("--device", default="cpu",
                            help="torch device for the models, e.g. cuda or cuda:1 (default: %(default)s; "
                                 "with --backend auto, a GPU means torch)")
        parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                            help="torch weights (default: auto: float32 on CPU, bfloat16 on a GPU)")
        parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                            help="on a GPU, run each torch step eagerly instead of replaying a CUDA graph")
    parser.add_argument("--linear", choices=["onednn", "default"], default="onednn",
                        help="torch CPU float32 linear kernels (default: %(default)s, faster verification)")


def _add_judge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge", metavar="PATH",
                        help="judge file from `autojudge train` (default: the judge shipped for the "
                             "default pair and the task)")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--threshold", type=_probability, help="--mode judge: accept a mismatch when "
                       "P(important) < THRESHOLD")
    limit.add_argument("--recall", type=_probability, help="--mode judge: the threshold whose validation "
                       "recall of important mismatches is RECALL (default: 0.9)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autojudge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="the offline default model pair")
    models_cmd = models.add_subparsers(dest="models_command", required=True)
    fetch = models_cmd.add_parser("fetch", help="download, verify and convert the default pair")
    # Names are checked by `type`, not `choices`: argparse (Python 3.11 here) checks an
    # empty positional list against `choices` and so rejected the bare `models fetch`.
    fetch.add_argument("names", nargs="*", type=_registered_model, metavar="NAME",
                       help="registered models to fetch (default: the default pair)")
    models_cmd.add_parser("list", help="registered models and whether they are cached")

    data = commands.add_parser("data", help="the offline datasets")
    data.add_subparsers(dest="data_command", required=True).add_parser(
        "fetch", help="download and verify GSM8K, MBPP and HumanEval")

    gen = commands.add_parser("generate", help="decode one prompt")
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="user message (sent through the chat template)")
    source.add_argument("--gsm8k", type=int, metavar="ID", help="GSM8K test problem id (0-1318)")
    _add_pair_options(gen)
    gen.add_argument("--mode", default="exact",
                     help="target, exact, topk (with --topk), judge (with --threshold or --recall), or any mode "
                          "by name: topk:K, fly[:H[:L]], typical[:E[:A]], judge:T[:L], judge@R[:L] "
                          "(default: %(default)s)")
    gen.add_argument("--window", type=_positive, default=8, help="draft tokens per cycle (up to 64)")
    gen.add_argument("--topk", type=_positive, default=4, help="K for --mode topk")
    gen.add_argument("--draft-p-min", type=_probability, default=0.0, metavar="P",
                     help="adaptive draft length: stop drafting before a token the draft gives a probability "
                          "below P (default: 0, fixed windows)")
    _add_judge_options(gen)
    gen.add_argument("--max-new-tokens", type=_positive, help="default: the task's budget (GSM8K 1024, MBPP and HumanEval 512; 512 for a free prompt)")
    gen.add_argument("--json", action="store_true", help="print one JSON object")

    bench = commands.add_parser("bench", help="speed of target-only, HF assisted and ours, side by side")
    _add_pair_options(bench, backends=False)
    bench.add_argument("--n", type=_positive, default=10, help="GSM8K eval problems")
    bench.add_argument("--methods", default="target,assisted,exact:4,exact:8,exact:16,exact:32",
                       help="comma-separated [runtime/]method; runtime torch (default), llamacpp or "
                            "mixed (llama.cpp draft, torch target); method target, assisted, exact:W, topk:K:W")
    bench.add_argument("--max-new-tokens", type=_positive, help="default: the task's budget (GSM8K 1024, MBPP and HumanEval 512; 512 for a free prompt)")
    bench.add_argument("--out", default="runs/bench", help="directory for records and report")

    mine = commands.add_parser("mine", help="label important mismatches (Algorithm 1), resumable")
    mine.add_argument("--task", default="gsm8k", help="task name (default: %(default)s)")
    mine.add_argument("--split", default="mine", help="task split (gsm8k, mbpp: mine, eval, all)")
    mine.add_argument("--limit", type=_positive, help="first N problems of the split")
    mine.add_argument("--out", required=True, help="run directory (resumed when it exists)")
    _add_pair_options(mine)
    mine.add_argument("--window", type=_non_negative, default=4,
                      help="draft window for the first answer; 0: the target alone (default: %(default)s)")
    mine.add_argument("--max-new-tokens", type=_positive, help="default: the task's budget (GSM8K 1024, MBPP and HumanEval 512; 512 for a free prompt)")
    mine.add_argument("--shard", type=_shard, default=(1, 1), metavar="I/N",
                      help="mine every N-th problem from the I-th, e.g. 2/4; run N processes with "
                           "different --out and train on all their directories")
    mine.add_argument("--parallel", type=_positive, default=1, metavar="N",
                      help="mine N problems side by side, their passes merged (llama.cpp; more labels per "
                           "hour, the same up to near-ties: try 4 per core)")
    mine.add_argument("--plain", action="store_true",
                      help="regenerate with plain greedy decoding (slow reference; same labels)")
    mine.add_argument("--rejoin", type=_non_negative, default=0, metavar="M",
                      help="shortcut (off: 0): a regeneration that re-joins the old response for M tokens "
                           "after an interchangeable stretch is not verified further; can change labels, "
                           "see bench-mining (GSM8K)")

    mbench = commands.add_parser("bench-mining", help="plain vs fast mining on the same problems")
    mbench.add_argument("--task", default="gsm8k")
    mbench.add_argument("--split", default="mine")
    mbench.add_argument("--n", type=_positive, default=2, help="first N problems of the split")
    mbench.add_argument("--max-new-tokens", type=_positive, help="default: the task's budget (GSM8K 1024, MBPP and HumanEval 512; 512 for a free prompt)")
    mbench.add_argument("--methods", default="plain,fast",
                        help="comma-separated regeneration methods, the first the reference: plain, fast, "
                             "fast+rejoin:M (default: %(default)s)")
    mbench.add_argument("--parallel", type=_positive, default=1, metavar="N",
                        help="also mine the problems with the last method, N side by side (llama.cpp)")
    mbench.add_argument("--out", help="also write the table to this Markdown file")
    _add_pair_options(mbench)

    noise = commands.add_parser("noise-floor", help="null swaps: regenerate with the target's own token, "
                                                    "count answers that change anyway")
    noise.add_argument("--task", default="gsm8k")
    noise.add_argument("--split", default="mine")
    noise.add_argument("--n", type=_positive, default=70, help="first N problems of the split")
    noise.add_argument("--per-problem", type=_positive, default=3, help="null swaps per answer")
    noise.add_argument("--max-new-tokens", type=_positive)
    noise.add_argument("--seed", type=int, default=0, help="seed of the positions")
    noise.add_argument("--out", help="also write the table (Markdown) here, and the swaps beside it as JSON")
    _add_pair_options(noise)

    train = commands.add_parser("train", help="fit the judge on a mining run")
    train.add_argument("--data", required=True, nargs="+",
                       help="one or more directories written by `autojudge mine` (e.g. its shards)")
    train.add_argument("--features", choices=["draft", "target", "hidden", "both", "logits", "target+logits", "all"],
                       default="hidden",
                       help="hidden: both models' hidden states (also called both); logits: six logit features "
                            "(log-probabilities, rank, entropies); all: both (default: %(default)s)")
    train.add_argument("--out", required=True, help="judge file to write (.safetensors)")
    train.add_argument("--seed", type=int, default=0, help="seed of the by-problem split")
    train.add_argument("--report", metavar="PREFIX",
                       help="also write PREFIX.md/.json: validation AUC for draft, target and both "
                            "features, and against the number of training problems")

    costs = commands.add_parser("costs", help="per-pass costs and the speed-up ceiling (cost model)")
    _add_pair_options(costs)
    costs.add_argument("--context", type=_positive, default=300, help="KV-cache length to time at")
    costs.add_argument("--repeats", type=_positive, default=3, help="timed passes per size (median)")
    costs.add_argument("--out", help="write the costs as JSON here")
    costs.add_argument("--check", metavar="BENCH_DIR",
                       help="instead of measuring: compare the cost model's predictions with a bench run, "
                            "using --torch-costs and --llamacpp-costs")
    costs.add_argument("--torch-costs", default="docs/bench/costs-torch.json")
    costs.add_argument("--llamacpp-costs", default="docs/bench/costs-llamacpp.json")

    ev = commands.add_parser("eval", help="accuracy against speed per decoding mode, resumable")
    ev.add_argument("--task", default="gsm8k", help="gsm8k, mbpp, humaneval or module:Class")
    ev.add_argument("--split", default="eval")
    ev.add_argument("--limit", type=_positive, help="first N problems of the split")
    ev.add_argument("--modes", default="target,exact,topk:4,topk:16,judge:0.05,judge:0.2,judge:0.5",
                    help="comma-separated: target, exact, topk:K, judge:THRESHOLD, judge@RECALL "
                         "(default: %(default)s)")
    ev.add_argument("--window", type=_positive, default=16, help="draft tokens per cycle")
    ev.add_argument("--draft-p-min", type=_probability, default=0.0, metavar="P",
                    help="adaptive draft length: stop drafting before a token the draft gives a probability "
                         "below P (default: 0, fixed windows)")
    ev.add_argument("--max-new-tokens", type=_positive, help="default: the task's budget (GSM8K 1024, MBPP and HumanEval 512; 512 for a free prompt)")
    ev.add_argument("--judge", metavar="PATH", help="judge file (default: the shipped judge for the task)")
    ev.add_argument("--out", required=True, help="run directory (resumed when it exists)")
    ev.add_argument("--report-only", action="store_true",
                    help="decode nothing: write the report from the problems done so far")
    _add_pair_options(ev)

    demo = commands.add_parser("demo", help="answer GSM8K eval problems with the default pair")
    demo.add_argument("--n", type=_positive, default=3)
    demo.add_argument("--window", type=_positive, default=16)
    demo.add_argument("--max-new-tokens", type=_positive, help="default: the task's budget (GSM8K 1024, MBPP and HumanEval 512; 512 for a free prompt)")
    demo.add_argument("--backend", choices=["auto", "torch", "llamacpp"], default="auto",
                      help="the shipped judge fits the llama.cpp pair (default: %(default)s)")
    demo.add_argument("--judge", metavar="PATH", help="judge file (default: the shipped GSM8K judge)")
    limit = demo.add_mutually_exclusive_group()
    limit.add_argument("--threshold", type=_probability)
    limit.add_argument("--recall", type=_probability, default=0.9,
                       help="threshold by validation recall of important mismatches (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.verbose:
        _quiet_libraries()
    try:
        _default_budget(args)
        return COMMANDS[args.command](args)
    except AutojudgeError as exc:
        print(f"autojudge: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("autojudge: interrupted", file=sys.stderr)
        return 130


def _default_budget(args) -> None:
    """Without --max-new-tokens, generate the task's budget: one per task, alike for
    mining, evaluation, the demo, benchmarks and `generate --gsm8k`."""
    if getattr(args, "max_new_tokens", 0) is not None:
        return
    from autojudge.tasks.base import DEFAULT_BUDGET, task_budget
    from autojudge.tasks.gsm8k import GSM8K
    if getattr(args, "task", None):
        args.max_new_tokens = task_budget(_load_task(args.task))
    elif args.command in ("demo", "bench") or getattr(args, "gsm8k", None) is not None:
        args.max_new_tokens = task_budget(GSM8K())
    else:
        args.max_new_tokens = DEFAULT_BUDGET


def _load_task(name: str, split: str | None = None):
    """The task, checked before any model is loaded: that it exists and has `split`."""
    from autojudge.tasks import get_task
    try:
        task = get_task(name)
        if split is not None:
            task.load(split)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    return task


def pair_options(args) -> dict:
    import torch
    dtype = args.dtype
    if dtype == "auto":
        dtype = "float32" if args.device == "cpu" else "bfloat16"
    return {"backend": args.backend, "draft_backend": args.draft_backend, "linear": args.linear,
            "device": args.device, "dtype": getattr(torch, dtype), "cuda_graphs": args.cuda_graphs}


def _quiet_libraries() -> None:
    """transformers prints a bar per loaded model and chatty warnings; ours say enough.

    Both settings are read when transformers is imported, which happens later.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def cmd_models(args) -> int:
    from autojudge.models.convert import converted_dir, ensure_converted
    if args.models_command == "list":
        for name, model in REGISTERED.items():
            state = "cached" if converted_dir(model).exists() else "not fetched"
            print(f"{name:32s} {model.origin:40s} {state}")
        return 0
    for name in args.names or [DEFAULT_DRAFT, DEFAULT_TARGET]:
        print(ensure_converted(REGISTERED[name]))
    return 0


def cmd_data(args) -> int:
    from autojudge.tasks import datasets
    print(f"gsm8k: {len(datasets.load_gsm8k('all'))} problems")
    print(f"mbpp: {len(datasets.load_mbpp())} problems")
    print(f"humaneval: {len(datasets.load_humaneval())} problems")
    return 0


def cmd_generate(args) -> int:
    from autojudge.decoding.modes import decode, judge_mode, parse_mode
    from autojudge.models.loading import load_pair
    from autojudge.prompting import chat_prompt_ids
    from autojudge.tasks.gsm8k import GSM8K

    task, problem = GSM8K(), None
    if args.gsm8k is not None:
        problems = {p.id: p for p in task.load("all")}
        if args.gsm8k not in problems:
            raise AutojudgeError(f"no GSM8K problem {args.gsm8k}; ids run from 0 to {len(problems) - 1}")
        problem = problems[args.gsm8k]
        messages = task.messages(problem)
    else:
        messages = [{"role": "user", "content": args.prompt}]

    if args.window > 64:
        raise AutojudgeError(f"--window {args.window}: at most 64 draft tokens per cycle")
    import autojudge.judge  # noqa: F401  (registers the judge's modes)
    if args.mode == "judge":  # the short form: the threshold from --threshold or --recall (0.9)
        if args.threshold is not None:
            spec = judge_mode(args.threshold)
        else:
            spec = f"judge@{0.9 if args.recall is None else args.recall}"
    else:
        if args.threshold is not None or args.recall is not None:
            raise AutojudgeError("--threshold and --recall go with --mode judge")
        spec = f"topk:{args.topk}" if args.mode == "topk" else args.mode
    try:
        mode = parse_mode(spec)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    if args.judge and not mode.needs_judge:
        raise AutojudgeError("--judge goes with a judge mode")
    pair = load_pair(None if mode.policy == "target" else args.draft, args.target, **pair_options(args))
    judge = None
    if mode.needs_judge:
        from autojudge.judge.shipped import load_judge
        judge = load_judge(pair, args.judge, task="gsm8k")
        policy = mode.policy_for(judge)
        threshold = policy.threshold
        mode = parse_mode(judge_mode(threshold) + (f":{policy.lookahead}" if policy.lookahead else ""))
    prompt_ids = chat_prompt_ids(pair.tokenizer, messages)
    try:
        result = decode(pair, prompt_ids, mode, window=args.window, max_new_tokens=args.max_new_tokens,
                        judge=judge, draft_p_min=args.draft_p_min)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    mode = mode.name
    text = pair.tokenizer.decode(result.token_ids, skip_special_tokens=True)

    report = {"text": text, "token_ids": result.token_ids, "mode": mode,
              "window": None if mode == "target" else args.window,
              "stop_reason": result.stop_reason, **pair.describe(), "stats": result.stats.to_dict()}
    if judge is not None:
        report.update(judge=args.judge or "shipped", threshold=threshold)
    if problem is not None:
        report.update(gsm8k_id=problem.id, answer=task.extract_answer(text, problem),
                      gold=problem.reference, correct=task.is_correct(text, problem))
    if args.json:
        print(json.dumps(report))
        return 0
    print(text)
    print()
    if problem is not None:
        print(f"answer {report['answer']}  gold {problem.reference}  "
              f"{'correct' if report['correct'] else 'wrong'}")
    print(format_stats(mode, result.stats))
    return 0


def format_stats(mode: str, stats) -> str:
    return (f"[{mode}] {stats.new_tokens} tokens in {stats.seconds:.1f} s "
            f"({stats.tokens_per_second:.2f} tok/s), {stats.cycles} target passes, "
            f"{stats.mean_accepted:.2f} tokens/pass, accept histogram {stats.accept_histogram}")


def cmd_eval(args) -> int:
    from autojudge.decoding.modes import parse_mode
    from autojudge.evaluation.report import markdown_table, operating_point
    from autojudge.evaluation.run import run_eval
    from autojudge.models.loading import load_pair

    import autojudge.judge  # noqa: F401  (registers the judge's modes)
    try:  # parsed once: records and reports are keyed by each mode's canonical name
        modes = [parse_mode(m) for m in args.modes.split(",") if m.strip()]
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    if not modes:
        raise AutojudgeError("--modes names no mode")
    task = _load_task(args.task, args.split)
    # The draft is loaded even for target-only runs: the run's meta names it, so that
    # other modes can be added to the same directory later.
    pair = load_pair(args.draft, args.target, **pair_options(args))
    judge = None
    if any(m.needs_judge for m in modes):
        from autojudge.judge.shipped import load_judge
        judge = load_judge(pair, args.judge, task=task.name)
    rows = run_eval(pair, task, args.split, [m.name for m in modes], args.out, limit=args.limit,
                    window=args.window, draft_p_min=args.draft_p_min, max_new_tokens=args.max_new_tokens,
                    judge=judge, report_only=args.report_only)
    print(markdown_table(rows))
    best = operating_point(rows)
    if best is not None:
        print(f"\noperating point (<= 1 point below exact): {best['mode']}")
    print(f"\nreport: {args.out}/summary.md, summary.csv, summary.json, tradeoff.png")
    return 0


def cmd_bench(args) -> int:
    from autojudge.bench import run_bench
    return run_bench(args)


def cmd_mine(args) -> int:
    from autojudge.mining.run import mine
    from autojudge.models.loading import load_pair
    task = _load_task(args.task, args.split)
    pair = load_pair(args.draft, args.target, **pair_options(args))
    store = mine(pair, task, args.split, args.out, limit=args.limit, max_new_tokens=args.max_new_tokens,
                 window=args.window, fast=not args.plain, shard=args.shard,
                 parallel=args.parallel, rejoin=args.rejoin)
    summary = store.summary()
    first, regenerated = summary["first_answers_cut"], summary["regenerations_cut"]
    print(f"{summary['problems']} problems, {summary['labels']} labelled mismatches, "
          f"{summary['important_fraction'] or 0:.1%} important; cut by the budget of {args.max_new_tokens}: "
          f"{first['cut']}/{first['of']} first answers, {regenerated['cut']}/{regenerated['of']} regenerations "
          f"-> {args.out}")
    return 0


def cmd_bench_mining(args) -> int:
    from autojudge.mining.run import bench_mining, parse_regeneration
    from autojudge.models.loading import load_pair
    task = _load_task(args.task, args.split)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        parse_regeneration(method)
    pair = load_pair(args.draft, args.target, **pair_options(args))
    rows = bench_mining(pair, task, args.split, args.n, args.max_new_tokens, parallel=args.parallel,
                        methods=methods)
    described = pair.target.describe()
    threads = f", {described['threads']} thread(s)" if "threads" in described else ""
    lines = [f"{task.name}, first {args.n} problems of {args.split}, <= {args.max_new_tokens} new tokens, "
             f"target on {described['backend']}{threads}; labels compared with {methods[0]}'s "
             "on the mismatches both visit", "",
             "| regeneration | labels | seconds | labels/hour | target passes/label | regenerations cut | "
             "re-joined | problems labelled alike | labels agreeing |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['labels']} | {r['seconds']:.0f} | {r['labels_per_hour']:.0f} | "
              f"{r['target_passes_per_label'] or 0:.1f} | {r['regenerations_cut']} | {r['rejoined']} | "
              f"{r['same_problems']}/{r['problems']} | {r['agreeing_labels']}/{r['shared_labels']} |" for r in rows]
    reference = rows[0]
    for row in rows[1:] if reference["labels_per_hour"] else ():
        lines.append(f"\n{row['mode']} / {reference['mode']}: "
                     f"{row['labels_per_hour'] / reference['labels_per_hour']:.2f}x labels/hour")
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as handle:
            handle.write("\n".join(lines) + "\n")
    return 0


def cmd_noise_floor(args) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from autojudge.mining.noise import null_swap_markdown, null_swaps
    from autojudge.models.loading import load_pair
    task = _load_task(args.task, args.split)
    pair = load_pair(args.draft, args.target, **pair_options(args))
    swaps = null_swaps(pair, task, args.split, args.n, args.per_problem, max_new_tokens=args.max_new_tokens,
                       seed=args.seed)
    described = pair.target.describe()
    table = null_swap_markdown(swaps, f"{task.name}, first {args.n} problems of {args.split}, "
                                      f"<= {args.max_new_tokens} new tokens, target on {described['backend']}; "
                                      "the fast regeneration path, the target's own token swapped in")
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps([asdict(s) for s in swaps], indent=1) + "\n")
    return 0


def cmd_train(args) -> int:
    from pathlib import Path

    from autojudge.judge.train import auc_markdown, auc_report, load_mined, train_judge
    for written in [args.out] + ([args.report] if args.report else []):
        if not Path(written).parent.is_dir():  # found out now, not after the cross-validation
            raise AutojudgeError(f"{written}: the folder {Path(written).parent} does not exist")
    data = load_mined(args.data)
    judge, meta = train_judge(data, features=args.features, seed=args.seed)
    judge.save(args.out)
    if args.report:
        # train_judge has already cross-validated the shipped feature set on the same folds.
        report = auc_report(data, seed=args.seed, curve_features=args.features,
                            known={args.features: {"auc": meta["validation_auc"], "C": meta["C"]}})
        with open(args.report + ".json", "w") as handle:
            json.dump(report, handle, indent=2)
        with open(args.report + ".md", "w") as handle:
            handle.write(auc_markdown(report) + "\n")
        print(auc_markdown(report), end="\n\n")
    print(f"ROC-AUC {meta['validation_auc']:.3f} ({meta['validation']['method']}) at C={meta['C']:g}; "
          f"{meta['train']['mismatches']} mismatches from {meta['train']['problems']} problems, "
          f"{meta['important_fraction']:.1%} important -> {args.out}")
    print("| recall of important | threshold | mismatches accepted |")
    print("|---|---|---|")
    for recall in (0.99, 0.95, 0.9, 0.8, 0.7, 0.5):
        threshold = judge.threshold_for_recall(recall)
        row = next(r for r in meta["thresholds"] if r["threshold"] == threshold)
        print(f"| {row['recall']:.3f} | {threshold:.4f} | {row['accept_rate']:.1%} |")
    return 0


def cmd_costs(args) -> int:
    from autojudge.costmodel import costs_report, measure_pass_costs
    from autojudge.models.loading import load_pair
    if args.check:
        return check_costs(args)
    pair = load_pair(args.draft, args.target, **pair_options(args))
    draft, target = (measure_pass_costs(m, context=args.context, repeats=args.repeats)
                     for m in (pair.draft, pair.target))
    print(costs_report(draft, target))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"pair": pair.describe(), "context": args.context,
                       "draft": draft.seconds, "target": target.seconds}, handle, indent=2)
    return 0


def check_costs(args) -> int:
    from pathlib import Path

    from autojudge.runfiles import read_records
    from autojudge.costmodel import check_against_runs, load_costs
    torch_costs, llama_costs = load_costs(args.torch_costs), load_costs(args.llamacpp_costs)
    runtimes = {
        "torch": (torch_costs[args.target], torch_costs[args.draft]),
        "llamacpp": (llama_costs[args.target], llama_costs[args.draft]),
        "mixed": (torch_costs[args.target], llama_costs[args.draft]),
    }
    print(check_against_runs(read_records(Path(args.check) / "records.jsonl"), runtimes))
    return 0


def cmd_demo(args) -> int:
    from autojudge.demo import run_demo
    return run_demo(args)


COMMANDS = {"models": cmd_models, "data": cmd_data, "generate": cmd_generate, "bench": cmd_bench,
            "costs": cmd_costs, "mine": cmd_mine, "bench-mining": cmd_bench_mining, "train": cmd_train,
            "eval": cmd_eval, "demo": cmd_demo, "noise-floor": cmd_noise_floor}
