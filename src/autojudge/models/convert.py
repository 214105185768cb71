"""Turn a registered GGUF model into a cached float32 safetensors checkpoint, once.

Loading a GGUF through transformers dequantises every tensor in Python (minutes);
the converted copy reloads in seconds and gives the same logits. `save_pretrained`
refuses GGUF-loaded models, so the weights are moved into a model rebuilt from the
same config and saved from there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from autojudge.artifacts import (
    atomic_directory,
    cache_home,
    fetch,
    file_lock,
    remove_stale_scratch,
)
from autojudge.models.registry import RegisteredModel

log = logging.getLogger(__name__)

SOURCE_FILE = "autojudge-source.json"


def converted_dir(model: RegisteredModel) -> Path:
    return cache_home() / "models" / model.name


def gguf_path(model: RegisteredModel, progress: bool = True) -> Path:
    """The verified GGUF file (kept: a GGUF runtime can use it directly)."""
    return fetch(model.gguf, cache_home() / "gguf" / model.gguf.name, progress=progress)


def tokenizer_dir(model: RegisteredModel) -> Path:
    return cache_home() / "tokenizers" / model.name


def ensure_tokenizer(model: RegisteredModel, progress: bool = True) -> Path:
    """A directory with the model's tokenizer alone, read from the GGUF once.

    The llama.cpp runtime needs nothing else from transformers, so the default path
    never converts a checkpoint; reading the tokenizer out of a GGUF takes 10-25 s,
    loading the saved one about a second.
    """
    dest = tokenizer_dir(model)
    if dest.exists():
        return dest
    source = gguf_path(model, progress)
    with file_lock(dest.with_name(dest.name + ".lock")):
        if dest.exists():
            return dest
        remove_stale_scratch(dest.parent, dest.name)
        from transformers import AutoTokenizer
        with atomic_directory(dest) as scratch:
            AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name).save_pretrained(scratch)
    return dest


def ensure_converted(model: RegisteredModel, progress: bool = True) -> Path:
    """Return the converted checkpoint directory, fetching and converting if needed.

    The directory appears only complete (atomic rename), so its existence is proof.
    """
    dest = converted_dir(model)
    if dest.exists():
        return dest
    source = gguf_path(model, progress)
    with file_lock(dest.with_name(dest.name + ".lock")):
        if dest.exists():
            return dest
        remove_stale_scratch(dest.parent, dest.name)
        log.warning("converting %s to safetensors (once; about 2-4 minutes)", model.name)
        with atomic_directory(dest) as scratch:
            _convert(source, scratch)
            (scratch / SOURCE_FILE).write_text(json.dumps({
                "origin": model.origin,
                "gguf": model.gguf.name,
                "gguf_sha256": model.gguf.sha256,
            }, indent=2))
    return dest


def _convert(gguf_file: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.save_pretrained(out)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    rebuilt = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    rebuilt.load_state_dict(loaded.state_dict(), strict=True)
    rebuilt.generation_config = loaded.generation_config
    del loaded
    rebuilt.save_pretrained(out, safe_serialization=True)
