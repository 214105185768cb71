"""Algorithm 1 on tiny random models: fast mining gives plain mining's labels, from the numbers decoding sees."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from autojudge.decoding import generate
from autojudge.decoding.features import TARGET_LOGIT_FEATURES, logit_features
from autojudge.errors import PromptError
from autojudge.mining.algorithm import features_at, mine_problem
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mining_meta
from autojudge.prompting import chat_prompt_ids
from tests.toy_task import RejoiningToyTask, SettlingToyTask, ToyTask, UnsettlingToyTask, tiny_pair

MAX_NEW = 40


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


def test_fast_mining_labels_equal_plain_algorithm_1(pair):
    task = ToyTask()
    kinds = set()
    for problem in task.load("all")[:4]:
        ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
        plain = mine_problem(pair, task, problem, ids, MiningOptions(max_new_tokens=MAX_NEW, fast=False))
        fast = mine_problem(pair, task, problem, ids, MiningOptions(max_new_tokens=MAX_NEW, fast=True))
        assert fast.mismatches == plain.mismatches
        assert fast.response == plain.response
        for a, b in zip(fast.target_features + fast.draft_features, plain.target_features + plain.draft_features):
            assert torch.allclose(a, b, atol=1e-4)
        assert fast.target_passes <= plain.target_passes
        kinds.update(m.important for m in plain.mismatches)
    assert kinds == {True, False}  # both labels occur, so the comparison means something


def test_a_settled_answer_skips_regenerations_and_keeps_every_earlier_label(pair):
    """Before the settle point: Algorithm 1's labels and response; after it: unimportant."""
    settling, plain = SettlingToyTask(chars=20), UnsettlingToyTask(chars=20)
    key = lambda m: (m.position, m.target_token, m.draft_token, m.important, m.alt_answer)  # noqa: E731
    seen_settled = seen_regenerated = 0
    for problem in settling.load("all")[:4]:
        ids = chat_prompt_ids(pair.tokenizer, settling.messages(problem))
        short = mine_problem(pair, settling, problem, ids, MiningOptions(max_new_tokens=MAX_NEW, fast=True))
        assert short.mismatches == mine_problem(pair, settling, problem, ids,
                                                MiningOptions(max_new_tokens=MAX_NEW, fast=False)).mismatches
        reference = mine_problem(pair, plain, problem, ids, MiningOptions(max_new_tokens=MAX_NEW, fast=False))
        assert short.answer == reference.answer
        # s: the first position whose prefix settles the answer, the same in both runs.
        y = short.token_ids
        s = next((t for t in range(len(y) + 1) if settling.settled(
            pair.tokenizer.decode(y[:t], skip_special_tokens=True), problem)), len(y) + 1)
        assert [key(m) for m in short.mismatches if not m.settled] == \
            [key(m) for m in reference.mismatches if m.position < s]
        assert all(m.position >= s and not m.important for m in short.mismatches if m.settled)
        assert not any(m.important for m in reference.mismatches if m.position >= s)
        seen_settled += sum(m.settled for m in short.mismatches)
        seen_regenerated += sum(not m.settled for m in short.mismatches)
    assert seen_settled and seen_regenerated  # both kinds occur, so the comparison means something


def test_a_known_mismatch_is_labelled_from_a_real_regeneration(pair):
    """Replay the first mismatch by hand: the label is what the swapped-in answer says."""
    task = ToyTask()
    problem = task.load("all")[0]
    ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
    mined = mine_problem(pair, task, problem, ids, MiningOptions(max_new_tokens=MAX_NEW, fast=False))
    first = mined.mismatches[0]
    y = generate(pair.target, ids, max_new_tokens=MAX_NEW, stop_ids=pair.stop_ids).token_ids
    assert y[first.position] == first.target_token != first.draft_token
    swapped = ids + y[:first.position] + [first.draft_token]
    rest = generate(pair.target, swapped, max_new_tokens=MAX_NEW - first.position - 1,
                    stop_ids=pair.stop_ids).token_ids
    text = pair.tokenizer.decode(y[:first.position] + [first.draft_token] + rest, skip_special_tokens=True)
    assert first.alt_answer == task.extract_answer(text)
    assert first.important == (task.extract_answer(text) != mined.answer)


