"""Commands that fetch the offline default pair and datasets."""

from __future__ import annotations

from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET, REGISTERED


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
    print(f"naturalqs: {len(datasets.load_open_qa(datasets.NATURALQS_OPEN, 'all'))} questions")
    print(f"squad: {len(datasets.load_open_qa(datasets.SQUAD, 'all'))} questions")
    return 0
