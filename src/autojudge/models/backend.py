"""The one interface decoding and mining need from a runtime.

A backend holds one sequence with its KV cache. `forward` appends tokens and returns,
for the last n of them, the logits of the next token and a hidden state, the judge's
features: the last layer's after the final norm, or a middle layer's where the model
was told to read one (`read_features_from`). `truncate` rolls the cache back. Decoding,
mining and the judge never know which runtime computed the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from autojudge.errors import ModelLoadError
from autojudge.models.batching import PassGate


@dataclass
class StepOutput:
    logits: torch.Tensor  # [n, vocab] float32: next-token logits after each of the last n tokens
    hidden: torch.Tensor  # [n, hidden] float32: the state after each of the last n tokens (final norm, or
    # the feature layer's output)


class CausalLM(Protocol):
    name: str
    vocab_size: int
    hidden_size: int
    max_context: int

    tokens: list[int]  # the token ids whose keys and values are in the cache, in order

    @property
    def cached_length(self) -> int:
        """len(tokens)."""

    def forward(self, token_ids: Sequence[int], n_logits: int | None = None) -> StepOutput:
        """Append `token_ids` to the cached sequence.

        `n_logits` limits the outputs to the last n positions (None: all); the
        vocabulary projection is a large share of a pass, and a prefill needs one row.
        """

    def truncate(self, length: int) -> None:
        """Keep the first `length` cached tokens, drop the rest."""

    def reset(self) -> None:
        """Forget the cached sequence."""

    def describe(self) -> dict:
        """What a judge must match to reuse features from this backend (runtime, dtype...)."""

    def read_features_from(self, layer: int | None) -> None:
        """Make `forward`'s hidden states layer `layer`'s output (1 to the number of layers
        minus 1, counted as transformers counts hidden states: layer 1 is the first block's
        output), or with None the last layer's after the final norm (the default). A
        middle layer can tell the judge more; logits are unchanged. Forgets the cache."""


# Draft tokens one verification pass checks, at most (a pass reads them and the pending token).
MAX_WINDOW = 64


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def keep_shared_prefix(model: CausalLM, seq: Sequence[int], at_most: int) -> int:
    """Roll the model's cache back to what it shares with `seq`, at most `at_most` tokens
    (the last tokens a caller needs outputs for must be read again); return that length.
    The caller then forwards seq[returned:]: the rest, never the shared prefix again."""
    keep = min(common_prefix_length(model.tokens, seq), at_most)
    model.truncate(keep)
    return keep


def another_sequence(model: CausalLM) -> CausalLM:
    """A second sequence on `model`'s loaded weights, with its own empty cache: work
    beside decoding (an answer checker, say) without disturbing its cache or loading the
    model twice. llama.cpp: another sequence id in the same KV cache; torch: another
    cache over the same modules."""
    make = getattr(model, "another_sequence", None)
    if make is None:
        raise ModelLoadError(f"{model.name}: the {model.describe().get('backend', '?')} backend holds one "
                             "sequence per loaded model")
    return make()


def check_room(model: CausalLM, n_new: int) -> None:
    """Refuse an empty forward or one that would overflow the context."""
    if n_new < 1:
        raise ValueError("forward needs at least one token")
    if model.cached_length + n_new > model.max_context:
        raise ValueError(f"{model.name}: {model.cached_length + n_new} tokens exceed "
                         f"the context of {model.max_context}")


@dataclass
class ModelPair:
    draft: CausalLM | None  # None when only the target is needed
    target: CausalLM
    tokenizer: object  # the target's tokenizer; the draft's was checked to be the same
    stop_ids: frozenset[int]

    def describe(self, machine: bool = True) -> dict:
        """Models and runtimes; `machine=False` leaves out thread counts, which depend on
        the machine, so that a long job may resume on another one."""
        described = {"target": self.target.name, "target_backend": _backend(self.target, machine)}
        if self.draft is not None:
            described.update(draft=self.draft.name, draft_backend=_backend(self.draft, machine))
        return described

    def parallel(self, n: int) -> tuple[list[ModelPair], PassGate]:
        """n pairs on the same weights, each with its own sequences, for n threads whose
        passes the returned gate merges (each thread inside `gate.member()`)."""
        models = [m for m in (self.target, self.draft) if m is not None]
        if not all(hasattr(m, "parallel") for m in models):
            raise ModelLoadError("running several sequences side by side needs the llama.cpp backend")
        gate = PassGate()
        targets = self.target.parallel(n, gate)
        drafts = self.draft.parallel(n, gate) if self.draft is not None else [None] * n
        return [ModelPair(d, t, self.tokenizer, self.stop_ids) for d, t in zip(drafts, targets)], gate


def feature_layer_name(layer: int | None) -> str:
    """What a feature layer is called in errors, judges and mining runs: "final norm" for
    the default (None), else "layer N"."""
    return "final norm" if layer is None else f"layer {layer}"


def check_feature_layer(name: str, layer: int, layers: int) -> None:
    """Refuse a feature layer the model lacks; the last one is the default, after the final norm."""
    if not 1 <= layer < layers:
        raise ModelLoadError(f"{name}: feature layer {layer} is not a middle layer of its {layers} "
                             f"(choose 1 to {layers - 1}; the default reads the last, after the final norm)")


def _backend(model: CausalLM, machine: bool) -> dict:
    return {k: v for k, v in model.describe().items() if machine or k != "threads"}