@pytest.mark.parametrize("feature_layer", [None, 1])
def test_mining_features_are_the_numbers_decoding_sees(pair, feature_layer):
    """The judge is trained on mining features and used on decoding features: same numbers,
    hidden states and logit features alike, from the final norm or a middle layer."""
    pair.target.read_features_from(feature_layer)
    try:
        _check_mining_features_are_the_numbers_decoding_sees(pair)
        meta = mining_meta(pair, ToyTask(), "all", MiningOptions(max_new_tokens=MAX_NEW))
        assert meta["features"]["position"].endswith("final norm" if feature_layer is None else "output of layer 1")
        assert meta["target_backend"].get("feature_layer") == feature_layer
    finally:
        pair.target.read_features_from(None)


def _check_mining_features_are_the_numbers_decoding_sees(pair):
    seen = []

    class Recorder:
        """Accepts like Exact, and notes what the engine hands over at each mismatch."""
        name, needs_hidden, needs_draft_logits = "recorder", True, True

        def __call__(self, window):
            k = len(window.draft_tokens)
            for i, match in enumerate(window.matches.tolist()):
                if not match:
                    # The target has just read the sequence and the whole window.
                    seq = pair.target.tokens[: len(pair.target.tokens) - k + i + 1]
                    seen.append((list(seq), window.draft_hidden[i].clone(), window.target_hidden[i].clone(),
                                 window.logit_features[i].clone(), window.target_logit_features[i].clone()))
                    return i
            return k

    task = ToyTask()
    ids = chat_prompt_ids(pair.tokenizer, task.messages(task.load("all")[1]))
    generate(pair.target, ids, draft=pair.draft, policy=Recorder(), window=4,
             max_new_tokens=MAX_NEW, stop_ids=pair.stop_ids)
    assert len(seen) >= 2
    for seq, draft_hidden, target_hidden, decoded_logit_features, decoded_target_logit_features in seen:
        # Tolerance: float32 sums in another order (one pass of many tokens vs several).
        draft_logits, mined_draft_hidden = features_at(pair.draft, seq)
        target_logits, mined_target_hidden = features_at(pair.target, seq)
        assert torch.allclose(mined_draft_hidden, draft_hidden, atol=1e-4)
        # A middle layer's residual stream runs to ~80 here: the tolerance scales with it.
        scale = max(1.0, target_hidden.abs().max().item())
        assert torch.allclose(mined_target_hidden, target_hidden, atol=1e-4 * scale)
        mined = logit_features(target_logits[None], draft_logits[None], torch.tensor([seq[-1]]))[0]
        assert torch.allclose(mined, decoded_logit_features, atol=1e-4)
        # The target-only judge's columns (a lookup's): the same numbers as mining's first four.
        assert torch.allclose(mined[:len(TARGET_LOGIT_FEATURES)], decoded_target_logit_features, atol=1e-4)
        assert mined[2] >= math.log(2)  # a mismatch: the draft's token is not the target's first


def test_a_response_that_fills_the_context_is_labelled_to_its_end(pair):
    # The first answer runs into the context: a swap at its last token leaves no room
    # for a continuation, which must end the regeneration, not raise.
    task = ToyTask()
    for words in range(1, 80):
        problem = dataclasses.replace(task.load("all")[0], prompt=" ".join(["cat"] * words) + " 12")
        ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
        room = pair.target.max_context - len(ids)
        if not 8 <= room <= 30:  # short responses keep the test fast
            continue
        mined = mine_problem(pair, task, problem, ids, MiningOptions(max_new_tokens=room + 20, fast=True))
        assert len(mined.token_ids) == room
        if any(m.position == room - 1 for m in mined.mismatches):
            return
    pytest.fail("no prompt gave a mismatch at the last token that fits")


