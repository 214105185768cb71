"""The llama.cpp backend for GGUF models (CPU), through llama-cpp-python's C API.

One `llama_decode` call returns, for every token flagged as an output, both the
logits and the final-norm hidden state (embeddings with pooling "none"), so the
judge's features cost nothing extra. The KV cache is rolled back with
`llama_memory_seq_rm`. Only the low-level API is used: the high-level `Llama.eval`
splits input into batches and would overwrite the hidden states of earlier batches.

A loaded model (`_Runtime`) can hold several sequences in one KV cache. Each
`LlamaCppLM` is one of them; `LlamaCppLM.parallel` makes several, and threads that
drive them through a shared `PassGate` (autojudge.models.batching) have their
passes merged into one `llama_decode`: on a CPU, four tokens in one pass cost about
twice one token, so independent work done side by side costs about half as much.
With uniform passes each sequence has a KV stream of its own, so that merging its
passes with others' does not change its logits (`separate_streams`).
"""

from __future__ import annotations

import ctypes
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from autojudge.errors import ModelLoadError
from autojudge.models.backend import StepOutput, check_feature_layer, check_room
from autojudge.models.batching import PassGate, PassRequest


def default_threads() -> int:
    # llama.cpp runs best on physical cores; on our 2-core machines that is all of them.
    return max(1, len(os.sched_getaffinity(0)))


# What a target pass over n tokens costs against a 1-token pass, by GGUF quantisation:
# docs/bench/pass-shapes (the 1.5B target, one llama.cpp thread, AVX2, 300 cached tokens).
# Far from linear: ggml's CPU matrix products read Q4_0 rows in tiles of four tokens, so
# 4, 8 or 16 tokens cost barely more than 2, 7 or 12. The draft-length controller takes
# it as its prior for pass sizes it has not timed yet (decoding.controller.MeasuredCosts).
PASS_SHAPES = {
    "q4_0": {1: 1.0, 2: 1.94, 3: 2.75, 4: 2.13, 5: 3.05, 6: 3.81, 7: 4.81, 8: 4.02, 9: 4.79, 10: 5.23,
             11: 5.99, 12: 5.4, 13: 5.84, 14: 6.61, 15: 7.33, 16: 5.17, 17: 6.24, 24: 8.32, 25: 9.23,
             32: 9.75, 33: 10.71, 64: 18.64, 65: 19.63},
    "q4_k_m": {1: 1.0, 2: 1.89, 3: 2.63, 4: 3.39, 5: 4.17, 6: 5.14, 7: 5.66, 8: 6.31, 9: 6.82, 10: 7.19,
               11: 8.01, 12: 7.65, 13: 8.34, 14: 9.1, 15: 10.82, 16: 7.44, 17: 9.05, 24: 12.4, 25: 12.98,
               32: 13.0, 33: 14.54, 64: 23.94, 65: 24.63},
}


def pass_shape_of(gguf_file: str | Path) -> dict[int, float] | None:
    """The measured pass shape of a GGUF's quantisation, read from its file name; None
    for one not measured (the controller then times every size it uses)."""
    name = Path(gguf_file).name.lower()
    return next((shape for quant, shape in PASS_SHAPES.items() if quant in name), None)


_QUIET = None


def _silence_llama_log(llama_cpp) -> None:
    # llama.cpp logs every pass that computes all outputs ("embeddings required ...
    # overriding"), which is every pass here: that is thousands of lines per run.
    global _QUIET
    if _QUIET is None:
        _QUIET = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))


class _GgmlTensor(ctypes.Structure):
    """The head of ggml.h's struct ggml_tensor, up to its name: what a graph callback reads."""
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64)]


_GGML_TYPE_F32 = 0


class _LayerCapture:
    """A graph callback that copies one named tensor (a layer's output, "l_out-<i>") as
    llama.cpp computes it: [tokens of the pass, hidden] rows, in the batch's order."""

    def __init__(self, llama_cpp, tensor_name: str):
        self.name = tensor_name.encode()
        self.rows: list[np.ndarray] = []
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._seen)  # kept: C holds a pointer

    def _seen(self, pointer, ask: bool, user_data) -> bool:
        tensor = ctypes.cast(pointer, ctypes.POINTER(_GgmlTensor)).contents
        if tensor.name != self.name:
            return False
        if ask:  # yes: stop the graph after this tensor and show it to us
            return True
        width, n = tensor.ne[0], tensor.ne[1]
        if tensor.type != _GGML_TYPE_F32 or tensor.nb[1] != 4 * width:
            raise RuntimeError(f"llama.cpp's {self.name.decode()} is not a plain float32 matrix")
        self.rows.append(np.ctypeslib.as_array(ctypes.cast(tensor.data, ctypes.POINTER(ctypes.c_float)),
                                               shape=(n, width)).copy())
        return True


