"""MBPP and HumanEval: program extraction, test results as answers, equivalence."""

from __future__ import annotations

import pytest

from autojudge.tasks import get_task
from autojudge.tasks.code import extract_program, program_settled


@pytest.fixture(scope="module")
def mbpp():
    task = get_task("mbpp")
    return task, {p.id: p for p in task.load("all")}


def fenced(code: str) -> str:
    return f"Here is the function:\n```python\n{code}\n```\nIt works because ..."


def test_extract_program_prefers_the_block_that_defines_something():
    text = "```python\nprint(f(2))\n```\nand\n```python\ndef f(x):\n    return x\n```"
    assert extract_program(text) == "def f(x):\n    return x"
    assert extract_program("no code at all") is None
    assert extract_program("```python\ndef g():\n    return 1") == "def g():\n    return 1"  # cut off


SUFFIXES = ["", "\n```python\ndef f(x):\n    return -x\n```", "```", "`\nclass C: pass\n", "\n```\nmore"]


@pytest.mark.parametrize("text, settled", [
    ("```python\ndef f(x):\n    return x\n```", True),
    ("```python\ndef f(x):\n    return x\n```\nIt returns x.", True),
    ("```python\nprint(1)\n```\n```python\ndef f(x):\n    return x\n```", True),
    ("```python\ndef f(x):\n    return x\n", False),  # the block may still grow
    ("```python\ndef f(x):\n    return x\n``", False),
    ("```python\nprint(f(2))\n```", False),  # a later block that defines f would win
    ("```python\n\n```\n", False),
    ("Let me think.", False),
])
def test_a_settled_program_is_what_every_continuation_extracts(text, settled):
    assert program_settled(text) == settled
    programs = {extract_program(text + suffix) for suffix in SUFFIXES}
    if settled:
        assert programs == {extract_program(text)}
    else:
        assert len(programs) > 1  # some continuation changes the program


@pytest.mark.parametrize("problem_id", [11, 12, 100, 250, 510])
def test_mbpp_reference_solutions_pass_every_test(mbpp, problem_id):
    task, problems = mbpp
    problem = problems[problem_id]
    answer = task.extract_answer(fenced(problem.reference), problem)
    assert answer == "P" * len(problem.extra["test_list"])
    assert task.is_correct(fenced(problem.reference), problem)


def test_mbpp_answers_are_per_test_results(mbpp):
    task, problems = mbpp
    problem = problems[11]  # remove first and last occurrence of a character
    # Right on the first two tests, wrong on the third ("PHP", "P" -> "H").
    partly = fenced("def remove_Occ(s, ch):\n    return s.replace(ch, '') if len(s) > 3 else s")
    looping = fenced("def remove_Occ(s, ch):\n    while True:\n        pass")
    assert task.extract_answer(partly, problem) == "PPF"
    assert task.extract_answer(looping, problem) == "FFF"
    assert task.extract_answer("I cannot write code.", problem) is None
    # The same test results are equivalent whatever the code looks like; None never is.
    reference = task.extract_answer(fenced(problem.reference), problem)
    renamed = problem.reference.replace("ch", "char_")
    assert task.equivalent(task.extract_answer(fenced(renamed), problem), reference)
    assert not task.equivalent(task.extract_answer(partly, problem), reference)
    assert not task.equivalent(None, None)


def test_humaneval_accepts_whole_functions_and_bare_bodies():
    task = get_task("humaneval")
    problem = task.load("eval")[0]
    assert task.is_correct(fenced(problem.prompt + problem.reference), problem)
    assert task.is_correct(fenced(problem.reference), problem)  # body only: the signature is prepended
    wrong = problem.prompt + "    return False\n"
    assert task.extract_answer(fenced(wrong), problem) == "F"
