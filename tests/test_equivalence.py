"""The model answer checker, the open-question tasks that use it, and its calibration."""

from __future__ import annotations

import json

import pytest
import torch

from autojudge.evaluation.checker_calibration import calibrate, calibration_markdown, calibration_summary
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mine
from autojudge.models.backend import another_sequence
from autojudge.models.hf import HFCausalLM
from autojudge.models.loading import model_beside
from autojudge.models.runtime import RuntimeOptions
from autojudge.tasks import get_task
from autojudge.tasks.base import Problem, Verdict, compare
from autojudge.tasks.equivalence import LLMEquivalence, attach_checker, wants_checker
from autojudge.tasks.open_qa import NaturalQuestions, answer_line, matches, normalise
from tests.tiny import tiny_model
from tests.tiny_dirs import tiny_tokenizer
from tests.toy_task import ToyTask, tiny_pair


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


def long_checker(threshold: float = 0.5) -> LLMEquivalence:
    """A checker on a tiny model with room for the prompt (one token per character)."""
    return LLMEquivalence(HFCausalLM(tiny_model(7, context=4096), "tiny-checker"), tiny_tokenizer(), threshold)


def test_answers_are_normalised_and_matched_like_squad():
    assert normalise("The  Beatles!") == "beatles"
    assert answer_line("He was born in 1945.\nAnswer: **in 1945**") == "in 1945"
    assert answer_line("It was Paris.\n\nParis") == "Paris"
    assert answer_line("   ") is None
    assert matches("The Beatles.", ["Beatles"]) and matches("1945", ["May 1945", "1945"])
    # Exact match, not containment: a sentence holding the answer is not the answer.
    assert not matches("in 1945", ["1945"]) and not matches("They won in 1945.", ["1945"])
    assert not matches(None, ["x"]) and not matches("x", [""])


def test_open_question_tasks_load_disjoint_splits_with_their_answers():
    for name in ("naturalqs", "squad"):
        task = get_task(name)
        mine_ids, eval_ids = {p.id for p in task.load("mine")}, {p.id for p in task.load("eval")}
        assert len(mine_ids) == 600 and len(eval_ids) == 400 and not mine_ids & eval_ids
        problem = task.load("eval")[0]
        assert problem.extra["answers"] and problem.reference == problem.extra["answers"][0]
        assert task.is_correct(f"Well.\nAnswer: {problem.reference}", problem)
        assert not task.is_correct("Answer: certainly not this", problem)
    squad = get_task("squad").load("mine")[0]
    assert squad.extra["background"] and squad.prompt.endswith("?")
    assert squad.extra["background"] in get_task("squad").messages(squad)[1]["content"]
    with pytest.raises(ValueError, match="unknown split"):
        get_task("naturalqs").load("train")


def test_the_checker_reads_yes_and_no_from_one_pass():
    checker = long_checker()
    p = checker.p_same("what is 2 + 2", "It is 4.", "Four.")
    assert 0 < p < 1
    # The same number from a pass of its own over the prompt.
    fresh = another_sequence(checker.model)
    probs = torch.softmax(fresh.forward(checker.prompt_ids("what is 2 + 2", "It is 4.", "Four.")).logits[-1], -1)
    yes, no = probs[checker.yes_ids].sum().item(), probs[checker.no_ids].sum().item()
    assert p == pytest.approx(yes / (yes + no), abs=1e-5)
    # Cached by the question and both responses, in order.
    assert checker.p_same("what is 2 + 2", "It is 4.", "Four.") == p and checker.calls == 1
    checker.p_same("what is 2 + 2", "Four.", "It is 4.")
    assert checker.calls == 2
    verdict = checker.verdict("what is 2 + 2", "It is 4.", "Four.")
    assert verdict == Verdict(p >= 0.5, p)
    with pytest.raises(ValueError, match="strictly between"):
        LLMEquivalence(checker.model, checker.tokenizer, threshold=1.0)


