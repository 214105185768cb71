"""The torch backend on a CUDA GPU gives what it gives on the CPU: exact decoding equals
the target's greedy output, the judge and Top-K policies, mining labels and stored
features. Skipped on machines without CUDA; run `pytest tests/test_gpu.py` on one."""

from __future__ import annotations

import json

import pytest
import torch

from autojudge.decoding import Exact, TopK, generate
from autojudge.decoding.policies import JudgePolicy
from autojudge.judge.model import Judge
from autojudge.mining.algorithm import mine_problem
from autojudge.mining.options import MiningOptions
from autojudge.mining.run import mine
from autojudge.models.loading import load_pair
from autojudge.models.runtime import RuntimeOptions
from autojudge.prompting import chat_prompt_ids
from tests.test_engine import hf_greedy, random_prompt
from tests.tiny import backend, noisy_copy, tiny_model
from tests.toy_task import ToyTask

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
MAX_NEW = 40


def random_judge(hidden_d: int, hidden_t: int, seed: int = 0) -> Judge:
    """Random weights: P(important) varies from token to token, so the threshold bites."""
    generator = torch.Generator().manual_seed(seed)
    n = hidden_d + hidden_t
    meta = {"features": "both", "hidden": {"draft": hidden_d, "target": hidden_t}, "thresholds": []}
    return Judge(torch.zeros(n), torch.ones(n), torch.randn(n, generator=generator) / n ** 0.5, 0.0, meta)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("window", [1, 4, 16])
def test_exact_on_the_gpu_equals_transformers_greedy_there(seed, window):
    target_model = tiny_model(seed)
    draft_model = noisy_copy(target_model, seed + 100, scale=0.3 if seed % 2 else 1.0).to("cuda")
    target_model.to("cuda")
    prompt = random_prompt(seed)
    model_input = torch.tensor([prompt], device="cuda")
    expected = target_model.generate(model_input, do_sample=False, max_new_tokens=MAX_NEW, pad_token_id=0,
                                     attention_mask=torch.ones_like(model_input))[0, len(prompt):].tolist()
    result = generate(backend(target_model, "t"), prompt, draft=backend(draft_model, "d"),
                      window=window, max_new_tokens=MAX_NEW)
    assert result.token_ids == expected
    assert result.stats.accepted_mismatches == 0


@pytest.mark.parametrize("seed", range(3))
def test_every_policy_decodes_the_same_on_gpu_and_cpu(seed):
    target_model = tiny_model(seed)
    draft_model = noisy_copy(target_model, seed + 50, scale=1.0)
    prompt = random_prompt(seed)
    judge = random_judge(64, 64, seed)
    policies = {"exact": Exact(), "topk:2": TopK(2), "judge": JudgePolicy(judge, 0.5)}
    runs = {}
    for device in ("cpu", "cuda"):
        target, draft = backend(target_model.to(device), "t"), backend(draft_model.to(device), "d")
        for name, policy in policies.items():
            out = generate(target, prompt, draft=draft, policy=policy, window=8, max_new_tokens=MAX_NEW)
            runs[device, name] = (out.token_ids, out.stats.accepted_mismatches)
            target.reset(), draft.reset()
    for name in policies:
        assert runs["cuda", name] == runs["cpu", name], name
    assert runs["cpu", "judge"][1] > 0  # the judge did accept mismatches
    assert runs["cpu", "exact"] == (hf_greedy(target_model.cpu(), prompt, MAX_NEW), 0)


def test_bfloat16_exact_decoding_equals_bfloat16_greedy(tiny_target_dir, tiny_draft_dir):
    pair = load_pair(str(tiny_draft_dir), str(tiny_target_dir),
                     RuntimeOptions(backend="torch", device="cuda", dtype=torch.bfloat16))
    assert pair.target.describe()["dtype"] == "bfloat16"
    assert pair.target.describe()["device"] == "cuda"
    for seed in range(4):
        prompt = random_prompt(seed)
        greedy = generate(pair.target, prompt, max_new_tokens=MAX_NEW).token_ids
        exact = generate(pair.target, prompt, draft=pair.draft, window=8, max_new_tokens=MAX_NEW)
        assert exact.token_ids == greedy
        assert exact.stats.mean_accepted > 1  # the draft was used


def test_mining_on_the_gpu_gives_the_cpu_labels_and_stores_cpu_features(tiny_target_dir, tiny_draft_dir, tmp_path):
    task = ToyTask()
    problems = task.load("all")[:3]
    labels = {}
    for device in ("cpu", "cuda"):
        pair = load_pair(str(tiny_draft_dir), str(tiny_target_dir),
                         RuntimeOptions(backend="torch", linear="default", device=device, dtype=torch.float32))
        labels[device] = []
        for problem in problems:
            ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
            mined = mine_problem(pair, task, problem, ids, MiningOptions(max_new_tokens=MAX_NEW))
            labels[device].append([(m.position, m.draft_token, m.important) for m in mined.mismatches])
    assert labels["cuda"] == labels["cpu"]
    assert any(labels["cpu"])
    # A whole run on the GPU writes features the CPU can read (the judge trains there).
    mine(pair, task, "all", tmp_path / "run", MiningOptions(max_new_tokens=MAX_NEW), limit=2)
    records = [json.loads(line) for line in (tmp_path / "run" / "problems.jsonl").read_text().splitlines()]
    assert len(records) == 2
    from safetensors.torch import load_file
    for record in records:
        if record["mismatches"]:
            features = load_file(str(tmp_path / "run" / "features" / f"{record['problem_id']}.safetensors"))
            assert features["target"].device.type == "cpu"
            assert len(features["target"]) == len(record["mismatches"])


