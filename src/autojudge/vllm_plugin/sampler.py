"""The vLLM 0.32 (V1 engine) side: autojudge's rejection sampler and how it is installed.

Where vLLM decides acceptance: `GPUModelRunner.sample_tokens` (CPUModelRunner inherits
it) unpacks the state `execute_model` left (logits and hidden states of the sampled
rows, the SpecDecodeMetadata) and calls `_sample`, which calls the runner's
`rejection_sampler`. `RejectionSampler.forward` samples the bonus tokens, copies the
target's logits at the draft positions to float32, runs `apply_logits_processors` on
them (penalties, bad words, min tokens) and hands them to the greedy and random
rejection kernels (C++ on CPU, Triton on GPU), which keep each greedy request's draft
tokens while they equal the argmax of those logits.

The judge's rule changes only that last comparison, so the sampler here overrides only
`apply_logits_processors`: after vLLM's own processing it scores the mismatches with
the judge and, where autojudge's rule keeps a mismatching draft token, lifts that token
to the row's argmax. vLLM's kernels then keep exactly the tokens the rule keeps, take
the target's own token at the first one it rejects (or the bonus token), and everything
after (KV cache bookkeeping, the drafter's next proposal, acceptance counters, logprobs)
is vLLM's unchanged path.

The judge's features: the target's hidden state after reading each draft token.
The final-norm ones are `hidden_states[logits_indices]` of the verification pass, which
execute_model keeps as `sample_hidden_states` until sample_tokens clears it; the row
after each draft token's logits row is that token's. A middle layer's come from a
forward hook on that decoder layer of the target (vLLM's Qwen2/Llama layers return
(hidden, residual): the layer's output in transformers' terms is their sum).
"""

from __future__ import annotations

import json
import logging

import torch
from vllm.v1.sample.rejection_sampler import GREEDY_TEMPERATURE, RejectionSampler
from vllm.v1.worker.gpu_model_runner import GPUModelRunner

from autojudge.vllm_plugin.rule import decide, force_kept
from autojudge.vllm_plugin.settings import EngineFacts, Settings, parse, raw_settings

log = logging.getLogger("autojudge.vllm_plugin")


def engine_facts(config) -> EngineFacts:
    """What the settings are checked against, from a VllmConfig."""
    model = config.model_config
    spec = config.speculative_config
    draft = spec.draft_model_config if spec is not None else None
    return EngineFacts(target=model.model, target_hidden=model.get_hidden_size(),
                       target_layers=model.hf_text_config.num_hidden_layers,
                       draft=draft.model if draft is not None else None,
                       draft_hidden=draft.get_hidden_size() if draft is not None else None,
                       method=spec.method if spec is not None else None, graphs=_replays_graphs(config),
                       v2_runner=bool(getattr(config, "use_v2_model_runner", False)))


def _replays_graphs(config) -> bool:
    from vllm.config import CUDAGraphMode
    from vllm.platforms import current_platform
    return current_platform.is_cuda_alike() and config.compilation_config.cudagraph_mode != CUDAGraphMode.NONE


def settings_for(config):
    """(Settings, Judge) for a VllmConfig with autojudge settings, None without them."""
    section = raw_settings(config.additional_config)
    return None if section is None else parse(section, engine_facts(config))


class JudgeRejectionSampler(RejectionSampler):
    """vLLM's RejectionSampler, with autojudge's rule for greedy requests (see the module)."""

    def __init__(self, sampler, spec_config, device, judge, settings: Settings):
        super().__init__(sampler, spec_config, device)
        self.judge = judge
        self.settings = settings
        # [sampled rows, hidden]: the judge's features for the step about to be sampled,
        # set by the runner's sample_tokens (install) and taken once.
        self.features: torch.Tensor | None = None
        # vLLM's request ids in the batch's row order, set with the features: the log
        # names each request's decisions (autojudge eval --engine vllm counts them per problem).
        self.request_ids: list[str] = []
        self.totals = {"steps": 0, "drafted": 0, "matched": 0, "kept": 0, "judged": 0}
        self._log = open(settings.log, "a", buffering=1) if settings.log else None

    def apply_logits_processors(self, logits, sampling_metadata, metadata):
        logits = super().apply_logits_processors(logits, sampling_metadata, metadata)
        features, self.features = self.features, None
        if features is None:  # a warm-up or dummy run: no verification pass behind it
            return logits
        if sampling_metadata.all_greedy:
            greedy = [True] * len(metadata.num_draft_tokens)
        else:
            # Requests sampled at a temperature keep vLLM's speculative sampling.
            greedy = (sampling_metadata.temperature == GREEDY_TEMPERATURE).tolist()
            if not any(greedy):
                return logits
        draft_ids = metadata.draft_token_ids
        target_argmax = logits.argmax(dim=-1)
        prob = allowed = None
        if not bool((draft_ids.long() == target_argmax).all()):
            hidden = features[metadata.target_logits_indices.long() + 1]
            prob = self.judge.prob_important({"target": hidden})
            # A token a grammar or a bad-words list ruled out (-inf) stays out.
            allowed = torch.isfinite(logits.gather(1, draft_ids.long()[:, None].to(logits.device)))[:, 0]
        decision = decide(draft_ids, target_argmax, prob, metadata.num_draft_tokens, greedy,
                          self.settings.threshold, self.settings.lookahead, allowed)
        force_kept(logits, draft_ids, decision)
        self._count(decision, self.request_ids[:len(metadata.num_draft_tokens)])
        return logits

    def _count(self, decision, request_ids: list[str]) -> None:
        if not any(decision.drafted):  # a step whose requests had no draft tokens yet
            return
        self.totals["steps"] += 1
        for key in ("drafted", "matched", "kept", "judged"):
            self.totals[key] += sum(getattr(decision, key))
        if self._log is not None:
            self._log.write(json.dumps({**decision.as_record(), "requests": request_ids}) + "\n")


