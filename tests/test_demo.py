"""The README's main job, `autojudge demo`, run as a subprocess on the real default pair."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from autojudge.tasks.gsm8k import GSM8K

pytestmark = pytest.mark.integration

MAX_NEW = 48


def mode_line(mode: str, out: str) -> dict:
    """The per-problem line of one mode: its token count, tokens/cycle and accepted mismatches."""
    found = re.search(rf"^--- {mode}\s+answer .*?; (\d+) tokens, ([\d.]+) accepted tokens/cycle, "
                      r"[\d.]+ tok/s, (\d+) mismatches accepted", out, re.MULTILINE)
    assert found, out
    return {"tokens": int(found[1]), "per_cycle": float(found[2]), "mismatches": int(found[3])}


def test_demo_answers_side_by_side_and_summarises():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "autojudge", "demo", "--n", "1", "--max-new-tokens", str(MAX_NEW)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    problem = GSM8K().load("eval")[0]
    assert f"=== GSM8K #{problem.id}" in out and f"gold {problem.reference}" in out
    exact, judged = mode_line("exact", out), mode_line(r"judge:\S+", out)
    assert 0 < exact["tokens"] <= MAX_NEW and 0 < judged["tokens"] <= MAX_NEW
    assert exact["mismatches"] == 0  # lossless: exact decoding accepts no mismatch
    # The summary: each mode's accuracy, then judge against exact, from the same runs.
    assert re.search(r"^  exact\s+accuracy [01]/1", out, re.MULTILINE)
    assert re.search(r"^  judge:\S+\s+accuracy [01]/1", out, re.MULTILINE)
    ratio = re.search(r"judge vs exact: ([\d.]+)x accepted tokens per cycle, [\d.]+x tokens/s", out)
    assert ratio, out
    assert float(ratio[1]) == pytest.approx(judged["per_cycle"] / exact["per_cycle"], abs=0.02)
