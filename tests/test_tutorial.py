"""docs/own-task.md, run as written: its module is the shipped example, and each of its
commands runs in order on the tiny random-weight pair (the tutorial's default pair
would take gigabytes and hours)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from tests.test_own_task import EXAMPLE, run_cli, tiny_models

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "own-task.md"
# Commands that load the pair get the tiny one, and a budget it answers within quickly.
LOADS_THE_PAIR = {"mine", "generate", "eval"}
TINY_BUDGET = ["--max-new-tokens", "24"]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", TUTORIAL.read_text(), re.MULTILINE | re.DOTALL)


def test_the_tutorials_module_is_the_shipped_example():
    [module] = code_blocks("python")
    assert module == EXAMPLE.read_text()


def test_the_tutorial_runs_from_task_check_to_evaluation(tmp_path, tiny_target_dir, tiny_draft_dir):
    (tmp_path / "arith.py").write_text(code_blocks("python")[0])  # "save this as arith.py"
    (tmp_path / "runs").mkdir()
    commands = [shlex.split(line) for block in code_blocks("sh") for line in block.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["autojudge", "task"], ["autojudge", "mine"], ["autojudge", "train"],
                                         ["autojudge", "generate"], ["autojudge", "eval"]]
    outputs = {}
    for _, command, *args in commands:
        if command in LOADS_THE_PAIR:
            args += tiny_models(tiny_draft_dir, tiny_target_dir) + TINY_BUDGET
        if command == "train":
            # A random-weight pair's labels are noise, which train refuses to write below
            # chance: the journey goes on with --force.
            args.append("--force")
        result = run_cli(tmp_path, command, *args)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        assert "Traceback" not in result.stderr
        outputs[command] = result

    assert "task check passed" in outputs["task"].stdout
    mined = [json.loads(line) for line in (tmp_path / "runs/arith/problems.jsonl").read_text().splitlines()]
    assert sorted(r["problem_id"] for r in mined) == list(range(8))
    assert json.loads((tmp_path / "runs/arith/meta.json").read_text())["task"] == "arith"
    assert (tmp_path / "arith-judge.safetensors").exists() and (tmp_path / "arith-auc.md").exists()
    assert re.search(r"^answer \S+  gold 132  (correct|wrong)$", outputs["generate"].stdout, re.MULTILINE)
    summary = json.loads((tmp_path / "runs/arith-eval/summary.json").read_text())
    assert "judge" in json.dumps(summary) and "exact" in json.dumps(summary)