def test_a_second_sequence_leaves_the_first_ones_cache_alone(pair):
    target = pair.target
    target.reset()
    ids = [5, 6, 7, 8, 9, 10]
    first = target.forward(ids[:4]).logits
    other = another_sequence(target)
    other.forward([11, 12, 13, 14, 15])
    assert target.tokens == ids[:4] and other.tokens == [11, 12, 13, 14, 15]
    rest = target.forward(ids[4:]).logits
    target.reset()
    whole = target.forward(ids).logits
    assert torch.allclose(torch.cat([first, rest]), whole, atol=1e-4)


def test_an_open_task_compares_identical_answers_without_the_model_and_needs_a_checker_otherwise(pair):
    task = NaturalQuestions()
    problem = Problem(0, "who wrote hamlet", "Shakespeare", {"answers": ["Shakespeare"]})
    assert compare(task, problem, "Answer: Shakespeare", None, "It was\nAnswer: shakespeare.", None) == Verdict(True)
    with pytest.raises(Exception, match="attach one"):
        compare(task, problem, "Answer: Shakespeare", None, "Answer: Marlowe", None)
    attached = attach_checker(task, *model_beside(pair, None, RuntimeOptions()))  # another sequence of the target
    assert attached.model.name == pair.target.name and attached.model is not pair.target
    task.checker = checker = long_checker()
    verdict = compare(task, problem, "Answer: Shakespeare", None, "Answer: Marlowe", None)
    assert verdict.p_same is not None and checker.calls == 1
    assert wants_checker(task) and not wants_checker(ToyTask())  # the toy task compares without a model
    with pytest.raises(ValueError, match="without a model"):
        attach_checker(ToyTask(), checker.model, checker.tokenizer)
    # Tasks without a model compare extracted answers.
    assert compare(ToyTask(), problem, "", "1", "", "1") == Verdict(True)


class CheckedToyTask(ToyTask):
    """The toy task, its answers compared by a model checker (as an open question's are)."""
    name = "toy-checked"

    def __init__(self):
        self.checker = None

    def compare_responses(self, problem, text_a, text_b):
        return self.checker.verdict(problem.prompt, text_a, text_b)


def test_mining_records_the_checkers_probability_beside_each_label(pair, tmp_path):
    task = CheckedToyTask()
    task.checker = checker = long_checker(0.5)
    store = mine(pair, task, "mine", str(tmp_path / "run"), MiningOptions(max_new_tokens=24, window=4), limit=2)
    labels = [m for r in store.records for m in r["mismatches"]]
    assert labels and checker.calls >= 1
    for label in labels:
        assert 0 < label["same_probability"] < 1
        assert label["important"] == (label["same_probability"] < 0.5)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["checker"]["threshold"] == 0.5 and meta["checker"]["model"] == "tiny-checker"
    # Resuming with another threshold would mix two kinds of labels: refused.
    task.checker = long_checker(0.7)
    with pytest.raises(Exception, match=r"other settings: checker\.threshold: 0\.5 -> 0\.7; use another --out"):
        mine(pair, task, "mine", str(tmp_path / "run"), MiningOptions(max_new_tokens=24, window=4), limit=3)


def test_calibration_against_an_exact_checker_resumes_and_reports(pair, tmp_path):
    task = ToyTask()
    run = tmp_path / "mined"
    mine(pair, task, "mine", str(run), MiningOptions(max_new_tokens=24, window=4), limit=4)
    checker = long_checker()
    first = calibrate(checker, task, [str(run)], 3, tmp_path / "cal")
    records = calibrate(checker, task, [str(run)], 6, tmp_path / "cal2")
    calls = checker.calls
    again = calibrate(checker, task, [str(run)], 6, tmp_path / "cal2")  # resumed: nothing left to ask
    assert len(first) == 3 and len(records) == 6 and again == records and checker.calls == calls
    labels = {(r["problem_id"], m["position"]): m["important"]
              for line in (run / "problems.jsonl").read_text().splitlines() for r in [json.loads(line)]
              for m in r["mismatches"]}
    assert all(labels[(r["problem"], r["position"])] == r["different"] for r in records)
    summary = calibration_summary(records, 0.5)
    default = next(row for row in summary["rows"] if row["threshold"] == 0.5)
    said = sum(r["p_same"] < 0.5 for r in records)
    assert default["said_different"] == said and summary["pairs"] == len(records)
    assert "(default)" in calibration_markdown(summary, "header")