def test_generate_command_on_the_gpu(tiny_target_dir, tiny_draft_dir, tmp_path):
    from tests.test_cli import run_cli
    runs = {}
    for device, flags in (("cpu", ()), ("cuda", ()), ("cuda eager", ("--no-cuda-graphs",))):
        result = run_cli(tmp_path, "generate", "--prompt", "the cat sat", "--draft", tiny_draft_dir,
                         "--target", tiny_target_dir, "--mode", "exact", "--window", 4,
                         "--max-new-tokens", 12, "--json", "--linear", "default",
                         "--device", device.split()[0], "--dtype", "float32", *flags)
        assert result.returncode == 0, result.stderr
        runs[device] = json.loads(result.stdout)
    assert runs["cuda"]["token_ids"] == runs["cuda eager"]["token_ids"] == runs["cpu"]["token_ids"]
    assert runs["cuda"]["target_backend"]["device"] == "cuda"
    assert runs["cuda"]["target_backend"]["cuda_graphs"] is True
    assert "cuda_graphs" not in runs["cuda eager"]["target_backend"]


@pytest.mark.parametrize("window", [1, 4, 16, 64])
def test_exact_with_cuda_graphs_equals_transformers_greedy(window):
    from autojudge.models.static import StaticCacheLM
    target_model = tiny_model(0).to("cuda")
    draft_model = noisy_copy(target_model, 10, scale=0.05).to("cuda")
    prompt = random_prompt(0)
    model_input = torch.tensor([prompt], device="cuda")
    expected = target_model.generate(model_input, do_sample=False, max_new_tokens=200, pad_token_id=0,
                                     attention_mask=torch.ones_like(model_input))[0, len(prompt):].tolist()
    # A small first cache: it grows twice, and the graphs are captured again after each.
    target, draft = StaticCacheLM(target_model, "t", capacity=64), StaticCacheLM(draft_model, "d", capacity=64)
    assert target.cuda_graphs and target.describe()["cuda_graphs"]
    result = generate(target, prompt, draft=draft, window=window, max_new_tokens=200)
    assert result.token_ids == expected
    assert target.capacity == 256
    assert generate(target, prompt, max_new_tokens=200).token_ids == expected
    if window > 1:
        assert result.stats.mean_accepted > 1.5


def test_a_graph_replay_gives_the_eager_pass_bit_for_bit():
    from autojudge.models.static import StaticCacheLM
    model = tiny_model(3).to("cuda")
    replayed, eager = StaticCacheLM(model, "g"), StaticCacheLM(model, "e", cuda_graphs=False)
    prompt = random_prompt(3, length=40)
    for lm in (replayed, eager):
        lm.forward(prompt[:12], n_logits=1)
    steps = [(12, 17, None), (17, 18, 1), (18, 30, None), (30, 31, 1)]
    for rollback in (False, True):
        for start, stop, n_logits in steps:
            outs = [lm.forward(prompt[start:stop], n_logits) for lm in (replayed, eager)]
            assert torch.equal(outs[0].logits, outs[1].logits)
            assert torch.equal(outs[0].hidden, outs[1].hidden)
        for lm in (replayed, eager):
            lm.truncate(12)  # the second round replays the same graphs over a rolled-back cache
    assert set(replayed._graphs) == {(12, 1), (5, 5), (1, 1), (12, 12)}  # (tokens in, logits out)


def test_the_gpu_loader_uses_cuda_graphs_unless_told_not_to(tiny_target_dir, tiny_draft_dir):
    for cuda_graphs in (True, False):
        pair = load_pair(str(tiny_draft_dir), str(tiny_target_dir),
                         RuntimeOptions(backend="torch", device="cuda", cuda_graphs=cuda_graphs))
        assert pair.target.describe().get("cuda_graphs", False) is cuda_graphs
        assert pair.draft.describe().get("cuda_graphs", False) is cuda_graphs


def test_a_model_that_cannot_be_captured_steps_eagerly():
    from autojudge.models.static import StaticCacheLM
    model = tiny_model(2).to("cuda")

    def sync_with_the_host(module, args, output):  # as models with data-dependent control flow do
        output[0].sum().item()

    model.model.layers[0].register_forward_hook(sync_with_the_host)
    prompt = random_prompt(2)
    expected = hf_greedy(tiny_model(2), prompt, MAX_NEW)
    lm = StaticCacheLM(model, "t")
    with pytest.warns(UserWarning, match="t: cannot capture a CUDA graph, stepping eagerly"):
        result = generate(lm, prompt, max_new_tokens=MAX_NEW)
    assert not lm.cuda_graphs and not lm.describe()["cuda_graphs"]
    assert result.token_ids == expected