def patch_model_runner() -> None:
    """Wrap GPUModelRunner.__init__ so that a runner built with autojudge settings gets
    the judge's sampler; without settings the runner is vLLM's, untouched."""
    if getattr(GPUModelRunner.__init__, "_autojudge", False):
        return
    original_init = GPUModelRunner.__init__

    def __init__(self, vllm_config, *args, **kwargs):
        original_init(self, vllm_config, *args, **kwargs)
        chosen = settings_for(vllm_config)
        if chosen is not None:
            install(self, *chosen)

    __init__._autojudge = True
    GPUModelRunner.__init__ = __init__


def install(runner, settings: Settings, judge) -> None:
    """Give `runner` the judge's sampler, and the judge its features each step."""
    if not hasattr(runner, "rejection_sampler"):
        raise RuntimeError("autojudge: this vLLM runner has no rejection sampler (speculative decoding is off)")
    sampler = JudgeRejectionSampler(runner.sampler, runner.speculative_config, runner.device, judge, settings)
    runner.rejection_sampler = sampler
    layer = judge.feature_layer
    captured: dict[str, torch.Tensor] = {}
    # Instance attributes shadow the class's methods for this runner alone.
    original_sample_tokens, original_load_model = runner.sample_tokens, runner.load_model

    def sample_tokens(grammar_output):
        state = runner.execute_model_state
        if state is not None and state.spec_decode_metadata is not None:
            sampler.request_ids = list(runner.input_batch.req_ids)
            if layer is None:
                sampler.features = state.sample_hidden_states
            elif "hidden" not in captured:
                raise RuntimeError(f"autojudge: the target's layer {layer} was not captured in this step's pass; "
                                   "run vLLM with enforce_eager=True")
            else:
                # Taken once: a step whose pass did not run the hook must not see the last one's.
                sampler.features = captured.pop("hidden")[state.spec_decode_metadata.logits_indices.long()]
        try:
            return original_sample_tokens(grammar_output)
        finally:
            sampler.features = None

    def load_model(*args, **kwargs):
        result = original_load_model(*args, **kwargs)
        if layer is not None:
            hook_layer(runner.get_model(), layer, captured)
        return result

    runner.sample_tokens = sample_tokens
    runner.load_model = load_model
    log.info("autojudge: judge %s (features %s, %s), threshold %.4g, lookahead %d", settings.judge_path,
             judge.features, "final norm" if layer is None else f"layer {layer}", settings.threshold,
             settings.lookahead)


def hook_layer(model, layer: int, captured: dict) -> None:
    """Keep decoder layer `layer`'s output (counted as transformers counts hidden
    states: 1 is the first block's) of the latest target pass in captured["hidden"]."""
    decoder = getattr(model, "model", None)
    blocks = getattr(decoder, "layers", None)
    if blocks is None:
        raise RuntimeError(f"autojudge: {type(model).__name__} has no decoder layer list to read layer {layer} from")

    def keep(module, args, output):
        # vLLM's layers defer the residual add to the next layer's fused norm, which
        # works in place: the sum is taken now, into a tensor of its own.
        if isinstance(output, tuple):
            hidden, residual = output[0], output[1]
            captured["hidden"] = hidden + residual if residual is not None else hidden.clone()
        else:
            captured["hidden"] = output.clone()

    blocks[layer - 1].register_forward_hook(keep)
