"""The README's main job, `autojudge demo`: its side-by-side table on tiny random models,
and the whole command as a subprocess on the real default pair."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from autojudge.decoding import defaults
from autojudge.decoding.modes import DecodingOptions, parse_mode
from autojudge.demo import ON_A_SMALL_CPU, side_by_side
from autojudge.tasks.gsm8k import GSM8K
from tests.test_evaluation import constant_judge
from tests.toy_task import ToyTask, tiny_pair

MAX_NEW = 48


def mode_line(label: str, out: str) -> dict:
    """The per-problem line of one mode: its token count, tokens/cycle and accepted mismatches."""
    found = re.search(rf"^--- {label}\s+answer .*?; (\d+) tokens, ([\d.]+) tokens/cycle, "
                      r"[\d.]+ tok/s, (\d+) mismatches accepted", out, re.MULTILINE)
    assert found, out
    return {"tokens": int(found[1]), "per_cycle": float(found[2]), "mismatches": int(found[3])}


def summary_row(label: str, out: str) -> dict:
    """A mode's row of the summary: accuracy, tokens/cycle, tok/s and its speed against the target alone."""
    found = re.search(rf"^  {label}\s+(\d+)/(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x$", out, re.MULTILINE)
    assert found, out
    return {"correct": int(found[1]), "problems": int(found[2]), "per_cycle": float(found[3]),
            "per_second": float(found[4]), "vs_target": float(found[5])}


def test_the_demo_sets_target_exact_and_judge_side_by_side_against_the_target(tiny_target_dir, tiny_draft_dir,
                                                                                capsys):
    pair, task = tiny_pair(tiny_target_dir, tiny_draft_dir), ToyTask()
    judge = constant_judge(pair, 0.5)  # P(important) 0.5: judge@0.0 runs at the table's threshold 0.7
    modes = [parse_mode(name) for name in ("target", "exact", "judge@0.0")]
    side_by_side(pair, task, task.load("all")[:2], modes, DecodingOptions(window=6, max_new_tokens=24), judge)
    out = capsys.readouterr().out

    assert re.search(r"^  mode\s+accuracy\s+tokens/cycle\s+tok/s\s+vs target$", out, re.MULTILINE), out
    target, exact = summary_row("target", out), summary_row("exact", out)
    judge_label = re.escape("judge@0.0 (T=0.7)")  # as the user wrote it, the threshold beside it
    judged = summary_row(judge_label, out)
    assert target["vs_target"] == 1.00 and target["per_cycle"] == 1.00  # one token per pass of the target alone
    assert exact["per_cycle"] > 1.0 and judged["per_cycle"] > exact["per_cycle"]  # the judge keeps mismatches
    for row in (exact, judged):
        assert row["problems"] == 2
        assert row["vs_target"] == pytest.approx(row["per_second"] / target["per_second"], abs=0.01)
    assert mode_line("exact", out)["mismatches"] == 0 and mode_line(judge_label, out)["mismatches"] > 0
    assert " ".join(ON_A_SMALL_CPU.split()) in " ".join(out.split())  # wrapped, word for word


@pytest.mark.integration
def test_demo_answers_side_by_side_and_summarises():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "autojudge", "demo", "--n", "1", "--max-new-tokens", str(MAX_NEW)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    problem = GSM8K().load("eval")[0]
    assert f"=== gsm8k #{problem.id}" in out and f"gold {problem.reference}" in out
    # The default judge mode as written, its threshold beside it.
    judge_label = re.escape(defaults.JUDGE_MODE) + r" \(T=[\d.e-]+\)"
    exact, judged = mode_line("exact", out), mode_line(judge_label, out)
    assert 0 < exact["tokens"] <= MAX_NEW and 0 < judged["tokens"] <= MAX_NEW
    assert exact["mismatches"] == 0  # lossless: exact decoding accepts no mismatch
    # The summary: target alone, exact and judge, each speed against the target alone from the same process.
    assert summary_row("target", out)["vs_target"] == 1.00
    for label in ("exact", judge_label):
        row = summary_row(label, out)
        assert row["problems"] == 1 and row["vs_target"] > 0
    assert "2-core CPU" in out and "docs/speed.md" in out
