"""Resolve model names, load a draft/target pair, and refuse pairs that cannot work.

A model is named by a registered short name (the offline default pair), a local
directory, or a Hugging Face id (for users with a hub; nothing in the default path
downloads). Speculative decoding compares token ids, so both models must share one
vocabulary: a mismatch is an error that names both models.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

from autojudge.errors import ModelLoadError
from autojudge.models.backend import CausalLM, ModelPair, another_sequence
from autojudge.models.hf import HFCausalLM
from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET, REGISTERED
from autojudge.models.runtime import RuntimeOptions, check_runs_on, get_runtime
from autojudge.models.static import StaticCacheLM, static_cache_unsupported

log = logging.getLogger(__name__)


def resolve(name: str, progress: bool = True) -> str:
    """Map a model name to what `from_pretrained` takes, converting registered models once."""
    if name in REGISTERED:
        from autojudge.models.convert import ensure_converted
        return str(ensure_converted(REGISTERED[name], progress=progress))
    path = Path(name).expanduser()
    if path.is_file():
        raise ModelLoadError(f"{name}: a file, not a model directory (GGUF files need --backend llamacpp)")
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{name}: a directory without config.json is not a model")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelLoadError(f"{name}: no such model directory")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelLoadError(f"{name}: no such local directory, and the hub is off (HF_HUB_OFFLINE=1)")
    return name  # a hub id; transformers reports whether it can be had


def load_tokenizer(name: str):
    from transformers import AutoTokenizer
    try:
        if name in REGISTERED:  # no converted checkpoint needed, which llama.cpp does without
            from autojudge.models.convert import ensure_tokenizer
            tokenizer = AutoTokenizer.from_pretrained(ensure_tokenizer(REGISTERED[name]))
        elif name.endswith(".gguf"):
            path = Path(name).expanduser()
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        else:
            tokenizer = AutoTokenizer.from_pretrained(resolve(name))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {name}: {_first_line(exc)}") from exc
    # transformers builds an empty tokenizer, silently, for a directory without one.
    if len(tokenizer.get_vocab()) < 2:
        raise ModelLoadError(f"{name}: no tokenizer files found next to the model")
    return tokenizer


def load_model(name: str, runtime: RuntimeOptions = RuntimeOptions(backend="torch")) -> CausalLM:
    """Load one model on `runtime.backend` (a runtime of autojudge.models.runtime.RUNTIMES,
    or "auto": the one it picks for this model alone); `draft_backend` is load_pair's."""
    runtime = runtime.resolved(name)
    return get_runtime(runtime.backend).load(name, runtime)


def load_llamacpp(name: str, runtime: RuntimeOptions | None = None) -> CausalLM:
    """Of `runtime`, only `uniform_passes` is read: llama.cpp runs on the CPU, in the GGUF's own format."""
    from autojudge.models.llamacpp import LlamaCppLM
    uniform = runtime is not None and runtime.uniform_passes
    if name in REGISTERED:
        from autojudge.models.convert import gguf_path
        return LlamaCppLM(gguf_path(REGISTERED[name]), name=name, uniform_passes=uniform)
    path = Path(name).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise ModelLoadError(f"{name}: the llama.cpp backend needs a registered name or a .gguf file")
    return LlamaCppLM(path, name=name, uniform_passes=uniform)


