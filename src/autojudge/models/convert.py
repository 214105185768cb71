"""Turn a registered GGUF model into a cached float32 safetensors checkpoint, once.

Loading a GGUF through transformers dequantises every tensor in Python (minutes);
the converted copy reloads in seconds and gives the same logits. `save_pretrained`
refuses GGUF-loaded models, so the weights are moved into a model rebuilt from the
same config and saved from there.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable

from autojudge.artifacts import (
    atomic_directory,
    cache_home,
    fetch,
    file_lock,
    make_verified,
    remove_stale_scratch,
    sha256_of,
)
from autojudge.errors import ModelLoadError
from autojudge.models.registry import RegisteredModel

log = logging.getLogger(__name__)

SOURCE_FILE = "autojudge-source.json"


def converted_dir(model: RegisteredModel) -> Path:
    return cache_home() / "models" / model.name


def gguf_file(model: RegisteredModel) -> Path:
    """Where the model's GGUF is cached (it may not be there yet)."""
    return cache_home() / "gguf" / model.gguf.name


def gguf_path(model: RegisteredModel, progress: bool = True) -> Path:
    """The verified GGUF file (kept: a GGUF runtime can use it directly); a requantized
    variant is made here from its source's, once."""
    dest = gguf_file(model)
    if model.requantized_from is None:
        return fetch(model.gguf, dest, progress=progress)
    source = gguf_path(model.requantized_from, progress)
    return make_verified(model.gguf, dest, lambda partial: _requantize(source, partial, model.quantization),
                         "llama.cpp's quantizer made another file than the pinned one "
                         "(pinned for llama-cpp-python 0.3.36)")


def _requantize(source: Path, out: Path, quantization: str) -> tuple[int, str]:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError("making a requantized GGUF needs llama-cpp-python "
                             "(pip install 'autojudge[llama]')") from exc
    from autojudge.models.llamacpp import _silence_llama_log
    _silence_llama_log(llama_cpp)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quantization.upper()}")
    params.allow_requantize = True  # the source is itself quantized
    params.nthread = 1  # the file the pin names; a few seconds either way
    log.warning("making %s from %s (once; a few seconds)", out.name.removesuffix(".partial"), source.name)
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params) != 0:
        raise ModelLoadError(f"llama.cpp could not requantize {source.name} to {quantization}")
    return out.stat().st_size, sha256_of(out)


def tokenizer_dir(model: RegisteredModel) -> Path:
    return cache_home() / "tokenizers" / model.name


def ensure_tokenizer(model: RegisteredModel, progress: bool = True) -> Path:
    """A directory with the model's tokenizer alone, read from the GGUF once.

    The llama.cpp runtime needs nothing else from transformers, so the default path
    never converts a checkpoint; reading the tokenizer out of a GGUF takes 10-25 s,
    loading the saved one about a second.
    """
    return _build_once(tokenizer_dir(model), model, _save_tokenizer, progress)


def ensure_converted(model: RegisteredModel, progress: bool = True) -> Path:
    """Return the converted checkpoint directory, fetching and converting if needed."""
    return _build_once(converted_dir(model), model, _convert, progress)


def _build_once(dest: Path, model: RegisteredModel, build: Callable[[Path, Path], None], progress: bool) -> Path:
    """`dest`, made by build(gguf, scratch) from the model's verified GGUF, unless there already.

    The directory appears only complete (atomic rename) and names the GGUF it came
    from, so one made from an older pin of the model is rebuilt, not used.
    """
    if _made_from(dest, model):
        return dest
    source = gguf_path(model, progress)
    with file_lock(dest.with_name(dest.name + ".lock")):
        if _made_from(dest, model):
            return dest
        remove_stale_scratch(dest.parent, dest.name)
        if dest.exists():
            log.warning("%s was made from another file than the pinned %s; making it again", dest, model.gguf.name)
            shutil.rmtree(dest)
        with atomic_directory(dest) as scratch:
            build(source, scratch)
            (scratch / SOURCE_FILE).write_text(json.dumps({
                "origin": model.origin,
                "gguf": model.gguf.name,
                "gguf_sha256": model.gguf.sha256,
            }, indent=2))
    return dest


def _made_from(dest: Path, model: RegisteredModel) -> bool:
    try:
        return json.loads((dest / SOURCE_FILE).read_text())["gguf_sha256"] == model.gguf.sha256
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _save_tokenizer(gguf_file: Path, out: Path) -> None:
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name).save_pretrained(out)


def _convert(gguf_file: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    log.warning("converting %s to safetensors (once; about 2-4 minutes)", gguf_file.name)
    folder, name = str(gguf_file.parent), gguf_file.name
    _save_tokenizer(gguf_file, out)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    rebuilt = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    rebuilt.load_state_dict(loaded.state_dict(), strict=True)
    rebuilt.generation_config = loaded.generation_config
    del loaded
    rebuilt.save_pretrained(out, safe_serialization=True)
