"""A task of one's own, guarded at every step: the contract at load, runs identified by
what the task makes of its problems, training that says when it learned nothing, and
`generate --task T --problem ID`. Real subprocesses of the `autojudge` command, real
tiny models, real scikit-learn."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autojudge.errors import AutojudgeError
from autojudge.mining.algorithm import LabelledMismatch, MinedProblem
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mine
from autojudge.mining.store import MiningStore
from autojudge.tasks.base import Problem
from autojudge.tasks.examples.arith import Arithmetic
from tests.toy_task import tiny_pair

EXAMPLE = Path(__file__).resolve().parent.parent / "src" / "autojudge" / "tasks" / "examples" / "arith.py"
ERROR = "autojudge: error: "


def run_cli(cwd: Path, *args, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTOJUDGE_HOME": str(home or cwd / "home"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "autojudge", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The error a user sees: status 1, no traceback, one `autojudge: error:` line last."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith(ERROR)] == [lines[-1]], result.stderr
    return lines[-1].removeprefix(ERROR)


def tiny_models(draft: Path, target: Path) -> list[str]:
    return ["--draft", str(draft), "--target", str(target), "--backend", "torch", "--linear", "default"]


PLAIN_TASK_WITHOUT_EXTRACTOR = '''
from autojudge.tasks.base import Problem

class ArithNoExtract:
    name = "arith"
    def load(self, split):
        return [Problem(0, "1 + 1", "2")]
    def messages(self, problem):
        return [{"role": "user", "content": problem.prompt}]
    def equivalent(self, a, b):
        return a is not None and a == b
    def is_correct(self, text, problem):
        return True
'''


@pytest.mark.parametrize("command", [["mine", "--out", "run"], ["eval", "--out", "run"],
                                     ["generate", "--problem", "0"], ["task", "check"]])
def test_a_plain_task_without_extract_answer_is_refused_in_one_line_before_any_model_loads(tmp_path, command):
    (tmp_path / "mytask.py").write_text(PLAIN_TASK_WITHOUT_EXTRACTOR)
    # A target that does not exist: had a model been loaded first, its error would show instead.
    models = [] if command[0] == "task" else ["--target", tmp_path / "no-model", "--draft", tmp_path / "no-model"]
    start = time.perf_counter()
    result = run_cli(tmp_path, *command, "--task", "mytask:ArithNoExtract", *models)
    seconds = time.perf_counter() - start
    assert one_error_line(result) == ("task mytask:ArithNoExtract lacks extract_answer(text, problem); see "
                                      "autojudge/tasks/base.py (or inherit TaskBase, which supplies equivalent "
                                      "and is_correct)")
    assert seconds < 5
    assert not (tmp_path / "run").exists()  # no half-made run directory left behind


def test_a_taskbase_subclass_missing_a_method_or_with_wrong_arguments_is_named(tmp_path):
    (tmp_path / "broken.py").write_text(
        "from autojudge.tasks.base import Problem, TaskBase\n"
        "class NoMessages(TaskBase):\n    name = 'x'\n    def load(self, split): return []\n"
        "    def extract_answer(self, text, problem): return text\n"
        "class OneArgument(NoMessages):\n    def messages(self): return []\n"
        "class NoProblems(NoMessages):\n    def messages(self, problem): return []\n")
    assert one_error_line(run_cli(tmp_path, "task", "check", "broken:NoMessages")) == \
        "task broken:NoMessages lacks messages(problem); TaskBase leaves it to the task"
    assert one_error_line(run_cli(tmp_path, "task", "check", "broken:OneArgument")) == \
        "task broken:OneArgument: messages() cannot be called as messages(problem)"
    assert one_error_line(run_cli(tmp_path, "mine", "--task", "broken:NoProblems", "--out", "run")) == \
        "task x: load('mine') returned no problems"


def test_task_check_runs_the_example_and_refuses_an_answer_that_disagrees_with_itself(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "arith.py")
    result = run_cli(tmp_path, "task", "check", "arith:Arithmetic")
    assert result.returncode == 0, result.stderr
    assert "split mine: 8 problems, ids 0 to 7" in result.stdout
    assert "split eval: 4 problems, ids 8 to 11" in result.stdout
    assert "user: Compute 17 + 25. End with: The answer is N." in result.stdout
    assert "extract_answer found an answer in 12 of 12; is_correct accepts 12 of 12" in result.stdout
    assert result.stderr == ""

    (tmp_path / "vain.py").write_text("from arith import Arithmetic\n"
                                      "class Vain(Arithmetic):\n    def equivalent(self, a, b): return False\n")
    assert one_error_line(run_cli(tmp_path, "task", "check", "--task", "vain:Vain")) == \
        "task arith: equivalent(a, a) is not True for problem 0's answer '42'; an answer must agree with itself"


class Reworded(Arithmetic):
    """The example with its prompt template edited, keeping its name."""

    def messages(self, problem):
        return [{"role": "user", "content": f"What is {problem.prompt}? End with: The answer is N."}]


class Reordered(Arithmetic):
    """The example with its problems in another order, keeping its name."""

    def load(self, split):
        return list(reversed(super().load(split)))


def test_mining_an_edited_task_into_an_existing_run_is_refused_naming_what_changed(tmp_path, tiny_target_dir,
                                                                                 tiny_draft_dir):
    pair = tiny_pair(tiny_target_dir, tiny_draft_dir)
    options = MiningOptions(max_new_tokens=16)
    out = tmp_path / "run"
    store = mine(pair, Arithmetic(), "mine", str(out), options, limit=1)
    recorded = json.loads((out / "meta.json").read_text())["task_fingerprint"]
    assert set(recorded) == {"prompts", "problems", "reference_answers"}

    with pytest.raises(AutojudgeError) as refused:
        mine(pair, Reworded(), "mine", str(out), options, limit=2)
    message = str(refused.value)
    assert "task_fingerprint.prompts" in message and "task_fingerprint.problems" not in message
    assert f'"{recorded["prompts"]}" -> "' in message
    with pytest.raises(AutojudgeError, match=r"task_fingerprint\.problems: \"" + recorded["problems"]):
        mine(pair, Reordered(), "mine", str(out), options, limit=2)
    assert len((out / "problems.jsonl").read_text().splitlines()) == len(store.records) == 1

    # The same task resumes; so does a run mined before fingerprints were recorded.
    meta = json.loads((out / "meta.json").read_text())
    del meta["task_fingerprint"]
    (out / "meta.json").write_text(json.dumps(meta))
    resumed = mine(pair, Arithmetic(), "mine", str(out), options, limit=2)
    assert [r["problem_id"] for r in resumed.records] == [0, 1]


def test_a_changed_setting_is_refused_with_its_old_and_new_value(tmp_path):
    from autojudge.runfiles import check_meta
    check_meta(tmp_path, {"max_new_tokens": 256, "features": {"position": "final norm"}})
    with pytest.raises(AutojudgeError) as refused:
        check_meta(tmp_path, {"max_new_tokens": 512, "features": {"position": "layer 18"}}, "mining run")
    assert str(refused.value) == (f"{tmp_path} holds a mining run with other settings: features.position: "
                                  '"final norm" -> "layer 18"; max_new_tokens: 256 -> 512; use another --out, '
                                  "or the same settings to resume")


def write_unlearnable_run(root: Path, problems: int = 10, labels: int = 12) -> None:
    """A mining run whose features say nothing (all zero) and whose problems differ only
    in how many of their labels are important (1, 2, ... of 12). A judge can learn only
    the base rate of its training folds, which is low exactly where the held-out fold's
    is high: its cross-validated AUC falls below chance, as noise judged by few problems can."""
    meta = {"task": "arith", "split": "mine", "draft": "d", "target": "t", "draft_backend": {"backend": "transformers"},
            "target_backend": {"backend": "transformers"}, "max_new_tokens": 64,
            "features": {"draft": 8, "target": 8, "dtype": "float16", "position": "final norm", "logits": []}}
    store = MiningStore(root, meta)
    for problem in range(problems):
        mismatches = [LabelledMismatch(i, 1, 2, i <= problem, "2", "2", regeneration_stop="eos") for i in range(labels)]
        store.add(MinedProblem(problem, "1", "1", [], mismatches, [torch.zeros(8)] * labels, [torch.zeros(8)] * labels,
                               [torch.zeros(6)] * labels, first_answer_stop="eos"), seconds=1.0)


def test_train_on_labels_it_cannot_learn_warns_and_refuses_below_chance_without_force(tmp_path):
    write_unlearnable_run(tmp_path / "run")
    judge = tmp_path / "judge.safetensors"
    result = run_cli(tmp_path, "train", "--data", "run", "--out", judge)
    message = one_error_line(result)
    assert message.startswith("not written: cross-validated ROC-AUC 0.")
    assert "on 120 labels of 10 problems is below 0.5" in message and "pass --force" in message
    auc = float(message.split("ROC-AUC ")[1].split()[0])
    assert auc < 0.5
    warnings = [line for line in result.stderr.splitlines() if line.startswith("autojudge: warning: ")]
    assert len(warnings) == 2
    assert f"ROC-AUC is {auc:.3f} on 120 labels of 10 problems, below 0.6" in warnings[0]
    assert "no better than a rule that needs no training" in warnings[1]
    assert not judge.exists()

    forced = run_cli(tmp_path, "train", "--data", "run", "--out", judge, "--force", "--report", "auc")
    assert forced.returncode == 0, forced.stderr
    assert judge.exists() and "120 mismatches from 10 problems" in forced.stdout
    report = (tmp_path / "auc.md").read_text()
    assert report.startswith("10 problems, 120 labelled mismatches")
    curve = json.loads((tmp_path / "auc.json").read_text())["learning_curve"]
    sizes = [row["problems"] for row in curve]
    assert sizes == sorted(set(sizes))  # one row per size, no row repeated


def test_runs_mined_before_fingerprints_train_beside_newer_ones(tmp_path):
    from autojudge.judge.train import load_mined
    for name, ids in (("old", range(0, 5)), ("new", range(5, 10))):
        write_unlearnable_run(tmp_path / name, problems=10)
        records = [json.loads(line) for line in (tmp_path / name / "problems.jsonl").read_text().splitlines()]
        (tmp_path / name / "problems.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in records if r["problem_id"] in ids))
    new_meta = json.loads((tmp_path / "new" / "meta.json").read_text())
    (tmp_path / "new" / "meta.json").write_text(json.dumps({**new_meta, "task_fingerprint": {"prompts": "ab"}}))
    assert len(load_mined([tmp_path / "old", tmp_path / "new"]).important) == 120
    (tmp_path / "old" / "meta.json").write_text(json.dumps({**new_meta, "task_fingerprint": {"prompts": "cd"}}))
    with pytest.raises(AutojudgeError, match='other settings than .*: task_fingerprint.prompts: "cd" -> "ab"'):
        load_mined([tmp_path / "old", tmp_path / "new"])


def test_generate_a_problem_of_ones_own_task_prints_its_answer_and_correctness(tmp_path, tiny_target_dir,
                                                                              tiny_draft_dir):
    shutil.copy(EXAMPLE, tmp_path / "arith.py")
    models = tiny_models(tiny_draft_dir, tiny_target_dir)
    as_json = run_cli(tmp_path, "generate", "--task", "arith:Arithmetic", "--problem", 9, *models,
                      "--max-new-tokens", 24, "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    task, problem = Arithmetic(), Problem(9, "33 + 44 + 55", "132")
    assert report["task"] == "arith" and report["problem_id"] == 9 and report["gold"] == "132"
    assert report["answer"] == task.extract_answer(report["text"], problem)
    assert report["correct"] == task.is_correct(report["text"], problem)

    printed = run_cli(tmp_path, "generate", "--task", "arith:Arithmetic", "--problem", 9, *models,
                      "--max-new-tokens", 24)
    assert printed.returncode == 0, printed.stderr
    assert f"answer {report['answer']}  gold 132  {'correct' if report['correct'] else 'wrong'}" in printed.stdout

    assert one_error_line(run_cli(tmp_path, "generate", "--task", "arith:Arithmetic", "--problem", 99, *models)) == \
        "task arith has no problem 99; its ids run from 0 to 11"
    assert one_error_line(run_cli(tmp_path, "generate", "--problem", 3, *models)) == \
        "--problem ID needs --task, the task whose problem it is (a built-in name or module:Class)"


def test_no_shipped_judge_serves_another_task_or_a_free_prompt(tmp_path, tiny_target_dir, tiny_draft_dir):
    shutil.copy(EXAMPLE, tmp_path / "arith.py")
    models = tiny_models(tiny_draft_dir, tiny_target_dir)
    assert one_error_line(run_cli(tmp_path, "generate", "--task", "arith:Arithmetic", "--problem", 9,
                                  "--mode", "judge", *models)) == \
        "no judge is shipped for task 'arith'; pass --judge with one you trained (autojudge mine, then autojudge train)"
    assert one_error_line(run_cli(tmp_path, "generate", "--prompt", "hi", "--mode", "judge", *models)) == \
        ("a judge mode needs a judge for this prompt's task: pass --judge (a file from autojudge train), or "
         "--task gsm8k or mbpp to use the judge shipped for it")
    # Refused before any model loads: a target that does not exist is never reached.
    assert one_error_line(run_cli(tmp_path, "eval", "--task", "arith:Arithmetic", "--modes", "exact,judge:0.5",
                                  "--out", "run", "--target", tmp_path / "no-model")) == \
        "no judge is shipped for task 'arith'; pass --judge with one you trained (autojudge mine, then autojudge train)"
    # The shipped GSM8K judge was trained on another pair than the tiny one.
    message = one_error_line(run_cli(tmp_path, "generate", "--prompt", "hi", "--task", "gsm8k", "--mode", "judge",
                                     *models))
    assert message.startswith("the judge shipped for gsm8k was trained on another pair (")
    assert message.endswith("pass --judge with one trained on this pair (autojudge mine, then autojudge train)")


def test_the_help_names_every_mode_and_the_split_names():
    from autojudge.cli import build_parser
    commands = build_parser()._subparsers._group_actions[0].choices
    eval_help = " ".join(commands["eval"].format_help().split())
    from autojudge.decoding.modes import POLICIES
    for mode in ("target", "topk:K", "judge:THRESHOLD", "judge@RECALL", *POLICIES):  # every registered policy
        assert mode in eval_help
    for command in ("mine", "eval", "bench", "bench-mining", "noise-floor"):
        assert "mine (problems to mine and train on), eval (held out, for evaluation) or all" in \
            " ".join(commands[command].format_help().split())
    assert "task" in commands
