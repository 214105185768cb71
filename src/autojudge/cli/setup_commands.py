"""Commands that fetch the offline default pair and datasets."""

from __future__ import annotations

from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET, REGISTERED


def cmd_models(args) -> int:
    from autojudge.models.convert import converted_dir, ensure_converted, gguf_file
    if args.models_command == "list":
        for name, model in REGISTERED.items():
            if converted_dir(model).exists():
                state = "cached, converted for torch"
            elif gguf_file(model).exists():
                state = "cached (GGUF)"
            else:
                state = "not fetched" if model.requantized_from is None else \
                    f"made from {model.requantized_from.name} when first used"
            print(f"{name:36s} {model.origin:36s} {state}")
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
