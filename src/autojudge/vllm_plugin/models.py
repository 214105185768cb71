"""The default pair's float32 checkpoints, as vLLM will load them.

autojudge's converter writes each registered model to a float32 safetensors directory
(autojudge.models.convert), keeping the GGUF's `quantization_config` in config.json,
which transformers ignores once the weights are plain tensors. vLLM reads it as a
quantization method and refuses "gguf" for a safetensors checkpoint. So vLLM gets a
sibling directory: the same files by symbolic link (no copy of the 9 GB), with a
config.json without that entry. The plugin names it back to the registered model
(settings.model_name), so a judge trained on the pair fits it.

    python -m autojudge.vllm_plugin.models qwen2.5-coder-1.5b-instruct   # prints the directory
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from autojudge.artifacts import atomic_directory, cache_home
from autojudge.errors import ModelLoadError
from autojudge.models.registry import REGISTERED


def vllm_dir_of(name: str) -> Path:
    return cache_home() / "vllm-models" / name


def vllm_model_dir(name: str) -> Path:
    """A directory vLLM loads for registered model `name` (converted first if needed)."""
    from autojudge.models.convert import ensure_converted
    if name not in REGISTERED:
        raise ModelLoadError(f"{name}: not a registered model (one of {', '.join(REGISTERED)}); "
                             "pass vLLM your own model directory instead")
    source = ensure_converted(REGISTERED[name])
    dest = vllm_dir_of(name)
    if _current(dest, source):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        for path in dest.iterdir():
            path.unlink()
        dest.rmdir()
    with atomic_directory(dest) as scratch:
        for path in source.iterdir():
            if path.name != "config.json":
                (scratch / path.name).symlink_to(path.resolve())
        config = json.loads((source / "config.json").read_text())
        config.pop("quantization_config", None)
        (scratch / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def _current(dest: Path, source: Path) -> bool:
    """Whether `dest` links to the checkpoint `source` holds now (a re-conversion makes
    new files, which the links must follow)."""
    try:
        linked = [p for p in source.iterdir() if p.name != "config.json"]
        return (dest / "config.json").is_file() and all((dest / p.name).resolve() == p.resolve() for p in linked)
    except OSError:
        return False


if __name__ == "__main__":
    for model_name in sys.argv[1:] or [n for n in REGISTERED if "q4_0" not in n]:
        print(vllm_model_dir(model_name))
