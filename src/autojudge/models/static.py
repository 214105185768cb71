"""The transformers backend on a static KV cache; on a GPU, each step replays a CUDA graph.

Eager PyTorch is launch-bound on a GPU for models of a few billion parameters: a step
of the default target launches hundreds of small kernels and costs about the same for
1 token as for 64 (docs/speed.md, section 8). A CUDA graph launches them all at once.
Graphs need fixed addresses, so the keys and values live in preallocated tensors
(transformers' StaticCache) and everything a step depends on (token ids, positions,
the attention mask) is computed on the device from tensors that never move.

Rolling the cache back only moves the write position: entries past it stay in memory
but the mask hides them, and the next step overwrites them. One graph is captured per
(tokens in, logits out) shape the first time it is needed; a pass longer than any
speculation window (a prompt) runs eagerly on the same cache. The cache grows by
doubling when a sequence outgrows it, which drops the graphs (they hold its addresses).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from transformers import PreTrainedModel, StaticCache

from autojudge.errors import ModelLoadError
from autojudge.models.backend import MAX_WINDOW, StepOutput, check_room
from autojudge.models.hf import TransformersLM

MAX_GRAPH_TOKENS = MAX_WINDOW + 1  # a verification pass of the largest window, and the pending token
ROUND = 64  # cache capacity is a multiple of this


def static_cache_unsupported(model: PreTrainedModel) -> str | None:
    """Why this model cannot run on StaticCacheLM, or None if it can.

    The mask built here is plain causal attention over every cached token; a model with
    sliding-window layers would need their window applied too.
    """
    config = model.config.get_text_config()
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        return f"layers of types {sorted(layer_types)}; only full attention is supported"
    return None


class StaticCacheLM(TransformersLM):
    """One sequence's state for a transformers causal LM on a static cache (see backend.CausalLM).

    Only for models whose decoder and LM head can be called apart exactly (the torch
    backend checks this on a probe; see HFCausalLM._split_agrees).
    """

    def __init__(self, model: PreTrainedModel, name: str, linear: str = "default",
                 capacity: int = 1024, cuda_graphs: bool | None = None):
        super().__init__(model, name, linear)
        reason = "no separate decoder" if self._decoder is None else static_cache_unsupported(model)
        if reason:
            raise ValueError(f"{name}: cannot use a static cache: {reason}")
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"{name}: CUDA graphs need a CUDA device, not {self.device}")
        self._ids = torch.zeros(1, MAX_GRAPH_TOKENS, dtype=torch.long, device=self.device)
        self._allocate(min(_round_up(capacity), self.max_context))

    def _allocate(self, capacity: int) -> None:
        """A fresh cache of `capacity` tokens holding what the old one held."""
        old = getattr(self, "cache", None)
        cache = StaticCache(config=self.config, max_cache_len=capacity)
        heads = self.config.num_key_value_heads
        head_dim = getattr(self.config, "head_dim", None) or self.hidden_size // self.config.num_attention_heads
        cache.early_initialization(batch_size=1, num_heads=heads, head_dim=head_dim,
                                   dtype=self.dtype, device=self.device)
        # One tensor holds every layer's write position, so a rollback is one fill_.
        lengths = torch.zeros(len(cache.layers), dtype=torch.long, device=self.device)
        for i, layer in enumerate(cache.layers):
            layer.cumulative_length = lengths[i]
        if old is not None:
            kept = self.cached_length
            for new_layer, old_layer in zip(cache.layers, old.layers):
                new_layer.keys[:, :, :kept] = old_layer.keys[:, :, :kept]
                new_layer.values[:, :, :kept] = old_layer.values[:, :, :kept]
            lengths.fill_(kept)
        self.cache, self._lengths, self.capacity = cache, lengths, capacity
        self._key_slots = torch.arange(capacity, device=self.device)
        self._masked = torch.tensor(torch.finfo(self.dtype).min, dtype=self.dtype, device=self.device)
        self._visible = torch.tensor(0, dtype=self.dtype, device=self.device)
        # Graphs read the old cache's addresses; they are captured again on demand.
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None

    def _step(self, input_ids: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over `input_ids` [1, n]: the last `keep` rows of logits and hidden states.

        Only device tensors decide what it computes, so it can be captured in a graph.
        """
        n = input_ids.shape[1]
        positions = torch.arange(n, device=self.device) + self._lengths[0]  # before the layers advance it
        visible = self._key_slots[None, :] <= positions[:, None]  # [n, capacity]
        mask = torch.where(visible, self._visible, self._masked)[None, None]
        out = self._decoder(input_ids=input_ids, attention_mask=mask, position_ids=positions[None],
                            past_key_values=self.cache, use_cache=True)
        hidden = out.last_hidden_state[0, -keep:]  # after the final norm: the judge's feature
        return self._head(hidden), hidden

    def _graph(self, n: int, keep: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None:
        """The graph of a pass of n tokens keeping `keep` rows (None: the model cannot be captured)."""
        key = (n, keep)
        if key not in self._graphs:
            input_ids = self._ids[:, :n]
            start = self.cached_length
            # Warm-up passes on a side stream, as torch.cuda.graph requires; they write
            # keys past the valid ones (hidden by the mask) and the position is reset.
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._step(input_ids, keep)
                    self._lengths.fill_(start)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, pool=self._pool):
                    logits, hidden = self._step(input_ids, keep)
            except RuntimeError as exc:
                # A model that syncs with the host inside its forward (`.item()`, data-
                # dependent shapes) cannot be captured; it still runs, eagerly.
                self._graphs.clear()
                self.cuda_graphs = False
                warnings.warn(f"{self.name}: cannot capture a CUDA graph, stepping eagerly "
                              f"({str(exc).strip().splitlines()[0]})", stacklevel=3)
                return None
            finally:
                self._lengths.fill_(start)  # capturing records the advance without running it
            self._graphs[key] = (graph, logits, hidden)
        return self._graphs[key]

    @torch.inference_mode()
    def forward(self, token_ids: Sequence[int], n_logits: int | None = None) -> StepOutput:
        n = len(token_ids)
        check_room(self, n)
        if self.cached_length + n > self.capacity:
            self._allocate(min(_round_up(max(self.cached_length + n, 2 * self.capacity)), self.max_context))
        keep = n if n_logits is None else min(n_logits, n)
        captured = None
        if self.cuda_graphs and n <= MAX_GRAPH_TOKENS:
            self._ids[0, :n].copy_(torch.tensor(token_ids))
            captured = self._graph(n, keep)
        if captured is not None:
            graph, logits, hidden = captured
            graph.replay()
        else:
            logits, hidden = self._step(torch.tensor([list(token_ids)], device=self.device), keep)
        self.tokens.extend(token_ids)
        # Copies: a graph's outputs are overwritten by its next replay.
        return StepOutput(logits=logits[:, : self.vocab_size].to(torch.float32, copy=True),
                          hidden=hidden.to(torch.float32, copy=True))

    def truncate(self, length: int) -> None:
        if length > self.cached_length:
            raise ValueError(f"cannot truncate {self.cached_length} cached tokens to {length}")
        if length < self.cached_length:
            self._lengths.fill_(length)  # later steps overwrite what lies past it
            del self.tokens[length:]

    def reset(self) -> None:
        self.truncate(0)

    def read_features_from(self, layer: int | None) -> None:
        if layer is not None:  # a hook's tensor inside a replayed graph is not one we can trust
            raise ModelLoadError(f"{self.name}: a middle feature layer needs the dynamic cache "
                                 "(--no-cuda-graphs)")

    def describe(self) -> dict:
        return {**super().describe(), "kv_cache": "static", "cuda_graphs": self.cuda_graphs}


def _round_up(n: int) -> int:
    return -(-n // ROUND) * ROUND