def load_torch(name: str, runtime: RuntimeOptions) -> CausalLM:
    """`runtime.linear="onednn"` routes float32 CPU linears through oneDNN (faster verification).

    On a GPU, a model whose decoder and LM head can be called apart runs on a static
    cache with each step replayed from a CUDA graph (models/static.py), unless
    `runtime.cuda_graphs` is false.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM
    dtype, device, linear = runtime.dtype, runtime.device, runtime.linear
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve(name), dtype=dtype).to(device)
    # A truncated weights file raises SafetensorError; weights of the wrong shape, RuntimeError.
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(f"cannot load model {name}: {_first_line(exc)}") from exc
    if linear == "onednn" and device == "cpu" and dtype == torch.float32:
        from autojudge.models.onednn import use_onednn_linear
        use_onednn_linear(model)
    else:
        linear = "default"
    lm = HFCausalLM(model, name=name, linear=linear)
    if device.startswith("cuda") and runtime.cuda_graphs and lm.split and static_cache_unsupported(model) is None:
        return StaticCacheLM(model, name=name, linear=linear)
    return lm


def check_device(device: str) -> None:
    """Fail with one line, before any weights are read, on a device torch cannot use."""
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise ModelLoadError(f"cannot use device {device!r}: {_first_line(exc)}") from exc


def check_same_vocabulary(draft_name: str, draft_tok, target_name: str, target_tok) -> None:
    draft_vocab, target_vocab = draft_tok.get_vocab(), target_tok.get_vocab()
    if draft_vocab != target_vocab:
        differing = sorted(set(draft_vocab.items()) ^ set(target_vocab.items()), key=lambda kv: kv[1])
        token, token_id = differing[0]
        raise ModelLoadError(
            f"draft {draft_name} and target {target_name} have different vocabularies "
            f"({len(draft_vocab)} vs {len(target_vocab)} tokens; e.g. id {token_id} is {token!r} "
            f"in only one); speculative decoding needs one"
        )


def stop_token_ids(name: str, tokenizer) -> frozenset[int]:
    """EOS ids from the tokenizer, the generation config and the registry."""
    ids = {tokenizer.eos_token_id}
    if name in REGISTERED:
        ids.update(tokenizer.convert_tokens_to_ids(list(REGISTERED[name].stop_tokens)))
    elif not name.endswith(".gguf"):
        from transformers import GenerationConfig
        try:
            configured = GenerationConfig.from_pretrained(resolve(name)).eos_token_id
            ids.update(configured if isinstance(configured, list) else [configured])
        except OSError:
            pass  # no generation_config.json: the tokenizer's EOS is all there is
    return frozenset(i for i in ids if i is not None)


def load_pair(draft: str | None = DEFAULT_DRAFT, target: str = DEFAULT_TARGET,
              runtime: RuntimeOptions = RuntimeOptions()) -> ModelPair:
    """Load both models (the draft only if named), refusing mismatched vocabularies.

    `runtime.backend` applies to both models unless `runtime.draft_backend` names
    another for the draft (a mixed pair, e.g. a llama.cpp draft proposing for a torch
    target). "auto" picks llama.cpp on a CPU for GGUF-backed models, else torch.
    """
    runtime = runtime.resolved(draft, target)
    if runtime.device != "cpu":
        check_runs_on(runtime.device, runtime.backend, runtime.draft_backend)
        check_device(runtime.device)
    target_tok = load_tokenizer(target)
    stop_ids = stop_token_ids(target, target_tok)
    if draft is not None:
        check_same_vocabulary(draft, load_tokenizer(draft), target, target_tok)
    target_model = load_model(target, runtime)
    if runtime.feature_layer is not None:
        target_model.read_features_from(runtime.feature_layer)
    if draft is None:
        return ModelPair(None, target_model, target_tok, stop_ids)
    draft_model = load_model(draft, runtime.for_draft())
    share_logits(draft_model, target_model, target_tok)
    return ModelPair(draft_model, target_model, target_tok, stop_ids)


def model_beside(pair: ModelPair, name: str | None, runtime: RuntimeOptions) -> tuple[CausalLM, object]:
    """A model and its tokenizer for work beside decoding `pair` (comparing answers, say):
    `name` loaded alone with `runtime`, or with None another sequence of the pair's target,
    which loads nothing more and leaves the decoding cache alone."""
    if name is None:
        return another_sequence(pair.target), pair.tokenizer
    alone = load_pair(None, name, runtime)
    return alone.target, alone.tokenizer


def share_logits(draft: CausalLM, target: CausalLM, tokenizer) -> None:
    """Make both models predict over the same ids.

    Siblings with one tokenizer may pad their output layers differently (Qwen2.5: 151936
    logits up to 3B, 152064 at 7B). Ids past the tokenizer's are padding that no text
    holds, so both models are cut to the narrower width, when every token fits in it.
    """
    shared = min(draft.vocab_size, target.vocab_size)
    n_tokens = max(tokenizer.get_vocab().values()) + 1
    if shared < n_tokens:
        raise ModelLoadError(
            f"draft {draft.name} predicts {draft.vocab_size} logits, target {target.name} "
            f"{target.vocab_size}, but their tokenizer has ids up to {n_tokens - 1}; speculative "
            "decoding needs both to cover the vocabulary"
        )
    draft.vocab_size = target.vocab_size = shared


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]




def load_pairs(draft: str, target: str, backends: dict[str, tuple[str, str]],
               runtime: RuntimeOptions = RuntimeOptions()) -> dict[str, ModelPair]:
    """One pair per named runtime, {name: (target backend, draft backend)}, for a side-by-side
    comparison of runtimes: each model is loaded once per backend and shared between the
    pairs that use it. `runtime` gives the rest (device, dtype, kernels)."""
    tokenizer = load_tokenizer(target)
    check_same_vocabulary(draft, load_tokenizer(draft), target, tokenizer)
    stop_ids = stop_token_ids(target, tokenizer)
    loaded: dict[tuple[str, str], CausalLM] = {}

    def model(name: str, backend: str) -> CausalLM:
        if (name, backend) not in loaded:
            loaded[name, backend] = load_model(name, replace(runtime, backend=backend, draft_backend=None))
        return loaded[name, backend]

    pairs = {}
    for name, (target_backend, draft_backend) in backends.items():
        target_model, draft_model = model(target, target_backend), model(draft, draft_backend)
        share_logits(draft_model, target_model, tokenizer)
        pairs[name] = ModelPair(draft_model, target_model, tokenizer, stop_ids)
    return pairs
