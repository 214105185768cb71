"""`autojudge serve`: a real server process on loopback, driven by the real openai client.

The server runs tiny random-weight models on torch, so its answers can be checked
against the library decoding the same prompt in this process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx  # the HTTP client the openai package itself uses
import openai
import pytest

from autojudge.decoding.modes import decode
from autojudge.prompting import chat_prompt_ids
from tests.toy_task import tiny_pair

PROMPTS = ["the cat sat on the mat", "count 3 4 5", "Hello 12", "x y z w", "qq rr ss", "Mm nn 0", "abc def",
           "one two three"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(home, target, draft, *extra):
    port = _free_port()
    env = {**os.environ, "AUTOJUDGE_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "autojudge", "serve", "--target", str(target), "--draft",
                                str(draft), "--backend", "torch", "--linear", "default", "--port", str(port),
                                "--window", "4", *extra], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.stderr.read()}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_target_dir, tiny_draft_dir):
    process, base = _start(tmp_path_factory.mktemp("home"), tiny_target_dir, tiny_draft_dir)
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


def _alone(pair, prompt: str, max_tokens: int, mode: str = "exact") -> str:
    ids = chat_prompt_ids(pair.tokenizer, [{"role": "user", "content": prompt}])
    out = decode(pair, ids, mode, window=4, max_new_tokens=max_tokens)
    return pair.tokenizer.decode(out.token_ids, skip_special_tokens=True)


def _chat(client, prompt: str, max_tokens: int = 24, **extra):
    return client.chat.completions.create(model=client.models.list().data[0].id, max_tokens=max_tokens,
                                          messages=[{"role": "user", "content": prompt}], extra_body=extra or None)


def test_a_chat_completion_answers_as_the_library_does(client, pair):
    [model] = client.models.list().data
    assert model.id == pair.target.name
    reply = _chat(client, PROMPTS[0])
    assert reply.choices[0].message.content == _alone(pair, PROMPTS[0], 24)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens > 0
    speculative = reply.usage.model_extra["speculative"]
    assert speculative["mode"] == "exact" and speculative["cycles"] > 0
    topk = _chat(client, PROMPTS[0], mode="topk:8", window=6)
    assert topk.usage.model_extra["speculative"]["mode"] == "topk:8"
    assert topk.choices[0].message.content == _alone_window(pair, PROMPTS[0], "topk:8", 6)


def _alone_window(pair, prompt, mode, window):
    ids = chat_prompt_ids(pair.tokenizer, [{"role": "user", "content": prompt}])
    out = decode(pair, ids, mode, window=window, max_new_tokens=24)
    return pair.tokenizer.decode(out.token_ids, skip_special_tokens=True)


def test_a_streamed_answer_joins_to_the_plain_one(client):
    plain = _chat(client, PROMPTS[1], max_tokens=32).choices[0].message.content
    stream = client.chat.completions.create(model=client.models.list().data[0].id, max_tokens=32, stream=True,
                                            messages=[{"role": "user", "content": PROMPTS[1]}])
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == plain
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_concurrent_requests_each_answer_as_alone(client, pair):
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        replies = list(pool.map(lambda p: _chat(client, p, max_tokens=20).choices[0].message.content, PROMPTS))
    assert replies == [_alone(pair, p, 20) for p in PROMPTS]


def test_sampling_with_a_seed_repeats_and_differs_from_greedy(client):
    replies = [_chat(client, PROMPTS[4], max_tokens=24, **{"temperature": 1.5, "seed": 11}).choices[0].message.content
               for _ in range(2)]
    other = _chat(client, PROMPTS[4], max_tokens=24, **{"temperature": 1.5, "seed": 12}).choices[0].message.content
    greedy = _chat(client, PROMPTS[4], max_tokens=24).choices[0].message.content
    assert replies[0] == replies[1] and len({replies[0], other, greedy}) > 1


def test_completions_and_stop_strings(client, pair, server):
    reply = client.completions.create(model=pair.target.name, prompt="the cat sat", max_tokens=16)
    ids = list(pair.tokenizer("the cat sat")["input_ids"])
    expected = pair.tokenizer.decode(decode(pair, ids, "exact", window=4, max_new_tokens=16).token_ids,
                                     skip_special_tokens=True)
    assert reply.choices[0].text == expected
    stop = expected[3:5]
    cut = client.completions.create(model=pair.target.name, prompt="the cat sat", max_tokens=16, stop=[stop])
    assert cut.choices[0].text == expected[: expected.find(stop)] and cut.choices[0].finish_reason == "stop"


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
    assert "pip install 'autojudge[serve]'" in result.stderr and json is not None
