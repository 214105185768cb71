"""The llama.cpp backend for GGUF models (CPU), through llama-cpp-python's C API.

One `llama_decode` call returns, for every token flagged as an output, both the
logits and the final-norm hidden state (embeddings with pooling "none"), so the
judge's features cost nothing extra. The KV cache is rolled back with
`llama_memory_seq_rm`. Only the low-level API is used: the high-level `Llama.eval`
splits input into batches and would overwrite the hidden states of earlier batches.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from autojudge.errors import ModelLoadError
from autojudge.models.backend import StepOutput, check_room


def default_threads() -> int:
    # llama.cpp runs best on physical cores; on our 2-core machines that is all of them.
    return max(1, len(os.sched_getaffinity(0)))


_QUIET = None


def _silence_llama_log(llama_cpp) -> None:
    # llama.cpp logs every pass that computes all outputs ("embeddings required ...
    # overriding"), which is every pass here: that is thousands of lines per run.
    global _QUIET
    if _QUIET is None:
        _QUIET = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))


class LlamaCppLM:
    """One sequence's state for a GGUF model run by llama.cpp (see backend.CausalLM)."""

    def __init__(self, gguf_file: str | Path, name: str, n_ctx: int = 4096,
                 n_threads: int | None = None, n_batch: int = 512):
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelLoadError("the llama.cpp backend needs llama-cpp-python "
                                 "(pip install 'autojudge[llama]')") from exc
        self._c = llama_cpp
        _silence_llama_log(llama_cpp)
        self.name = name
        self.gguf_file = str(gguf_file)
        self.n_threads = n_threads or default_threads()
        self.n_batch = n_batch
        self._llm = llama_cpp.Llama(
            model_path=self.gguf_file, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
            n_threads=self.n_threads, n_threads_batch=self.n_threads,
            logits_all=True, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
            verbose=False,
        )
        self._ctx = self._llm._ctx.ctx
        model = self._llm._model.model
        self.vocab_size = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        self.hidden_size = llama_cpp.llama_model_n_embd(model)
        self.max_context = n_ctx
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.tokens: list[int] = []  # what the KV cache holds

    def __del__(self):
        batch = getattr(self, "_batch", None)
        if batch is not None:
            self._c.llama_batch_free(batch)
            self._batch = None

    @property
    def cached_length(self) -> int:
        return len(self.tokens)

    def forward(self, token_ids: Sequence[int], n_logits: int | None = None) -> StepOutput:
        check_room(self, len(token_ids))
        n_out = len(token_ids) if n_logits is None else min(n_logits, len(token_ids))
        first_output = len(token_ids) - n_out
        logits, hidden = [], []
        for start in range(0, len(token_ids), self.n_batch):
            chunk = token_ids[start:start + self.n_batch]
            wanted = [start + i >= first_output for i in range(len(chunk))]
            self._decode(chunk, wanted)
            for i, want in enumerate(wanted):
                if want:
                    logits.append(self._row(self._c.llama_get_logits_ith(self._ctx, i), self.vocab_size))
                    hidden.append(self._row(self._c.llama_get_embeddings_ith(self._ctx, i), self.hidden_size))
        return StepOutput(logits=torch.from_numpy(np.stack(logits)),
                          hidden=torch.from_numpy(np.stack(hidden)))

    def _decode(self, chunk: Sequence[int], wanted: list[bool]) -> None:
        batch = self._batch
        batch.n_tokens = len(chunk)
        for i, token in enumerate(chunk):
            batch.token[i] = token
            batch.pos[i] = len(self.tokens) + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = wanted[i]
        code = self._c.llama_decode(self._ctx, batch)
        if code != 0:
            raise RuntimeError(f"{self.name}: llama_decode returned {code}")
        self.tokens.extend(chunk)

    @staticmethod
    def _row(pointer, width: int) -> np.ndarray:
        if not pointer:
            raise RuntimeError("llama.cpp returned no output for a requested position")
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                     shape=(width,)).copy()

    def truncate(self, length: int) -> None:
        if length > len(self.tokens):
            raise ValueError(f"cannot truncate {len(self.tokens)} cached tokens to {length}")
        if length < len(self.tokens):
            memory = self._c.llama_get_memory(self._ctx)
            if not self._c.llama_memory_seq_rm(memory, 0, length, -1):
                raise RuntimeError(f"{self.name}: llama.cpp could not drop cached tokens")
            del self.tokens[length:]

    def reset(self) -> None:
        self._c.llama_memory_clear(self._c.llama_get_memory(self._ctx), True)
        self.tokens = []

    def describe(self) -> dict:
        return {"backend": "llama.cpp", "gguf": Path(self.gguf_file).name,
                "threads": self.n_threads, "llama_cpp_python": self._c.__version__}
