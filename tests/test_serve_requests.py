"""`autojudge serve` checks what it serves: bad requests get a 400 naming the field, as
the OpenAI API does, and settings no request could use stop the server before it loads
a model; a real server process, driven by the real openai client."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx  # the HTTP client the openai package itself uses
import openai
import pytest

from tests.serving import PROMPTS, _chat, _start
from tests.toy_task import tiny_pair


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


@pytest.mark.parametrize("body, status, words", [
    ({"messages": []}, 400, "messages"),
    ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "does not exist"),
    ({"messages": [{"role": "user", "content": "hi"}], "mode": "nope"}, 400, "unknown mode"),
    ({"messages": [{"role": "user", "content": "hi"}], "mode": "judge@0.9"}, 400, "needs a judge"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.7, "mode": "topk:4"}, 400, "sampling"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.7, "top_p": 0}, 400, "top_p"),
    ({"messages": [{"role": "user", "content": "word " * 400}]}, 400, "context"),
    ({"messages": [{"role": "user", "content": " "}]}, 400, "empty"),
])
def test_bad_requests_get_a_json_error_and_the_server_goes_on(server, client, body, status, words):
    body = {"model": client.models.list().data[0].id, **body}
    response = httpx.post(server + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == status
    assert words in response.json()["error"]["message"]
    assert _chat(client, PROMPTS[2], max_tokens=4).choices[0].message.content is not None


def test_broken_json_and_metrics(server, client):
    response = httpx.post(server + "/v1/chat/completions", content=b'{"model": ', timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    _chat(client, PROMPTS[3], max_tokens=8)
    metrics = httpx.get(server + "/metrics", timeout=10).text
    assert 'autojudge_requests_total{outcome="ok"}' in metrics
    assert "autojudge_accepted_tokens_per_cycle_bucket" in metrics
    assert "autojudge_time_to_first_token_seconds_count" in metrics
    assert "autojudge_slots 1.0" in metrics  # torch: one sequence per model
    assert "autojudge_running_requests 0.0" in metrics and "autojudge_waiting_requests 0.0" in metrics


def test_a_full_server_refuses_at_once_instead_of_hanging(tmp_path, tiny_target_dir, tiny_draft_dir):
    process, base = _start(tmp_path, tiny_target_dir, tiny_draft_dir, "--max-waiting", "1")
    try:
        model = httpx.get(base + "/v1/models", timeout=10).json()["data"][0]["id"]
        body = {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": "go on"}]}
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: httpx.post(base + "/v1/chat/completions", json=body,
                                                          timeout=120).status_code, range(6)))
        assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}
        assert httpx.get(base + "/health", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_server_without_its_extra_says_how_to_install_it():
    code = ("import sys, builtins; real = builtins.__import__\n"
            "def fake(name, *a, **k):\n"
            "    if name == 'uvicorn': raise ImportError('no uvicorn', name='uvicorn')\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = fake\n"
            "from autojudge.cli import main; sys.exit(main(['serve']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == "autojudge: error: the server needs its extra: pip install 'autojudge[serve]' " \
                            "(uvicorn is missing)\n"


@pytest.mark.parametrize("field, value", [("temperature", -1), ("temperature", 2.5), ("top_p", 0), ("top_p", 1.5),
                                          ("seed", -1), ("logprobs", True), ("top_logprobs", 2)])
def test_the_openai_fields_are_checked_as_openai_does(client, field, value):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=client.models.list().data[0].id, max_tokens=4,
                                       messages=[{"role": "user", "content": PROMPTS[0]}], **{field: value})
    assert refused.value.status_code == 400 and refused.value.param == field
    assert field in refused.value.message


def test_the_edges_of_the_openai_ranges_are_served(client):
    reply = client.chat.completions.create(model=client.models.list().data[0].id, max_tokens=4, temperature=2,
                                           top_p=1, seed=0, logprobs=False,
                                           messages=[{"role": "user", "content": PROMPTS[0]}])
    assert reply.usage.completion_tokens > 0 and reply.choices[0].logprobs is None


def test_completion_logprobs_are_refused_not_ignored(client, pair):
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=pair.target.name, prompt="the cat sat", max_tokens=4, logprobs=0)
    assert refused.value.param == "logprobs" and "log-probabilities" in refused.value.message


@pytest.mark.parametrize("field, value, words", [("window", 100, "window 100: 1 to 64"),
                                                 ("draft_p_min", 2.0, "draft_p_min 2.0: a probability")])
def test_a_requests_decoding_numbers_are_checked_as_the_servers_are(client, field, value, words):
    with pytest.raises(openai.BadRequestError) as refused:
        _chat(client, PROMPTS[0], max_tokens=4, **{field: value})
    assert refused.value.param == field and words in refused.value.message


def test_a_default_no_request_could_use_stops_the_server_before_it_loads_a_model(tmp_path):
    env = {**os.environ, "AUTOJUDGE_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # No model at this path: the server would fail on it only if it got as far as loading.
    result = subprocess.run([sys.executable, "-m", "autojudge", "serve", "--target", str(tmp_path / "no-model"),
                             "--backend", "torch", "--window", "100"],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr == "autojudge: error: --window 100: 1 to 64 draft tokens per cycle\n"


def test_more_slots_than_torch_holds_are_refused_at_start_up(tmp_path, tiny_target_dir, tiny_draft_dir):
    env = {**os.environ, "AUTOJUDGE_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "autojudge", "serve", "--target", str(tiny_target_dir),
                             "--draft", str(tiny_draft_dir), "--backend", "torch", "--slots", "2"],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("autojudge: error: --slots 2: the torch runtime holds one sequence")
    assert "--backend llamacpp" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# A server in this process whose decoding is replaced: "boom" fails, "slow" streams a
