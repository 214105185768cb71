"""Code tasks: MBPP (mining) and HumanEval (evaluation), checked by running unit tests.

A response's answer is its program's pass/fail result on each of the problem's tests,
as a string such as "PPF": two responses are equivalent when every test gives the same
result, and correct when every test passes. Programs run only in the sandbox, one
process per test, so a test that loops or crashes does not decide the others.
"""

from __future__ import annotations

import functools
import re

from autojudge.tasks.base import Problem, TaskBase
from autojudge.tasks.datasets import load_humaneval, load_mbpp
from autojudge.tasks.sandbox import Limits, run_python

# Generous for MBPP/HumanEval solutions (milliseconds each), short for loops.
TEST_LIMITS = Limits(wall_seconds=6.0, cpu_seconds=3)

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_program(text: str) -> str | None:
    """The first fenced code block that defines something (else the first block), or None."""
    blocks = [block.strip("\n") for block in _FENCE.findall(text)]
    blocks = [block for block in blocks if block.strip()]
    if not blocks:
        return None
    return next((block for block in blocks if re.search(r"^\s*(def|class) ", block, re.M)), blocks[0])


def program_settled(text: str) -> bool:
    """Whether no continuation of `text` can change `extract_program`'s choice.

    True once every block up to the first one that defines something is closed: later
    text can only add blocks after it. (An unclosed block runs to the end of the text,
    so it may still grow.)
    """
    for match in _FENCE.finditer(text):
        if not match.group(0).endswith("```"):
            return False
        if match.group(1).strip() and re.search(r"^\s*(def|class) ", match.group(1), re.M):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def run_tests(program: str, tests: tuple[str, ...]) -> str:
    """"P" or "F" per test; cached, since swaps in prose leave the program unchanged."""
    return "".join("P" if run_python(f"{program}\n\n{test}\n", TEST_LIMITS).passed else "F"
                   for test in tests)


class CodeTask(TaskBase):
    """What MBPP and HumanEval share: answers are pass/fail strings, equivalent when equal
    (TaskBase's `equivalent`), and settled once the program's code block is closed."""

    max_new_tokens = 512

    def settled(self, text: str, problem: Problem) -> bool:
        return program_settled(text)


class MBPP(CodeTask):
    """MBPP's 500 test problems, split once and for all: ids 11-310 "mine", 311-510 "eval"."""

    name = "mbpp"
    last_mine_id = 310

    def load(self, split: str) -> list[Problem]:
        if split not in ("mine", "eval", "all"):
            raise ValueError(f"unknown MBPP split {split!r}; choose one of: mine, eval, all")
        problems = load_mbpp()
        if split == "all":
            return problems
        return [p for p in problems if (p.id <= self.last_mine_id) == (split == "mine")]

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        tests = "\n".join(problem.extra["test_list"])
        return [{"role": "user", "content": (
            f"{problem.prompt}\nYour code should pass these tests:\n\n{tests}\n\n"
            "Write the Python function in one ```python code block.")}]

    def extract_answer(self, text: str, problem: Problem) -> str | None:
        program = extract_program(text)
        if program is None:
            return None
        setup = problem.extra.get("test_setup_code") or ""
        return run_tests(f"{setup}\n{program}" if setup else program, tuple(problem.extra["test_list"]))

    def is_correct(self, text: str, problem: Problem) -> bool:
        answer = self.extract_answer(text, problem)
        return answer is not None and set(answer) == {"P"}


class HumanEval(CodeTask):
    """HumanEval's 164 problems; one result per problem (its `check` function)."""

    name = "humaneval"

    def load(self, split: str) -> list[Problem]:
        if split not in ("eval", "all"):
            raise ValueError(f"unknown HumanEval split {split!r}; choose one of: eval, all")
        return load_humaneval()

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        return [{"role": "user", "content": (
            "Complete the following Python function. Write the whole function, with its "
            f"imports, in one ```python code block.\n\n```python\n{problem.prompt}```")}]

    def extract_answer(self, text: str, problem: Problem) -> str | None:
        program = extract_program(text)
        if program is None:
            return None
        entry = problem.extra["entry_point"]
        if not re.search(rf"^\s*def {re.escape(entry)}\s*\(", program, re.M):
            program = problem.prompt + program  # a body without its signature
        else:  # keep the prompt's imports (typing.List and the like)
            imports = [line for line in problem.prompt.splitlines() if line.startswith(("import ", "from "))]
            program = "\n".join(imports + [program])
        return run_tests(program, (f"{problem.extra['test']}\ncheck({entry})",))

    def is_correct(self, text: str, problem: Problem) -> bool:
        return self.extract_answer(text, problem) == "P"
