"""The plugin's settings, read from vLLM's `additional_config`, checked once at start-up.

vLLM refuses configuration keys it does not know, and keeps no registry of acceptance
rules; `additional_config` is the free-form dictionary it hands to every process, the
worker included, so the settings travel there under one key:

    additional_config={"autojudge": {"judge": "my-judge.safetensors", "recall": 0.9}}

Nothing here imports vLLM: the settings are checked against plain facts about the
engine (model paths, hidden sizes, layer count, the speculative method), which the
vLLM-facing code reads off its config. Every refusal is one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from autojudge.errors import AutojudgeError

KEY = "autojudge"
KNOWN = ("judge", "threshold", "recall", "lookahead", "log")
# What the judge reads that vLLM 0.32's draft-model path hands over: the target's hidden
# states (final norm from the sampler path, a middle layer through a hook). The draft's
# hidden states and its logits are not kept by vLLM's draft-model proposer in greedy
# drafting, so judges reading them are refused rather than fed something else.
SUPPORTED_GROUPS = frozenset({"target"})


class PluginError(AutojudgeError, ValueError):
    """The plugin's settings are wrong, or do not fit the engine they are given to.

    A ValueError too, so that vLLM's own configuration checks report it as they report
    theirs."""


@dataclass(frozen=True)
class EngineFacts:
    """What the settings are checked against, read off vLLM's config by the plugin."""

    target: str  # the target's model path or name, as vLLM was given it
    target_hidden: int
    target_layers: int
    draft: str | None  # None without a separate draft model
    draft_hidden: int | None
    method: str | None  # speculative_config.method, None without speculative decoding
    graphs: bool = False  # the target's steps replay from CUDA graphs, which run no Python hooks
    v2_runner: bool = False  # vLLM's experimental V2 model runner, which has a sampler of its own


@dataclass(frozen=True)
class Settings:
    judge_path: str
    threshold: float
    lookahead: int
    log: str | None  # a JSON-lines file: one line per verification step with judged requests


def raw_settings(additional_config) -> dict | None:
    """The plugin's section of `additional_config`, or None: then vLLM runs untouched."""
    if not isinstance(additional_config, dict) or KEY not in additional_config:
        return None
    section = additional_config[KEY]
    if not isinstance(section, dict):
        raise PluginError(f'additional_config["{KEY}"] must be an object like '
                          '{"judge": "judge.safetensors", "recall": 0.9}, got ' + repr(section))
    return section


def parse(section: dict, facts: EngineFacts):
    """Check the section against the engine; return (Settings, Judge) or raise PluginError."""
    from autojudge.judge.model import Judge, JudgeError

    unknown = sorted(set(section) - set(KNOWN))
    if unknown:
        raise PluginError(f"autojudge settings: unknown key(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    if not isinstance(section.get("judge"), str) or not section["judge"]:
        raise PluginError('autojudge settings: "judge" must name a judge .safetensors file')
    if "threshold" in section and "recall" in section:
        raise PluginError('autojudge settings: give "threshold" or "recall", not both')
    if facts.method is None:
        raise PluginError("autojudge settings given, but speculative decoding is off: pass speculative_config="
                          '{"method": "draft_model", "model": DRAFT, "num_speculative_tokens": K}')
    if facts.method != "draft_model" or facts.draft is None:
        raise PluginError(f'autojudge judges a draft model\'s tokens: speculative method "{facts.method}" is not '
                          'supported (use "draft_model")')
    if facts.v2_runner:
        raise PluginError("autojudge's vLLM plugin replaces the V1 model runner's sampler; the V2 runner "
                          "(VLLM_USE_V2_MODEL_RUNNER=1) is not supported yet (docs/vllm.md)")
    lookahead = section.get("lookahead", 0)
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
        raise PluginError(f'autojudge settings: "lookahead" must be a whole number >= 0, got {lookahead!r}')
    log = section.get("log")
    if log is not None and not isinstance(log, str):
        raise PluginError(f'autojudge settings: "log" must be a file path, got {log!r}')

    try:
        judge = Judge.load(os.path.expanduser(section["judge"]))
        threshold = _threshold(section, judge)
        check_fits(judge, facts)
    except JudgeError as exc:
        raise PluginError(f"autojudge: {exc}") from None
    return Settings(section["judge"], threshold, lookahead, log), judge


def _threshold(section: dict, judge) -> float:
    for key in ("threshold", "recall"):
        value = section.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0.0 <= value <= 1.0):
            raise PluginError(f'autojudge settings: "{key}" must be a number from 0 to 1, got {value!r}')
    if "threshold" in section:
        return float(section["threshold"])
    # The same default as autojudge's own judge mode: recall 0.9 of important mismatches.
    return judge.threshold_for_recall(float(section.get("recall", 0.9)))


def check_fits(judge, facts: EngineFacts) -> None:
    """Refuse a judge for another pair, hidden size or layer, or one reading features
    this path cannot give; raises JudgeError (one line)."""
    from autojudge.errors import ModelLoadError
    from autojudge.judge.model import JudgeError
    from autojudge.models.backend import check_feature_layer

    missing = sorted(set(judge.groups) - SUPPORTED_GROUPS)
    if missing:
        raise JudgeError(f"this judge reads {', '.join(missing)} features (feature set {judge.features}); the vLLM "
                         "plugin gives the target's hidden states only: train one with --features target")
    trained = judge.meta["pair"]
    # Only the runtimes whose numbers it reads: a judge of the target's states recomputed
    # on torch keeps the labels mined with llama.cpp's draft (scripts/torch_feature_run.py).
    for key in judge.runtimes_read:
        backend = trained.get(key, {}).get("backend")
        if backend != "transformers":
            raise JudgeError(f"this judge was trained on {backend} features; vLLM computes the models in floating "
                             "point as autojudge's torch runtime does: train one with --backend torch")
    layer = judge.feature_layer
    if layer is not None:
        try:
            check_feature_layer(facts.target, layer, facts.target_layers)
        except ModelLoadError as exc:
            raise JudgeError(str(exc)) from None
        if facts.graphs:
            # A middle layer's output is taken by a forward hook; a CUDA graph replays the
            # kernels without running it (the final norm's states need no hook).
            raise JudgeError(f"this judge reads the target's layer {layer}, taken by a hook that CUDA graphs skip: "
                             "run vLLM with enforce_eager=True (--enforce-eager), or use a judge of the final norm")
    # The engine as autojudge would describe it: the same runtime kind the judge was
    # trained on, reading the judge's own layer (the plugin reads whichever it asks for),
    # so what check_compatible still tests is the pair and the hidden sizes.
    described = {"draft": model_name(facts.draft), "target": model_name(facts.target),
                 "draft_backend": {"backend": "transformers"},
                 "target_backend": {"backend": "transformers", **({"feature_layer": layer} if layer else {})}}
    judge.check_compatible(described, facts.draft_hidden, facts.target_hidden)


def model_name(path: str) -> str:
    """A registered model's name where `path` is its converted directory in autojudge's
    cache, or the copy of it made for vLLM (vllm_plugin.models), as a judge trained on
    the default pair records it; else `path` unchanged."""
    from autojudge.models.convert import converted_dir
    from autojudge.models.registry import REGISTERED
    from autojudge.vllm_plugin.models import vllm_dir_of

    if path in REGISTERED:
        return path
    try:
        real = Path(path).expanduser().resolve()
    except OSError:
        return path
    for name, model in REGISTERED.items():
        if real in (converted_dir(model).resolve(), vllm_dir_of(name).resolve()):
            return name
    return path
