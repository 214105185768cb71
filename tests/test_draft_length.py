"""The draft-length controller and the lookup drafter: each changes only how many tokens
are drafted, never which are kept, so exact decoding stays the target's own output."""

from __future__ import annotations

import pytest
import torch

from autojudge.decoding import TopK, defaults, generate
from autojudge.decoding.controller import (
    HISTORY_KEPT,
    LOOKUP_PRIORS,
    DraftLengthController,
    GivenCosts,
    MeasuredCosts,
    shape_at,
)
from autojudge.decoding.drafters import LookupDrafter, NgramIndex, nearest_match_end
from autojudge.decoding.modes import DecodingOptions, decode, learnt_controller, parse_mode, resolved_drafter
from autojudge.decoding.policies import FLy
from autojudge.models.backend import ModelPair
from tests.tiny import VOCAB, backend, last_token_model, noisy_copy, tiny_model


def cpu_costs() -> GivenCosts:
    """The default pair's shape on one llama.cpp core: a draft token costs 0.45 of a
    target token, and each token more in a verification pass 0.37 of one."""
    return GivenCosts(target=lambda n: 1.0 + 0.37 * (n - 1), draft=lambda n: 0.45)


def random_prompt(seed: int, length: int = 12) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (length,), generator=generator).tolist()


def controlled(draft_seed: int, max_new_tokens: int):
    """The tiny target alone, and with a draft of weights `draft_seed` under the controller
    (at CPU-like costs): (the target's tokens, the speculative generation, the controller)."""
    target = backend(tiny_model(0), "t")
    prompt = random_prompt(0)
    alone = generate(target, prompt, max_new_tokens=max_new_tokens).token_ids
    controller = DraftLengthController(8, cpu_costs())
    result = generate(target, prompt, draft=backend(tiny_model(draft_seed), "d"), window=8,
                      max_new_tokens=max_new_tokens, draft_length=controller)
    return alone, result, controller


def test_a_draft_that_never_agrees_settles_on_zero_draft_tokens():
    # Another random model: it almost never proposes the target's token.
    alone, result, controller = controlled(draft_seed=1, max_new_tokens=200)
    assert result.token_ids == alone
    assert result.stats.mean_accepted < 1.05
    later = controller.history[20:]
    assert len(later) > 150
    # Zero but for rare probes, whose waits grow: the target alone, cycle after cycle.
    assert sum(k > 0 for k in later) <= 4
    assert max(controller.history[-60:]) <= 1


def test_a_draft_that_always_agrees_drafts_the_full_window():
    # The target's own weights as the draft: every draft token is the target's.
    alone, result, controller = controlled(draft_seed=0, max_new_tokens=120)
    assert result.token_ids == alone
    # From the prior (80% acceptance) up to the full window in a few cycles, then there for
    # good (the last cycle is cut by the budget).
    settled = controller.history[8:-1]
    assert len(settled) >= 5 and settled == [8] * len(settled)
    assert result.stats.mean_accepted > 7


@pytest.mark.parametrize("seed", range(4))
def test_exact_with_the_controller_is_the_target_alone(seed):
    target_model = tiny_model(seed)
    draft_model = noisy_copy(target_model, seed + 100, scale=0.05 if seed % 2 else 0.3)
    prompt = random_prompt(seed + 30)
    alone = generate(backend(target_model, "t"), prompt, max_new_tokens=64).token_ids
    for controller in (DraftLengthController(6, cpu_costs()), "adaptive"):  # given costs, then timed ones
        result = generate(backend(target_model, "t"), prompt, draft=backend(draft_model, "d"), window=6,
                          max_new_tokens=64, draft_length=controller)
        assert result.token_ids == alone
        assert result.stats.accepted_mismatches == 0


