"""The `autojudge` command line. Each subcommand is a thin layer over the library."""

from __future__ import annotations

import logging
import os
import sys

from autojudge.cli.common import load_task, quiet_libraries
from autojudge.cli.decode_commands import cmd_bench, cmd_costs, cmd_demo, cmd_eval, cmd_generate, cmd_serve
from autojudge.cli.mine_commands import (
    cmd_bench_mining,
    cmd_calibrate_checker,
    cmd_contrast_labels,
    cmd_head_to_head,
    cmd_mine,
    cmd_noise_floor,
    cmd_rule_features,
    cmd_train,
)
from autojudge.cli.parser import build_parser
from autojudge.cli.setup_commands import cmd_data, cmd_models
from autojudge.cli.task_commands import cmd_task
from autojudge.errors import AutojudgeError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.verbose:
        quiet_libraries()
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
        args.max_new_tokens = task_budget(load_task(args.task))
    elif args.command in ("demo", "bench") or getattr(args, "gsm8k", None) is not None:
        args.max_new_tokens = task_budget(GSM8K())
    else:
        args.max_new_tokens = DEFAULT_BUDGET


COMMANDS = {"models": cmd_models, "data": cmd_data, "generate": cmd_generate, "bench": cmd_bench,
            "costs": cmd_costs, "mine": cmd_mine, "bench-mining": cmd_bench_mining, "train": cmd_train,
            "eval": cmd_eval, "demo": cmd_demo, "noise-floor": cmd_noise_floor, "rule-features": cmd_rule_features,
            "contrast-labels": cmd_contrast_labels, "head-to-head": cmd_head_to_head,
            "calibrate-checker": cmd_calibrate_checker, "serve": cmd_serve, "task": cmd_task}