def separate_streams(sequences: int, uniform_passes: bool) -> int:
    """KV streams for a runtime that holds `sequences` (0: one cache they share).

    In a shared cache a sequence's cells lie among the others', and its logits change
    with what else is cached and merged into its passes (about 0.25 on the Q4_0 target).
    With a stream of its own, a sequence decodes the same logits alone or merged with
    others, so uniform passes get them: one stream per sequence, and a spare each for
    `another_sequence` (a model checker's)."""
    return 2 * sequences if uniform_passes else 0


class _Runtime:
    """One loaded GGUF model and its context; its KV cache holds every sequence's tokens."""

    def __init__(self, gguf_file: str, n_ctx: int, n_threads: int, n_batch: int, streams: int = 0,
                 feature_layer: int | None = None):
        """`streams`: 0 for one KV cache of n_ctx cells that every sequence shares; k for k
        streams of n_ctx cells, one per sequence (see `separate_streams`). `feature_layer`:
        see LlamaCppLM.read_features_from."""
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelLoadError("the llama.cpp backend needs llama-cpp-python "
                                 "(pip install 'autojudge[llama]')") from exc
        self._c = llama_cpp
        _silence_llama_log(llama_cpp)
        self.n_threads, self.n_batch = n_threads, n_batch
        # With embeddings on, llama-cpp-python makes the KV cache unified and allows
        # many sequences: n_ctx cells shared by all of them. With streams or a feature layer,
        # the context it makes is not used (so it gets the fewest cells) and one of ours
        # (with streams, or with a callback that reads the layer) replaces it.
        try:
            self._llm = llama_cpp.Llama(
                model_path=gguf_file, n_ctx=n_batch if streams else n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                n_threads=n_threads, n_threads_batch=n_threads,
                # Outputs are asked per token through the batch (PassRequest.wanted); logits_all
                # would only make the high-level API keep an n_ctx x vocabulary array: 37 GiB
                # for 16 mining sequences.
                logits_all=False, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
                verbose=False,
            )
        except ValueError as exc:  # llama-cpp-python's word for an unreadable file or a failed context
            raise ModelLoadError(f"llama.cpp cannot load {gguf_file}: {exc}") from None
        model = self._llm._model.model
        self.vocab_size = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        self.hidden_size = llama_cpp.llama_model_n_embd(model)
        self.layers = llama_cpp.llama_model_n_layer(model)
        self.feature_layer, self._capture = feature_layer, None
        self._own_ctx = None
        if streams or feature_layer is not None:
            params = type(self._llm.context_params).from_buffer_copy(self._llm.context_params)
            if streams:
                params.n_ctx, params.n_seq_max, params.kv_unified = n_ctx * streams, streams, False
            if feature_layer is not None:
                check_feature_layer(gguf_file, feature_layer, self.layers)
                if streams:  # their passes are split by sequence, out of the batch's order
                    raise ModelLoadError("llama.cpp reads a middle layer's features without uniform passes only")
                # llama.cpp names layer i's output (0-based) l_out-i; transformers counts it i + 1.
                self._capture = _LayerCapture(llama_cpp, f"l_out-{feature_layer - 1}")
                params.n_ctx = n_ctx
                params.cb_eval = self._capture.callback
            self._own_ctx = llama_cpp.llama_init_from_model(model, params)
            if not self._own_ctx:
                raise ModelLoadError(f"llama.cpp cannot make a context of {params.n_ctx} cells for {gguf_file}")
        self._ctx = self._own_ctx or self._llm._ctx.ctx
        self.max_sequences = llama_cpp.llama_n_seq_max(self._ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.sequences = 1  # sequence ids handed out so far (0 is the first LlamaCppLM's)

    def new_sequence_id(self) -> int:
        if self.sequences >= self.max_sequences:
            raise ModelLoadError(f"llama.cpp allows {self.max_sequences} sequences per context")
        self.sequences += 1
        return self.sequences - 1

    def __del__(self):
        batch = getattr(self, "_batch", None)
        if batch is not None:
            self._c.llama_batch_free(batch)
            self._batch = None
        if getattr(self, "_own_ctx", None):
            self._c.llama_free(self._own_ctx)
            self._own_ctx = None

    def decode(self, requests: list[PassRequest]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Append every request's tokens, n_batch tokens per `llama_decode`; return each
        request's (logits, hidden) rows for its wanted tokens, in order."""
        flat = [(r, req.seq_id, req.start + i, token, want)
                for r, req in enumerate(requests) for i, (token, want) in enumerate(zip(req.tokens, req.wanted))]
        logits: list[list[np.ndarray]] = [[] for _ in requests]
        hidden: list[list[np.ndarray]] = [[] for _ in requests]
        batch = self._batch
        for begin in range(0, len(flat), self.n_batch):
            chunk = flat[begin:begin + self.n_batch]
            batch.n_tokens = len(chunk)
            for i, (_, seq_id, pos, token, want) in enumerate(chunk):
                batch.token[i], batch.pos[i], batch.logits[i] = token, pos, want
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq_id
            if self._capture is not None:
                self._capture.rows.clear()
            code = self._c.llama_decode(self._ctx, batch)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code}")
            layer = self._layer_rows(len(chunk)) if self._capture is not None else None
            for i, (r, *_, want) in enumerate(chunk):
                if want:
                    logits[r].append(self._row(self._c.llama_get_logits_ith(self._ctx, i), self.vocab_size))
                    hidden[r].append(layer[i] if layer is not None
                                     else self._row(self._c.llama_get_embeddings_ith(self._ctx, i), self.hidden_size))
        return [(np.stack(lo), np.stack(hi)) for lo, hi in zip(logits, hidden)]

    def _layer_rows(self, n: int) -> np.ndarray:
        """The feature layer's output for the pass's n tokens, one row each, in order."""
        rows = np.concatenate(self._capture.rows) if self._capture.rows else np.empty((0, self.hidden_size))
        if len(rows) != n:  # one micro-batch per pass (n_ubatch = n_batch), so this is a bug, not bad input
            raise RuntimeError(f"llama.cpp computed layer {self.feature_layer} for {len(rows)} tokens, not {n}")
        return rows

    @staticmethod
    def _row(pointer, width: int) -> np.ndarray:
        if not pointer:
            raise RuntimeError("llama.cpp returned no output for a requested position")
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                     shape=(width,)).copy()

    def remove(self, seq_id: int, start: int) -> bool:
        """Drop a sequence's cached tokens from position `start` on."""
        return self._c.llama_memory_seq_rm(self._c.llama_get_memory(self._ctx), seq_id, start, -1)

    def describe(self) -> dict:
        layer = {"feature_layer": self.feature_layer} if self.feature_layer is not None else {}
        return {"threads": self.n_threads, "llama_cpp_python": self._c.__version__, **layer}


