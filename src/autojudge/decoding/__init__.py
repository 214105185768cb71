"""Speculative decoding: the loop (engine) and the acceptance policies it calls.

The names below load their modules on first use, so that importing a light submodule
(`autojudge.decoding.defaults`, say, which the CLI's parser reads) does not load torch:
a command refuses bad input in a fraction of a second.
"""

import importlib

_EXPORTS = {"DecodeStats": "engine", "Generation": "engine", "generate": "engine",
            "AcceptancePolicy": "policies", "Exact": "policies", "TopK": "policies", "Window": "policies"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"autojudge.decoding.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