def test_the_controller_follows_the_policy_s_acceptance_not_the_draft_s_agreement():
    target_model = tiny_model(4)
    never = backend(tiny_model(5), "d")  # a draft that almost never proposes the target's token
    # Top-K over the whole vocabulary keeps every draft token: drafting always pays.
    controller = DraftLengthController(6, cpu_costs())
    result = generate(backend(target_model, "t"), random_prompt(4), draft=never, window=6, max_new_tokens=120,
                      policy=TopK(VOCAB), draft_length=controller)
    settled = controller.history[8:-1]
    assert len(settled) >= 5 and settled == [6] * len(settled)
    assert result.stats.accepted_mismatches > 80
    # FLy with lookahead keeps a mismatch only where the next draft tokens match: rarely, with this draft.
    controller = DraftLengthController(6, cpu_costs())
    generate(backend(target_model, "t"), random_prompt(4), draft=never, window=6, max_new_tokens=70,
             policy=FLy(0.3, 2), draft_length=controller)
    assert sum(k > 0 for k in controller.history[20:]) <= 3


def test_the_controller_comes_back_when_the_draft_starts_agreeing():
    controller = DraftLengthController(8, cpu_costs())
    for _ in range(30):  # a draft that is always wrong...
        k = controller.choose()
        controller.observe(k, 0, 0.0, 0.0)
    assert controller.choose() == 0
    chosen = []
    for _ in range(200):  # ... then always right: the next probe finds it
        k = controller.choose()
        chosen.append(k)
        controller.observe(k, k, 0.0, 0.0)
    assert chosen[-10:] == [8] * 10


def test_measured_costs_scale_an_untimed_pass_size_from_the_nearest_timed_ones():
    costs = MeasuredCosts()
    costs.observe(4, 0.2, 5, 1.0)
    costs.observe(0, 0.0, 1, 0.25)
    assert costs.draft(3) == pytest.approx(0.15)
    assert costs.target(3) == pytest.approx(0.625)  # between the 1- and 5-token passes
    assert costs.target(9) > costs.target(5)  # beyond the largest: grown by the prior slope


def test_a_runtime_s_pass_shape_sizes_untimed_passes_and_steers_to_its_cheap_sizes():
    shape = {1: 1.0, 2: 1.9, 3: 2.8, 4: 2.1, 8: 4.0, 16: 5.2}  # tiles of four, as llama.cpp's Q4_0
    costs = MeasuredCosts(shape=shape)
    costs.observe(0, 0.0, 1, 0.05)
    assert costs.target(4) == pytest.approx(0.105) and costs.target(3) == pytest.approx(0.14)
    assert costs.target(6) == pytest.approx(0.05 * 3.05)  # between the shape's own points
    costs.observe(3, 0.0, 4, 0.2)  # timed slower than the shape said: sizes near it follow
    assert costs.target(3) == pytest.approx(0.2 * 2.8 / 2.1)
    # With one-token passes timed, a free draft the prior trusts is verified at the cheap size.
    controller = DraftLengthController(8, MeasuredCosts(shape=shape), free=True)
    controller.choose(context=8, limit=8)
    controller.observe(0, 0, 1e-5, 0.05)
    assert controller.choose(context=8, limit=8) == 3  # a pass of 4, not the linear guess's 8 or 2
    linear = DraftLengthController(8, MeasuredCosts(), free=True)
    linear.choose(context=8, limit=8)
    linear.observe(0, 0, 1e-5, 0.05)
    assert linear.choose(context=8, limit=8) != 3


def test_llama_cpp_models_carry_the_measured_shape_of_their_quantisation():
    from autojudge.models.llamacpp import pass_shape_of
    assert pass_shape_of("/x/qwen2.5-coder-1.5b-instruct-q4_0.gguf")[4] < pass_shape_of("/x/m-q4_0.gguf")[3]
    assert pass_shape_of("/x/model-Q4_K_M.gguf")[2] > 1
    assert pass_shape_of("/x/model-f16.gguf") is None


def copied_prompt(target, length: int = 40) -> tuple[list[int], list[int]]:
    """A stretch of the target's own text, then its first token again: the answer copies it."""
    start = 5
    stretch = [start, *generate(target, [start], max_new_tokens=length).token_ids]
    return stretch + [start], stretch[1:]


def test_the_lookup_drafter_turns_a_copied_prompt_into_many_tokens_per_pass():
    target = backend(last_token_model(3), "t")
    prompt, copy = copied_prompt(target)
    alone = generate(target, prompt, max_new_tokens=40).token_ids
    assert alone[:20] == copy[:20]  # the answer does copy its prompt
    # Adaptive at given costs (a pass costs about as much at any size, as on a GPU): a tiny
    # model's timings are too noisy to decide on.
    flat = DraftLengthController(8, GivenCosts(target=lambda n: 1.0 + 0.05 * (n - 1)), free=True)
    for draft_length in ("fixed", flat):
        result = generate(target, prompt, drafter=LookupDrafter(), window=8, max_new_tokens=40,
                          draft_length=draft_length)
        assert result.token_ids == alone
        assert result.stats.mean_accepted > 2
        assert result.stats.draft_forwards == 0  # no model pass drafted anything