class LlamaCppLM:
    """One sequence's state for a GGUF model run by llama.cpp (see backend.CausalLM)."""

    def __init__(self, gguf_file: str | Path, name: str, n_ctx: int = 4096,
                 n_threads: int | None = None, n_batch: int = 512, *, uniform_passes: bool = False,
                 _runtime: _Runtime | None = None, _seq_id: int = 0, _gate: PassGate | None = None):
        self.name = name
        self.uniform_passes = uniform_passes  # see RuntimeOptions.uniform_passes
        self.gguf_file = str(gguf_file)
        self.max_context = n_ctx  # this sequence's; the runtime's cache may hold several
        self._runtime = _runtime or _Runtime(self.gguf_file, n_ctx, n_threads or default_threads(), n_batch,
                                             streams=separate_streams(1, uniform_passes))
        self._seq_id, self._gate = _seq_id, _gate
        self.n_threads = self._runtime.n_threads
        self.vocab_size, self.hidden_size = self._runtime.vocab_size, self._runtime.hidden_size
        self.tokens: list[int] = []  # what the KV cache holds for this sequence
        self.pass_shape = pass_shape_of(self.gguf_file)

    def parallel(self, n: int, gate: PassGate) -> list[LlamaCppLM]:
        """n fresh sequences of this model, each with this one's context length, in a
        new KV cache large enough for all (a stream each with uniform passes); their passes go
        through `gate`."""
        streams = separate_streams(n, self.uniform_passes)
        runtime = _Runtime(self.gguf_file, self.max_context if streams else n * self.max_context, self.n_threads,
                           self._runtime.n_batch, streams=streams, feature_layer=self._runtime.feature_layer)
        if n > runtime.max_sequences:
            raise ModelLoadError(f"{self.name}: llama.cpp allows {runtime.max_sequences} sequences, not {n}")
        runtime.sequences = n
        sequences = [LlamaCppLM(self.gguf_file, self.name, self.max_context, uniform_passes=self.uniform_passes,
                                _runtime=runtime, _seq_id=i, _gate=gate) for i in range(n)]
        for sequence in sequences:  # the width this one was cut to, if any (loading.share_logits)
            sequence.vocab_size = self.vocab_size
        return sequences

    @property
    def cached_length(self) -> int:
        return len(self.tokens)

    @property
    def feature_layer(self) -> int | None:
        return self._runtime.feature_layer

    def read_features_from(self, layer: int | None) -> None:
        """See backend.CausalLM.read_features_from. The model is loaded again around a new
        context whose graph callback copies that layer's output (a few percent slower per
        pass), so it is set before decoding starts, on a model not yet split by `parallel`."""
        if layer == self._runtime.feature_layer:
            return
        if self._runtime.sequences > 1 or self._gate is not None:
            raise ModelLoadError(f"{self.name}: choose the feature layer before making parallel sequences")
        self._runtime = _Runtime(self.gguf_file, self.max_context, self.n_threads, self._runtime.n_batch,
                                 streams=separate_streams(1, self.uniform_passes), feature_layer=layer)
        self.tokens = []

    def forward(self, token_ids: Sequence[int], n_logits: int | None = None) -> StepOutput:
        check_room(self, len(token_ids))
        n_out = len(token_ids) if n_logits is None else min(n_logits, len(token_ids))
        # One-token kernels round differently from many-token ones: with uniform passes a
        # lone token is read with the cached one before it, whose cell is computed again.
        reread = self.uniform_passes and len(token_ids) == 1 and len(self.tokens) > 0
        start = len(self.tokens) - reread
        tokens = self.tokens[start:] + list(token_ids)
        if reread and not self._remove(start):
            raise RuntimeError(f"{self.name}: llama.cpp could not drop cached tokens")
        request = PassRequest(self._seq_id, start, tokens, [i >= len(tokens) - n_out for i in range(len(tokens))])
        try:
            if self._gate is None:
                logits, hidden = self._runtime.decode([request])[0]
            else:
                logits, hidden = self._gate.run(self._runtime, request)
        except RuntimeError as exc:
            self._remove(start)  # a failed pass may have cached a part
            del self.tokens[start:]
            raise RuntimeError(f"{self.name}: {exc}") from exc
        self.tokens.extend(token_ids)
        if logits.shape[-1] > self.vocab_size:  # cut to the pair's shared vocabulary
            logits = logits[:, : self.vocab_size]
        return StepOutput(logits=torch.from_numpy(logits), hidden=torch.from_numpy(hidden))

    def truncate(self, length: int) -> None:
        if length > len(self.tokens):
            raise ValueError(f"cannot truncate {len(self.tokens)} cached tokens to {length}")
        if length < len(self.tokens):
            if not self._remove(length):
                raise RuntimeError(f"{self.name}: llama.cpp could not drop cached tokens")
            del self.tokens[length:]

    def reset(self) -> None:
        self._remove(0)
        self.tokens = []

    def _remove(self, start: int) -> bool:
        # llama.cpp may not drop one sequence's cached tokens during a pass over another's:
        # with a gate, other threads' merged passes run on this runtime.
        with self._gate.exclusive() if self._gate is not None else nullcontext():
            return self._runtime.remove(self._seq_id, start)

    def another_sequence(self) -> LlamaCppLM:
        """Another sequence id in this model's KV cache (see backend.another_sequence).
        In a shared cache both sequences together must fit its context; with uniform
        passes each has a stream of its own (`separate_streams`).
        Not gated: drive it from one thread at a time, outside any PassGate member."""
        return LlamaCppLM(self.gguf_file, self.name, self.max_context, uniform_passes=self.uniform_passes,
                          _runtime=self._runtime, _seq_id=self._runtime.new_sequence_id())

    def describe(self) -> dict:
        uniform = {"uniform_passes": True} if self.uniform_passes else {}  # absent when off: older runs match
        return {"backend": "llama.cpp", "gguf": Path(self.gguf_file).name, **self._runtime.describe(), **uniform}
