"""What every command shares: loading a task, the runtime options, quiet libraries."""

from __future__ import annotations

import os

from autojudge.errors import AutojudgeError


def load_task(name: str, split: str | None = None):
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


def quiet_libraries() -> None:
    """transformers prints a bar per loaded model and chatty warnings; ours say enough.

    Both settings are read when transformers is imported, which happens later.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