def test_decoding_options_select_the_lookup_drafter_and_refuse_it_where_draft_states_are_read():
    target = backend(last_token_model(3), "t")
    prompt, _ = copied_prompt(target)
    pair = ModelPair(None, target, tokenizer=None, stop_ids=frozenset())
    alone = decode(pair, prompt, "target", DecodingOptions(max_new_tokens=30)).token_ids
    looked = decode(pair, prompt, "exact", DecodingOptions(window=8, max_new_tokens=30, drafter="lookup"))
    assert looked.token_ids == alone and looked.stats.mean_accepted > 2

    class DraftReadingPolicy(TopK):  # a policy reading the draft's hidden states, as a judge on them does
        needs_hidden = True
    with pytest.raises(ValueError, match="needs hidden states or logits that lookup cannot give"):
        generate(target, prompt, drafter=LookupDrafter(), policy=DraftReadingPolicy(2), window=4, max_new_tokens=4)


def test_decoding_options_refuse_unknown_draft_lengths_and_drafters():
    with pytest.raises(ValueError, match="draft_length 'sometimes'"):
        DecodingOptions(draft_length="sometimes")
    with pytest.raises(ValueError, match="drafter 'oracle'"):
        DecodingOptions(drafter="oracle")


def test_a_free_draft_is_verified_by_the_evidence_it_comes_with():
    # Lookups with a 3-token match are never copied on; with an 8-token match, always.
    # The controller learns the two apart, stops verifying the first without probing
    # again, and verifies all of the second.
    free = GivenCosts(target=lambda n: 1.0 + 0.37 * (n - 1))  # a lookup's draft costs nothing
    controller = DraftLengthController(8, free, prior=0.7, free=True)
    weak, strong = [], []
    for _ in range(100):
        k = controller.choose(context=3, limit=8)
        weak.append(k)
        controller.observe(k, 0, 0.0, 0.0)
        k = controller.choose(context=8, limit=8)
        strong.append(k)
        controller.observe(k, k, 0.0, 0.0)
    assert weak[0] > 0 and sum(k > 0 for k in weak[-80:]) <= 3  # tried, then only rare probes
    assert strong[-80:] == [8] * 80
    assert controller.choose(context=8, limit=3) == 3  # never more than the lookup proposed


def test_a_free_drafts_controller_times_the_target_alone_before_it_verifies_anything():
    controller = DraftLengthController(8, MeasuredCosts(), free=True)
    assert controller.choose(context=8, limit=8) == 0  # no pass size known: no long guess
    controller.observe(0, 0, 1e-5, 0.05)
    assert controller.choose(context=8, limit=8) > 0  # sized from the one-token pass


def test_the_ngram_index_finds_what_a_scan_finds():
    generator = torch.Generator().manual_seed(3)
    seq = torch.randint(0, 4, (300,), generator=generator).tolist()  # a small alphabet: many repeats
    index = NgramIndex(5)
    for here in range(2, len(seq)):
        index.extend(seq[:here], here - 1)
        for n in range(1, min(5, here - 1) + 1):
            tail = seq[here - n:here]
            assert index.latest_end(tail) == nearest_match_end(seq[:here], tail, here - 1, here)
    index.extend([9, 9, 9, 9], 3)  # not a continuation: indexed afresh
    assert index.latest_end([9, 9]) == 3 and index.latest_end([seq[0]]) is None


def test_the_lookup_proposes_the_longest_match_and_says_how_long_it_was():
    drafter = LookupDrafter(ngram=8, min_ngram=3, adapt_length=False)
    seq = [1, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 9, 1, 2, 3, 4]
    proposal = drafter.propose(seq, 3, frozenset(), want_hidden=False)
    assert proposal.tokens == [5, 6, 7] and proposal.match == 4  # [1, 2, 3, 4] beats the later [2, 3, 4]
    assert drafter.propose([1, 2, 5, 1, 2], 3, frozenset(), want_hidden=False).tokens == []  # 2 < min_ngram


