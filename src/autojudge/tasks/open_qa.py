"""Open questions, answered in a few words: Natural Questions open and SQuAD.

No program can tell whether "Justin Timberlake" and "Timberlake, at the 2018 halftime
show" give the same answer, so these tasks compare two responses with a language model
(autojudge.tasks.equivalence; `checker`, attached by the commands). Correctness is the
datasets' normalised exact match (SQuAD's normalisation: lower case, no punctuation, no
articles, single spaces) of the answer line with one of the gold answers.

The model is asked for a sentence or two and a last line "Answer: X"; the text after
the last "Answer:" is the answer (the last line when there is none).
"""

from __future__ import annotations

import re
import string

from autojudge.errors import AutojudgeError
from autojudge.tasks.base import Problem, TaskBase, Verdict
from autojudge.tasks.datasets import NATURALQS_OPEN, SQUAD, load_open_qa

ANSWER_INSTRUCTION = (
    "Answer in one or two short sentences. Finish with a last line that reads "
    '"Answer: X" where X is the short answer alone (a name, a date, a number or a few words).'
)
_ANSWER_LINE = re.compile(r"answer\s*[:：]\s*(.+)", re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_line(text: str) -> str | None:
    """The raw short answer: after the last "Answer:", else the last non-empty line."""
    found = _ANSWER_LINE.findall(text)
    lines = [line for line in text.splitlines() if line.strip()]
    raw = found[-1] if found else (lines[-1] if lines else "")
    return raw.strip().strip("*_` ").strip() or None


def matches(answer: str | None, gold: list[str]) -> bool:
    """SQuAD's exact match: the normalised answer equals a normalised gold answer.

    Not "holds one": a response without its answer line is scored on its last line, and
    a whole sentence holds the gold span more often than a short answer equals it. With
    containment, a judge mode that lost the answer line in 24 of 114 SQuAD answers
    (exact: 7) scored 12 points above exact decoding."""
    return answer is not None and any((g := normalise(alias)) and normalise(answer) == g for alias in gold)


class OpenQuestions(TaskBase):
    """What NQ open and SQuAD share; a subclass names its dataset and writes its prompt."""
    name = "open-qa"
    # Answers are a few sentences; 256 leaves room for a model that explains at length
    # (the share this cuts is in every mining summary and eval report).
    max_new_tokens = 256
    artifact = NATURALQS_OPEN
    system_prompt = "You answer questions accurately and briefly."

    def __init__(self):
        self.checker = None  # an LLMEquivalence; see autojudge.tasks.equivalence.attach_checker

    def load(self, split: str) -> list[Problem]:
        return load_open_qa(self.artifact, split)

    def question(self, problem: Problem) -> str:
        return problem.prompt

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": f"{self.question(problem)}\n\n{ANSWER_INSTRUCTION}"}]

    def extract_answer(self, text: str, problem: Problem) -> str | None:
        """The answer line, normalised: equal strings are certainly the same answer."""
        line = answer_line(text)
        return normalise(line) or None if line else None

    # equivalent: TaskBase's, equal normalised answer lines; the checker decides the rest.

    def compare_responses(self, problem: Problem, text_a: str, text_b: str) -> Verdict:
        a, b = self.extract_answer(text_a, problem), self.extract_answer(text_b, problem)
        if self.equivalent(a, b):
            return Verdict(True)  # the same answer line needs no model
        if self.checker is None:
            raise AutojudgeError(f"the {self.name} task compares answers with a model: attach one "
                                 "(autojudge.tasks.equivalence.attach_checker)")
        return self.checker.verdict(problem.prompt, text_a, text_b)

    def is_correct(self, text: str, problem: Problem) -> bool:
        return matches(answer_line(text), problem.extra["answers"])


class NaturalQuestions(OpenQuestions):
    """Natural Questions open: Google search questions, short answers with aliases."""
    name = "naturalqs"
    artifact = NATURALQS_OPEN


class Squad(OpenQuestions):
    """SQuAD: a Wikipedia passage and a question whose answer is a span of it."""
    name = "squad"
    artifact = SQUAD

    def question(self, problem: Problem) -> str:
        return f"Background:\n{problem.extra['background']}\n\nQuestion: {problem.prompt}"
