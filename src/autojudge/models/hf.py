"""The Hugging Face transformers backend: any causal LM, CPU or GPU, the reference."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from autojudge.errors import ModelLoadError
from autojudge.models.backend import StepOutput, check_feature_layer, check_room


class TransformersLM:
    """What every transformers-backed sequence state knows about its model: the base of
    HFCausalLM (dynamic cache, any model) and StaticCacheLM (static cache, CUDA graphs)."""

    def __init__(self, model: PreTrainedModel, name: str, linear: str = "default"):
        self.model = model.eval()
        self.name = name
        self.linear = linear
        # Looked up once: forward() runs per decoding step. The decoder is None where the
        # model has no separate one.
        self._decoder = getattr(model, model.base_model_prefix, None)
        self._head = model.get_output_embeddings()
        if self._head is None:  # a bare decoder (AutoModel) or a head-less custom class
            raise ModelLoadError(f"{name}: {type(model).__name__} has no output layer; "
                                 "decoding needs a causal LM with its head")
        self.config = model.config.get_text_config()
        self.vocab_size = self._head.out_features
        self.hidden_size = self.config.hidden_size
        self.max_context = getattr(self.config, "max_position_embeddings", None) or 1 << 30
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.tokens: list[int] = []  # what the cache holds, so callers can reuse a shared prefix
        self.feature_layer: int | None = None
        # The feature layer's latest output, written by a hook on that layer. A dict, so
        # that sequences sharing the modules (another_sequence) share the hook's target.
        self._layer_output: dict[str, torch.Tensor] = {}
        self._hook = None

    @property
    def cached_length(self) -> int:
        return len(self.tokens)

    def read_features_from(self, layer: int | None) -> None:
        """See backend.CausalLM.read_features_from: a forward hook keeps that layer's output."""
        if layer == self.feature_layer:
            return
        if layer is not None:
            blocks = getattr(self._decoder, "layers", None)
            if blocks is None:
                raise ModelLoadError(f"{self.name}: {type(self.model).__name__} has no layer list to read from")
            check_feature_layer(self.name, layer, len(blocks))
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.feature_layer = layer
        if layer is not None:
            box = self._layer_output
            self._hook = blocks[layer - 1].register_forward_hook(
                lambda module, args, output: box.__setitem__("hidden", output[0] if isinstance(output, tuple)
                                                             else output))
        self.reset()

    def _features(self, final: torch.Tensor, keep: int) -> torch.Tensor:
        """The hidden state forward() returns for its last `keep` tokens."""
        return final if self.feature_layer is None else self._layer_output.pop("hidden")[0, -keep:]

    def describe(self) -> dict:
        layer = {"feature_layer": self.feature_layer} if self.feature_layer is not None else {}
        return {"backend": "transformers", "dtype": str(self.dtype).removeprefix("torch."),
                "device": self.device.type, "linear": self.linear, **layer}


class HFCausalLM(TransformersLM):
    """One sequence's state for a transformers causal LM (see backend.CausalLM)."""

    def __init__(self, model: PreTrainedModel, name: str, linear: str = "default"):
        super().__init__(model, name, linear)
        # Every layer keeps all its keys, sliding-window ones too: a window-sized cache
        # forgets what a rejected draft's rollback must return to (the masks still
        # apply the window, so the numbers are the same).
        self.cache = DynamicCache()
        self.split = self._split_agrees()

    def _split_agrees(self) -> bool:
        """Whether calling the decoder and the LM head apart gives the whole model's logits
        and last hidden state (it does for Llama-like models: the final norm ends the
        decoder, a plain projection follows). Asking transformers for hidden states
        instead records every layer's through hooks, a quarter of a GPU step for the
        default target. Checked on a probe, so a model with extra logit processing
        (scaling, soft-capping) keeps the general path."""
        if self._decoder is None:
            return False
        probe = [1, 2, 3, 4, 5]
        self.split = False
        whole = self.forward(probe)
        self.reset()
        self.split = True
        try:
            parts = self.forward(probe)
        except Exception:  # noqa: BLE001 - any failure means: use the general path
            return False
        finally:
            self.reset()
        return torch.equal(whole.logits, parts.logits) and torch.equal(whole.hidden, parts.hidden)

    @torch.inference_mode()
    def forward(self, token_ids: Sequence[int], n_logits: int | None = None) -> StepOutput:
        check_room(self, len(token_ids))
        input_ids = torch.tensor([list(token_ids)], device=self.device)
        keep = len(token_ids) if n_logits is None else n_logits
        if self.split:
            out = self._decoder(input_ids=input_ids, past_key_values=self.cache, use_cache=True)
            # The last layer after the final norm: the judge's feature.
            hidden = out.last_hidden_state[0, -keep:]
            # Skipping the vocabulary projection where nobody reads it is a large saving.
            logits = self._head(hidden)
        else:
            out = self.model(input_ids=input_ids, past_key_values=self.cache, use_cache=True,
                             output_hidden_states=True, logits_to_keep=keep)
            hidden, logits = out.hidden_states[-1][0, -keep:], out.logits[0]
        self.tokens.extend(token_ids)
        if logits.shape[-1] > self.vocab_size:  # a padded head, cut to the pair's shared vocabulary
            logits = logits[..., : self.vocab_size]
        return StepOutput(logits=logits.float(), hidden=self._features(hidden, keep).float())

    def truncate(self, length: int) -> None:
        excess = self.cached_length - length
        if excess < 0:
            raise ValueError(f"cannot truncate {self.cached_length} cached tokens to {length}")
        if excess:
            self.cache.crop(-excess)  # transformers 5: a negative count removes that many
            del self.tokens[length:]

    def reset(self) -> None:
        self.cache = DynamicCache()
        self.tokens = []

    def another_sequence(self) -> HFCausalLM:
        """The same modules, a cache of its own (see backend.another_sequence)."""
        other = object.__new__(HFCausalLM)
        other.__dict__.update(self.__dict__)  # model, head, config: shared, read-only
        other.reset()
        return other