@pytest.mark.parametrize("mode, drafter", [("exact", "lookup"), ("typical", "model"), ("target", None)])
def test_auto_drafts_by_lookup_only_for_exact_greedy_decoding_on_a_cpu(mode, drafter):
    target, draft = backend(tiny_model(0), "t"), backend(tiny_model(1), "d")
    prompt, _ = copied_prompt(target)
    pair = ModelPair(draft, target, tokenizer=None, stop_ids=frozenset())
    alone = decode(pair, prompt, "target", DecodingOptions(max_new_tokens=30)).token_ids
    auto = DecodingOptions(window=8, max_new_tokens=30, drafter="auto", draft_length="auto")
    result = decode(pair, prompt, mode, auto)
    if drafter is not None:
        length = "adaptive" if drafter == "lookup" else "fixed"
        assert resolved_drafter(pair, parse_mode(mode), auto) == (drafter, length)
        assert (result.stats.draft_forwards == 0) == (drafter == "lookup")
    if mode == "exact":
        assert result.token_ids == alone
    assert defaults.resolve("auto", "auto", exact_greedy=True, on_cpu=False) == ("model", "fixed")  # a GPU
    assert defaults.resolve("lookup", "fixed", exact_greedy=True, on_cpu=True) == ("lookup", "fixed")  # as asked


def test_a_lookup_s_prior_depends_on_how_long_its_matched_tail_is():
    # Passes priced as llama.cpp's Q4_0 target timed them in decoding (2 tokens: 1.9x one, 4: 2.65x).
    decoded = GivenCosts(target=lambda n: shape_at({1: 1.0, 2: 1.9, 4: 2.65, 8: 5.15, 16: 7.6}, n))
    controller = DraftLengthController(8, decoded, prior=0.7, priors=LOOKUP_PRIORS, free=True)
    assert controller.acceptance(8)[0] == pytest.approx(LOOKUP_PRIORS[8])
    assert controller.acceptance(3)[0] == pytest.approx(LOOKUP_PRIORS[3])
    assert controller.acceptance(2)[0] == pytest.approx(0.7)  # a length with no prior of its own
    controller.observe(controller.choose(context=5, limit=8), 0, 0.0, 0.0)  # the first cycle drafts all
    # Before anything is seen at either length: an 8-token match is worth a pass, a 3-token one not.
    assert controller.choose(context=8, limit=8) > 0
    assert controller.choose(context=3, limit=8) == 0


def test_decode_carries_what_its_controller_learnt_from_one_request_to_the_next():
    target = backend(last_token_model(3), "t")
    other = backend(last_token_model(3), "t2")
    prompt, _ = copied_prompt(target)
    pair = ModelPair(None, target, tokenizer=None, stop_ids=frozenset())
    alone = decode(pair, prompt, "target", DecodingOptions(max_new_tokens=30)).token_ids
    options = DecodingOptions(window=8, max_new_tokens=30, drafter="lookup", draft_length="adaptive")
    first = decode(pair, prompt, "exact", options)
    controller = learnt_controller(target, ("lookup", 8, 0.0, "exact"), 8, free=True)
    # It served the first request: chose the length of each lookup that found something, timed passes.
    cycles = len(controller.history)
    assert 0 < cycles <= first.stats.cycles and controller.costs.timed(1)
    second = decode(pair, prompt, "exact", options)
    assert first.token_ids == second.token_ids == alone
    assert len(controller.history) > cycles  # the same controller, learning on
    # Another target, window or policy learns on its own.
    assert learnt_controller(other, ("lookup", 8, 0.0, "exact"), 8, free=True) is not controller
    assert learnt_controller(target, ("lookup", 4, 0.0, "exact"), 4, free=True) is not controller


def test_a_long_lived_controller_keeps_a_bounded_history():
    controller = DraftLengthController(4, cpu_costs())
    for _ in range(2 * HISTORY_KEPT + 10):
        controller.observe(controller.choose(), 0, 0.0, 0.0)
    assert HISTORY_KEPT <= len(controller.history) <= 2 * HISTORY_KEPT
