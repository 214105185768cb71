"""Commands that decode: generate, eval, the demo, benchmarks and the cost model."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

from autojudge.cli.common import decoding_options, load_task, runtime_options
from autojudge.errors import AutojudgeError

if TYPE_CHECKING:  # the modes load torch: a command imports them when it runs
    from autojudge.decoding.modes import Mode


def cmd_generate(args) -> int:
    from autojudge.decoding import defaults
    from autojudge.decoding.modes import decode
    from autojudge.models.loading import load_pair
    from autojudge.prompting import chat_prompt_ids
    from autojudge.tasks.contract import check_messages, find_problem
    from autojudge.tasks.gsm8k import GSM8K

    # The task decides the prompt (--problem, --gsm8k), the answer check and the shipped
    # judge; a free --prompt has a task only when --task names one.
    task, problem = (load_task(args.task) if args.task else None), None
    if args.problem is not None:
        if task is None:
            raise AutojudgeError("--problem ID needs --task, the task whose problem it is (a built-in name or "
                                 "module:Class)")
        problem = find_problem(task, args.problem)
        messages = check_messages(task, problem)
    elif args.gsm8k is not None:
        if task is not None and task.name != "gsm8k":
            raise AutojudgeError(f"--gsm8k decodes a GSM8K problem; for task {task.name} write --problem ID")
        task = GSM8K()
        problems = {p.id: p for p in task.load("all")}
        if args.gsm8k not in problems:
            raise AutojudgeError(f"no GSM8K problem {args.gsm8k}; ids run from 0 to {len(problems) - 1}")
        problem = problems[args.gsm8k]
        messages = task.messages(problem)
    else:
        messages = [{"role": "user", "content": args.prompt}]

    options = decoding_options(args)
    mode = _generate_mode(args)
    if args.judge and not mode.needs_judge:
        raise AutojudgeError("--judge goes with a judge mode")
    if mode.needs_judge and args.judge is None and task is None:
        # A shipped judge learnt one task's mismatches: it is not applied to a prompt of unknown kind.
        raise AutojudgeError("a judge mode needs a judge for this prompt's task: pass --judge (a file from autojudge "
                             "train), or --task gsm8k or mbpp to use the judge shipped for it")
    runtime = runtime_options(args)
    drafter, draft_length = defaults.resolve(options.drafter, options.draft_length, on_cpu=runtime.device == "cpu",
                                             exact_greedy=not mode.is_target and mode.is_lossless,
                                             draft_named=args.draft != defaults.DRAFT)
    if mode.needs_judge and args.judge is None:
        from autojudge.judge.shipped import shipped_judge_for
        shipped_judge_for(task.name, drafter)  # refused now, not after the pair has loaded
    options = replace(options, drafter=drafter, draft_length=draft_length)
    # A lookup drafts without the draft model; a judge is still checked against the pair it was trained on.
    needs_draft = not mode.is_target and (drafter == "model" or mode.needs_judge)
    pair = load_pair(args.draft if needs_draft else None, args.target, runtime)
    judge = None
    if mode.needs_judge:
        from autojudge.judge.shipped import load_judge
        judge = load_judge(pair, args.judge, task=task.name if task is not None else None, drafter=drafter)
    prompt_ids = chat_prompt_ids(pair.tokenizer, messages)
    try:
        result = decode(pair, prompt_ids, mode, options, judge=judge)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    text = pair.tokenizer.decode(result.token_ids, skip_special_tokens=True)

    report = {"text": text, "token_ids": result.token_ids, "mode": mode.name,
              "window": None if mode.is_target else args.window,
              **({} if mode.is_target else {"draft_length": draft_length, "drafter": drafter}),
              "stop_reason": result.stop_reason, **pair.describe(), "stats": result.stats.to_dict()}
    if judge is not None:  # judge@R keeps its name; the threshold R stood for is beside it
        report.update(judge=args.judge or "shipped", threshold=mode.threshold(judge))
    if problem is not None:
        report.update(**({"gsm8k_id": problem.id} if args.gsm8k is not None else {"task": task.name,
                                                                                   "problem_id": problem.id}),
                      answer=task.extract_answer(text, problem), gold=problem.reference,
                      correct=task.is_correct(text, problem))
    if args.json:
        print(json.dumps(report))
        return 0
    print(text)
    print()
    if problem is not None:
        print(f"answer {report['answer']}  gold {_shortened(problem.reference)}  "
              f"{'correct' if report['correct'] else 'wrong'}")
    print(format_stats(mode.shown(judge), result.stats))
    return 0


def _generate_mode(args) -> Mode:
    """generate's --mode, parsed once. A policy named bare takes its first argument from
    its flag: judge from --threshold or --recall (0.9), topk from --topk."""
    from autojudge.decoding.modes import POLICIES, judge_mode, parse_mode
    bare = POLICIES.get(args.mode.strip())
    judge_flags = args.threshold is not None or args.recall is not None
    try:
        if bare is not None and bare.needs_judge:
            return judge_mode(args.threshold, args.recall)
        if judge_flags:
            raise AutojudgeError("--threshold and --recall go with --mode judge")
        if bare is not None and bare.defaults[:1] == (None,):  # an argument without a default: K of topk
            return parse_mode(f"{bare.name}:{args.topk}")
        return parse_mode(args.mode)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None


def _shortened(text: str, width: int = 80) -> str:
    """A gold answer on one line (a code task's reference is a whole program)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def format_stats(mode: str, stats) -> str:
    return (f"[{mode}] {stats.new_tokens} tokens in {stats.seconds:.1f} s "
            f"({stats.tokens_per_second:.2f} tok/s), {stats.cycles} target passes, "
            f"{stats.mean_accepted:.2f} tokens/pass, accept histogram {stats.accept_histogram}")


def cmd_eval(args) -> int:
    from autojudge.cli.parser import EVAL_MODES, VLLM_EVAL_MODES
    from autojudge.decoding.modes import parse_mode
    from autojudge.evaluation.methods import Method
    from autojudge.evaluation.render import markdown_table
    from autojudge.evaluation.rows import operating_point
    from autojudge.evaluation.run import check_retime, run_eval
    from autojudge.models.loading import load_pair
    given = args.modes if args.modes is not None else VLLM_EVAL_MODES if args.engine == "vllm" else EVAL_MODES
    try:  # parsed once: records and reports are keyed by each mode's canonical name
        modes = [parse_mode(m) for m in given.split(",") if m.strip()]
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    if not modes:
        raise AutojudgeError("--modes names no mode")
    if args.engine == "vllm":
        return _eval_in_vllm(args, modes)
    methods = [Method(mode) for mode in modes]  # each on the run's pair, with the run's window
    try:  # before any model is loaded
        check_retime(args.retime, args.parallel, args.report_only)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    if args.ray is not None and (args.parallel > 1 or args.report_only):
        raise AutojudgeError("--ray decodes single-stream, one problem per worker: drop --parallel (add workers "
                             "instead) and --report-only (a report needs no cluster)")
    task = load_task(args.task, args.split)
    options = decoding_options(args)
    if any(m.needs_judge for m in modes) and args.judge is None:
        from autojudge.judge.shipped import shipped_judge_for
        shipped_judge_for(task.name, options.drafter)  # refused now, not after the pair has loaded
    if args.ray is not None:
        from autojudge.evaluation.distributed import eval_on_ray
        from autojudge.workers import PairSpec
        rows = eval_on_ray(PairSpec(args.draft, args.target, runtime_options(args)), args.task, args.split,
                           methods, args.out, options, judge_path=args.judge,
                           address=None if args.ray == "local" else args.ray, workers=args.ray_workers,
                           cpus_per_worker=args.ray_cpus, gpus_per_worker=args.ray_gpus, pin=args.ray_pin,
                           limit=args.limit, rescore=args.rescore, retime=args.retime)
    else:
        # The draft is loaded even for target-only runs: the run's meta names it, so that
        # other modes can be added to the same directory later.
        pair = load_pair(args.draft, args.target, runtime_options(args))
        judge = None
        if any(m.needs_judge for m in modes):
            from autojudge.judge.shipped import load_judge
            judge = load_judge(pair, args.judge, task=task.name, drafter=options.drafter)
        rows = run_eval(pair, task, args.split, methods, args.out, options, limit=args.limit,
                        judge=judge, report_only=args.report_only, parallel=args.parallel, rescore=args.rescore,
                        retime=args.retime)
    print(markdown_table(rows))
    best = operating_point(rows)
    if best is not None:
        print(f"\noperating point (<= 1 point below exact): {best.shown}")
    print(f"\nreport: {args.out}/summary.md, summary.csv, summary.json, tradeoff.png")
    return 0


def _eval_in_vllm(args, modes) -> int:
    """eval --engine vllm: the modes through vLLM's offline LLM (autojudge.vllm_plugin.evaluate),
    imported here only, so that autojudge's own eval never needs vLLM."""
    from autojudge.decoding import defaults
    from autojudge.evaluation.render import markdown_table
    from autojudge.models.registry import DRAFT, TARGET
    from autojudge.tasks.base import task_budget
    from autojudge.vllm_plugin.evaluate import VllmEngine, check_modes, run_vllm_eval
    unsupported = [flag for flag, used in (("--ray", args.ray is not None), ("--parallel", args.parallel > 1),
                                           ("--retime", args.retime), ("--rescore", args.rescore),
                                           ("--drafter lookup", args.drafter == "lookup"),
                                           ("--draft-length adaptive", args.draft_length == "adaptive")) if used]
    if unsupported:
        raise AutojudgeError(f"--engine vllm batches problems in vLLM, which drafts whole windows from the draft "
                             f"model: drop {', '.join(unsupported)}")
    check_modes(modes)  # before any model loads
    task = load_task(args.task, args.split)
    # The Q4_0 pair that autojudge's engine decodes by default is llama.cpp's; vLLM runs
    # float32 checkpoints: without --draft/--target, the default pair's float32 conversion.
    draft = DRAFT.name if args.draft == defaults.DRAFT else args.draft
    target = TARGET.name if args.target == defaults.TARGET else args.target
    engine = VllmEngine(draft=draft, target=target, window=args.window)
    rows = run_vllm_eval(task, args.split, modes, args.out, engine, args.max_new_tokens or task_budget(task),
                         judge_path=args.judge, limit=args.limit, batch=args.batch, report_only=args.report_only)
    print(markdown_table(rows))
    print(f"\nreport: {args.out}/summary.md (with vLLM's counters), summary.csv, summary.json, tradeoff.png")
    return 0


def cmd_bench(args) -> int:
    from autojudge.evaluation.bench import BenchSettings, run_bench
    from autojudge.evaluation.methods import parse_methods
    from autojudge.evaluation.render import markdown_table
    try:  # before any model loads: a misspelt method costs nothing
        parse_methods(args.methods)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    task = load_task(args.task, args.split)
    settings = BenchSettings(methods=args.methods, n=args.n, out=args.out, task=task.name, split=args.split,
                             max_new_tokens=args.max_new_tokens, draft=args.draft, target=args.target,
                             judge=args.judge, runtime_options=runtime_options(args))
    rows = run_bench(settings, task)
    print(markdown_table(rows))
    print(f"\nreport: {args.out}/summary.md, summary.csv, summary.json, tradeoff.png")
    return 0


def cmd_costs(args) -> int:
    from autojudge.evaluation.costmodel import costs_report, measure_pass_costs
    from autojudge.models.loading import load_pair
    if args.check:
        return check_costs(args)
    pair = load_pair(args.draft, args.target, runtime_options(args))
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

    from autojudge.evaluation.costmodel import check_against_runs, load_costs
    from autojudge.runfiles import read_records
    costs = {"torch": load_costs(args.torch_costs), "llamacpp": load_costs(args.llamacpp_costs)}
    print(check_against_runs(read_records(Path(args.check) / "records.jsonl"), costs, args.draft, args.target))
    return 0


def cmd_demo(args) -> int:
    from autojudge.decoding.modes import judge_mode
    from autojudge.demo import run_demo
    return run_demo(args.n, decoding_options(args), runtime=runtime_options(args), judge_path=args.judge,
                    judged=judge_mode(args.threshold, args.recall))


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from autojudge.serve.app import ServerOptions, build_app
    except ImportError as exc:
        raise AutojudgeError(f"the server needs its extra: pip install 'autojudge[serve]' ({exc.name} is missing)") \
            from None
    from autojudge.decoding.modes import parse_mode
    from autojudge.models.loading import load_pair
    try:
        default = parse_mode(args.mode)
    except ValueError as exc:
        raise AutojudgeError(f"--mode: {exc}") from None
    # Checked here, before any model loads, by the DecodingOptions every request's are made from.
    options = ServerOptions(mode=default, decoding=decoding_options(args), runtime=runtime_options(args),
                            max_waiting=args.max_waiting, slots=args.slots)
    pair = load_pair(args.draft, args.target, options.runtime)
    judge = None
    if args.judge or args.task or default.needs_judge:
        from autojudge.judge.shipped import load_judge
        judge = load_judge(pair, args.judge, task=args.task or "gsm8k")
    app = build_app(pair, options, judge)  # makes the slots: refuses more than the runtime holds
    slots = app.state.slots.size
    print(f"serving {pair.target.name} (draft {pair.draft.name if pair.draft else '-'}) on "
          f"http://{args.host}:{args.port}/v1, mode {default.shown(judge)}, "
          f"{slots} request{'s' * (slots > 1)} at once", flush=True)
    del pair  # several slots decode on a load of each model of their own: free this one (GBs)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