def test_a_draft_with_the_shorter_context_bounds_the_responses(pair):
    """On a mixed pair the draft's context may be the shorter (llama.cpp's n_ctx under a
    torch target's): the draft reads every response, so responses stop at its limit,
    and a prompt it cannot hold is refused as too long, not failed on."""
    task = ToyTask()
    problem = task.load("all")[1]
    ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
    full = pair.draft.max_context
    try:
        pair.draft.max_context = len(ids) + 12
        mined = mine_problem(pair, task, problem, ids, MiningOptions(max_new_tokens=40))
        assert len(mined.token_ids) == 12 and mined.mismatches
        assert all(m.position < 12 for m in mined.mismatches)
        pair.draft.max_context = len(ids)
        with pytest.raises(PromptError, match=f"the prompt has {len(ids)} tokens; the context holds {len(ids)}"):
            mine_problem(pair, task, problem, ids, MiningOptions(max_new_tokens=40))
    finally:
        pair.draft.max_context = full


def test_the_rejoin_shortcut_skips_verifying_what_rejoins_the_old_response(pair):
    """Off (or never triggered) it is the fast path exactly; on, re-joined regenerations
    end early, their alternative response is the old one's tail, and labels follow it."""
    task, refusing = RejoiningToyTask(), RejoiningToyTask(always=False)
    rejoined = 0
    for problem in task.load("all")[:4]:
        ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))

        def cold(chosen_task, rejoin=0):  # from empty caches, so that pass counts compare
            pair.target.reset()
            pair.draft.reset()
            return mine_problem(pair, chosen_task, problem, ids, MiningOptions(max_new_tokens=MAX_NEW, rejoin=rejoin))

        fast = cold(task)
        # Nothing interchangeable, or a re-join longer than any response: never triggered.
        for never in (cold(refusing, rejoin=2), cold(task, rejoin=MAX_NEW + 1)):
            assert never.mismatches == fast.mismatches and never.target_passes == fast.target_passes
        short = cold(task, rejoin=2)
        for m in short.mismatches:
            # Every label is what its alternative response says.
            assert m.important == (task.extract_answer(m.alt_response) != short.answer)
            rejoined += m.regeneration_stop == "rejoined"
        assert short.target_passes <= fast.target_passes
    assert rejoined  # the shortcut was taken, so the checks above mean something


def test_confirmation_undoes_a_label_that_one_regeneration_flipped(pair):
    from tests.toy_task import FlakyToyTask
    key = lambda m: (m.position, m.draft_token, m.important)  # noqa: E731
    for problem in ToyTask().load("all")[:3]:
        ids = chat_prompt_ids(pair.tokenizer, ToyTask().messages(problem))
        reference = mine_problem(pair, ToyTask(), problem, ids, MiningOptions(max_new_tokens=MAX_NEW))
        if not reference.mismatches:
            continue
        flaky = mine_problem(pair, FlakyToyTask(), problem, ids, MiningOptions(max_new_tokens=MAX_NEW))
        confirmed = mine_problem(pair, FlakyToyTask(), problem, ids,
                                 MiningOptions(max_new_tokens=MAX_NEW, confirm=True))
        assert flaky.mismatches[0].important  # the misread answer reads as a change
        assert [key(m) for m in confirmed.mismatches] == [key(m) for m in reference.mismatches]
        assert confirmed.mismatches[0].confirmed is reference.mismatches[0].important
        # An overturned label keeps the answer its first regeneration gave, for reading.
        assert confirmed.mismatches[0].overturned_answer == (None if reference.mismatches[0].important
                                                              else "misread")
        assert all(m.overturned_answer is None for m in confirmed.mismatches[1:])
        # On torch both pass layouts compute the same numbers: every other important label is confirmed.
        assert all(m.confirmed for m in confirmed.mismatches[1:] if m.important)
