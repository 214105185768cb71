"""Lossy rivals and hybrids behind the one acceptance function, typed modes, adaptive drafts.

Policies are checked on hand-made windows (where the right answer is known by
construction) and on tiny random models (where they must run inside the real loop).
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from autojudge.decoding import Exact, generate
from autojudge.decoding.modes import Mode, parse_mode
from autojudge.decoding.policies import FLy, JudgeOrFLy, JudgePolicy, Typical, Window, keep_with_lookahead, top_entropy
from autojudge.judge.model import Judge
from tests.tiny import backend, noisy_copy, tiny_model

PROMPT = [5, 17, 33, 2, 8, 61, 40]
VOCAB = 16


def window(draft: list[int], rows: list[list[float]]) -> Window:
    """A window whose target logits are `rows` ([k + 1] rows over a 16-token vocabulary)."""
    logits = torch.full((len(rows), VOCAB), -30.0)
    for i, row in enumerate(rows):
        logits[i, : len(row)] = torch.tensor(row)
    return Window(torch.tensor(draft), logits, torch.zeros(len(draft), 4), None)


SURE = [10.0, 0.0, 0.0]  # the target's token 0, nearly certain
TORN = [1.0, 0.9, 0.8]  # tokens 0, 1 and 2 nearly even: top-3 entropy near log 3


@pytest.mark.parametrize("matches, harmless, lookahead, kept", [
    ([1, 1, 0, 1, 1], [0, 0, 1, 0, 0], 0, 5),  # harmless: kept
    ([1, 1, 0, 1, 1], [0, 0, 0, 0, 0], 0, 2),  # not: the cycle ends there
    ([1, 0, 1, 1, 1], [0, 1, 0, 0, 0], 3, 5),  # three matches follow it: kept
    ([1, 0, 1, 0, 1], [0, 1, 0, 1, 0], 2, 1),  # the second mismatch breaks the first's lookahead
    ([1, 1, 1, 0, 1], [0, 0, 0, 1, 0], 2, 3),  # too near the end to show agreement: not kept
])
def test_keep_with_lookahead(matches, harmless, lookahead, kept):
    assert keep_with_lookahead(torch.tensor(matches, dtype=torch.bool), torch.tensor(harmless, dtype=torch.bool),
                               lookahead) == kept


def test_fly_keeps_a_mismatch_only_where_the_target_is_torn_and_then_agrees():
    # Draft: 1 (mismatch: the target prefers 0), then three tokens the target agrees with.
    torn = window([1, 0, 0, 0], [TORN, SURE, SURE, SURE, SURE])
    sure = window([1, 0, 0, 0], [SURE, SURE, SURE, SURE, SURE])
    assert top_entropy(torn.target_logits[:1], 3).item() == pytest.approx(math.log(3), abs=0.01)
    assert FLy(entropy=0.3, lookahead=3)(torn) == 4
    assert FLy(entropy=0.3, lookahead=3)(sure) == 0  # a sure target: FLy is exact
    assert FLy(entropy=0.3, lookahead=4)(torn) == 0  # not enough agreement left in the window
    assert FLy(entropy=1.2, lookahead=3)(torn) == 0  # log 3 = 1.10 is not above 1.2


def _constant_judge(p_important: float) -> Judge:
    """A judge of the windows above (4 target features) whose P(important) is always `p_important`."""
    meta = {"features": "target", "hidden": {"draft": 4, "target": 4}, "thresholds": []}
    return Judge(torch.zeros(4), torch.ones(4), torch.zeros(4), math.log(p_important / (1 - p_important)), meta)


def test_judge_or_fly_keeps_what_either_keeps():
    torn_then_agrees = window([1, 0, 0, 0], [TORN, SURE, SURE, SURE, SURE])
    sure_mismatch = window([1, 0, 0, 0], [SURE, SURE, SURE, SURE, SURE])
    torn_then_differs = window([1, 1, 0, 0], [TORN, SURE, SURE, SURE, SURE])
    judge = _constant_judge(0.5)  # keeps every mismatch at a threshold above 0.5, none below
    for w in (torn_then_agrees, sure_mismatch, torn_then_differs):
        # A judge that keeps nothing: FLy alone.
        assert JudgeOrFLy(judge, 0.4, 0.3, 3)(w) == FLy(0.3, 3)(w)
        # FLy that keeps nothing (no entropy is above 5): the judge alone.
        assert JudgeOrFLy(judge, 0.6, 5.0, 3)(w) == JudgePolicy(judge, 0.6)(w)
    assert FLy(0.3, 3)(torn_then_differs) == 0 and JudgePolicy(judge, 0.6)(sure_mismatch) == 4
    assert JudgeOrFLy(judge, 0.6, 0.3, 3)(torn_then_differs) == 4  # the judge keeps both mismatches
    assert parse_mode("judge-or-fly@0.9").name == "judge-or-fly@0.9"
    assert parse_mode("judge-or-fly:0.2:0.3:4").policy_for(judge).name == "judge-or-fly:0.2:0.3:4"


def test_typical_acceptance_keeps_tokens_the_target_finds_plausible_enough():
    # Token 1 has probability about 0.33 under TORN, about 4.5e-5 under SURE.
    torn, sure = window([1, 0], [TORN, SURE, SURE]), window([1, 0], [SURE, SURE, SURE])
    assert Typical(epsilon=0.09, alpha=0.3)(torn) == 2
    assert Typical(epsilon=0.09, alpha=0.3)(sure) == 0
    assert Typical(epsilon=0.5, alpha=1.0)(torn) == 0  # the bar min(0.5, e^-1.1 = 0.33) is not passed


def test_modes_parse_once_to_one_canonical_name():
    assert parse_mode("fly:0.3:6") == parse_mode("fly") and parse_mode("fly").name == "fly"
    assert parse_mode("typical:0.09:0.3").name == "typical"
    assert parse_mode("fly:0.5").name == "fly:0.5" and parse_mode("fly:0.5").values == (0.5, 6)
    assert parse_mode("judge@0.95").name == "judge@0.95" and parse_mode("judge@0.95").by_recall
    assert parse_mode("judge:0.2:4").name == "judge:0.2:4" and parse_mode("judge:0.2:0").name == "judge:0.2"
    assert parse_mode("topk:8").name == "topk:8" and parse_mode("target") == Mode("target")
    assert isinstance(parse_mode("fly").policy_for(), FLy)
    for bad, message in (("topk", "write topk:K"), ("judge@1.5", r"lie in \[0, 1\]"), ("fly@0.3", "only judge"),
                         ("nope", "unknown mode 'nope'; choose one of: target, exact, topk, fly, typical, judge"),
                         ("topk:0", "k >= 1"), ("exact:3", "takes 0 argument"), ("fly:a", "must be numbers")):
        with pytest.raises(ValueError, match=message):
            parse_mode(bad)
    with pytest.raises(ValueError, match="needs a judge"):
        parse_mode("judge@0.9").policy_for()



def test_a_mode_answers_for_itself_and_prints_as_it_was_written():
    names = ("target", "exact", "judge@0.9", "topk:4", "fly", "typical")
    modes = [parse_mode(name) for name in names]
    assert [m.is_target for m in modes] == [True, False, False, False, False, False]
    assert [m.is_lossless for m in modes] == [True, True, False, False, False, False]
    assert [m.needs_judge for m in modes] == [False, False, True, False, False, False]
    assert [m.samples for m in modes] == [True, True, True, False, False, False]  # speculative sampling's rules
    table = {"features": "hidden", "hidden": {"draft": 4, "target": 4},
             "thresholds": [{"threshold": 0.155, "recall": 0.95}, {"threshold": 0.4, "recall": 0.6}]}
    judge = Judge(torch.zeros(8), torch.ones(8), torch.zeros(8), 0.0, table)
    by_recall = parse_mode("judge@0.95")
    assert by_recall.threshold(judge) == 0.155 and by_recall.shown(judge) == "judge@0.95 (T=0.155)"
    assert by_recall.shown() == "judge@0.95" and by_recall.name == "judge@0.95"  # no judge, no threshold to tell
    assert parse_mode("judge:0.2").shown(judge) == "judge:0.2" and parse_mode("topk:4").threshold(judge) is None


def test_the_registry_is_complete_on_import_with_nothing_of_the_judges_stage():
    # A fresh interpreter: this one has imported the judge's modules already.
    code = ("import sys; from autojudge.decoding.modes import POLICIES, parse_mode; "
            "print(sorted(POLICIES), parse_mode('judge@0.9:2').name, 'autojudge.judge' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['exact',", "'fly',", "'judge',", "'judge-or-fly',", "'topk',", "'typical']",
                                   "judge@0.9:2", "False"]

def _accept_all_judge(hidden_d: int, hidden_t: int) -> Judge:
    n = hidden_d + hidden_t
    meta = {"features": "hidden", "hidden": {"draft": hidden_d, "target": hidden_t}, "thresholds": []}
    return Judge(torch.zeros(n), torch.ones(n), torch.zeros(n), 0.0, meta)  # P(important) = 0.5


def test_the_judges_lookahead_keeps_fewer_mismatches_than_the_judge_alone():
    target_model = tiny_model(3)
    draft_model = noisy_copy(target_model, 4, scale=0.1)  # close enough to agree again after a mismatch
    runs = {}
    for lookahead in (0, 2):
        target, draft = backend(target_model, "t"), backend(draft_model, "d")
        policy = JudgePolicy(_accept_all_judge(64, 64), 0.51, lookahead)
        runs[lookahead] = generate(target, PROMPT, draft=draft, policy=policy, window=8, max_new_tokens=48)
    assert 0 < runs[2].stats.accepted_mismatches < runs[0].stats.accepted_mismatches
    assert parse_mode("judge:0.51:2").policy_for(_accept_all_judge(64, 64)).lookahead == 2


def test_fly_with_an_unreachable_entropy_is_exact_decoding():
    target_model = tiny_model(3)
    draft_model = noisy_copy(target_model, 4, scale=1.0)
    out = {}
    for name, policy in (("exact", Exact()), ("fly", FLy(entropy=10.0, lookahead=2)),
                         ("typical", Typical(epsilon=1e-9, alpha=1e-9))):
        target, draft = backend(target_model, "t"), backend(draft_model, "d")
        out[name] = generate(target, PROMPT, draft=draft, policy=policy, window=6, max_new_tokens=40)
    assert out["fly"].token_ids == out["exact"].token_ids and out["fly"].stats.accepted_mismatches == 0
    # A bar near zero: typical acceptance keeps nearly every draft token.
    assert out["typical"].stats.accepted_mismatches > 0


def test_adaptive_draft_length_drafts_less_and_stays_lossless():
    target_model = tiny_model(3)
    draft_model = noisy_copy(target_model, 4, scale=1.0)
    out = {}
    for p_min in (0.0, 0.6, 1.0):
        target, draft = backend(target_model, "t"), backend(draft_model, "d")
        out[p_min] = generate(target, PROMPT, draft=draft, policy=Exact(), window=8, max_new_tokens=40,
                              draft_p_min=p_min)
    fixed, adaptive, never = out[0.0], out[0.6], out[1.0]
    assert adaptive.token_ids == fixed.token_ids == never.token_ids
    assert never.stats.drafted_tokens == 0 and never.stats.cycles == never.stats.new_tokens
    assert 0 < adaptive.stats.drafted_tokens < fixed.stats.drafted_tokens
