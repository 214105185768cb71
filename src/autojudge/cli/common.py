"""What every command shares: loading a task, the runtime options, quiet libraries."""

from __future__ import annotations

import os
from dataclasses import fields

from autojudge.errors import AutojudgeError
from autojudge.models.runtime import RuntimeOptions


def load_task(name: str, split: str | None = None):
    """The task, checked before any model is loaded: that it exists, keeps the task
    contract (autojudge.tasks.contract) and gives problems for `split`."""
    from autojudge.tasks import get_task
    from autojudge.tasks.contract import check_split
    try:
        task = get_task(name)
        if split is not None:
            check_split(task, split)
    except ValueError as exc:
        raise AutojudgeError(str(exc)) from None
    return task


def runtime_options(args) -> RuntimeOptions:
    """The runtime options a command was given, built once per command; a command that
    takes only some of them (bench: --linear; demo: --backend) leaves the rest at their
    defaults."""
    given = {f.name: getattr(args, f.name) for f in fields(RuntimeOptions) if hasattr(args, f.name)}
    if "dtype" in given:
        given["dtype"] = _torch_dtype(given["dtype"], given["device"])
    return RuntimeOptions(**given)


def _torch_dtype(name: str, device: str):
    """The torch dtype --dtype names; auto: float32 on a CPU, bfloat16 on a GPU."""
    import torch  # here, not at the top: `autojudge --help` starts without torch
    if name == "auto":
        name = "float32" if device == "cpu" else "bfloat16"
    return getattr(torch, name)


def quiet_libraries() -> None:
    """transformers prints a bar per loaded model and chatty warnings; ours say enough.

    Both settings are read when transformers is imported, which happens later.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def decoding_options(args):
    """The DecodingOptions a command was given (--window, --max-new-tokens, --draft-p-min,
    --draft-length, --drafter; those it lacks at decoding.defaults), checked before any
    model is loaded."""
    from autojudge.decoding import defaults
    from autojudge.decoding.modes import DecodingOptions  # here: the grammar starts without torch
    try:
        return DecodingOptions(args.window, args.max_new_tokens, getattr(args, "draft_p_min", defaults.DRAFT_P_MIN),
                               getattr(args, "draft_length", defaults.DRAFT_LENGTH),
                               getattr(args, "drafter", defaults.DRAFTER))
    except ValueError as exc:
        raise AutojudgeError(f"--{str(exc).replace('_', '-')}") from None
