"""`autojudge serve`: a real server process on loopback, driven by the real openai client.

The server runs tiny random-weight models on torch, so its answers can be checked
against the library decoding the same prompt in this process. Torch holds one sequence
per model: one slot. Slots given back on failure or disconnect are tested on a server in
this process whose decoding is replaced; requests decoding together on llama.cpp, on
the real default pair (integration).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx2 as httpx  # the HTTP client the openai package itself uses
import openai
import pytest

from autojudge.decoding.engine import DecodeStats, Generation
from autojudge.decoding.modes import DecodingOptions, decode
from autojudge.prompting import chat_prompt_ids
from tests.toy_task import tiny_pair

PROMPTS = ["the cat sat on the mat", "count 3 4 5", "Hello 12", "x y z w", "qq rr ss", "Mm nn 0", "abc def",
           "one two three"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(home, target, draft, *extra):
    return _launch(["--target", str(target), "--draft", str(draft), "--backend", "torch", "--linear", "default",
                    "--window", "4", "--draft-p-min", "0", *extra], {"AUTOJUDGE_HOME": str(home)})


def _launch(args: list[str], env: dict):
    port = _free_port()
    env = {**os.environ, **env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "autojudge", "serve", "--port", str(port), *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
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
    out = decode(pair, ids, mode, DecodingOptions(window=4, max_new_tokens=max_tokens, draft_p_min=0.0))
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
    out = decode(pair, ids, mode, DecodingOptions(window=window, max_new_tokens=24, draft_p_min=0.0))
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
    expected = pair.tokenizer.decode(decode(pair, ids, "exact", DecodingOptions(window=4, max_new_tokens=16)).token_ids,
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
# character per 20 ms for up to two minutes, until its stop_when says stop.
def _scripted_decode(pair, prompt_ids, mode, options, *, stop_when, **rest):
    prompt = pair.tokenizer.decode(prompt_ids)
    if "boom" in prompt:
        raise RuntimeError("the pass failed")
    if "slow" not in prompt:
        return decode(pair, prompt_ids, mode, options, stop_when=stop_when, **rest)
    letter, tokens = pair.tokenizer("z")["input_ids"][-1], []
    deadline = time.time() + 120
    while not stop_when(tokens) and time.time() < deadline:
        tokens.append(letter)
        time.sleep(0.02)
    return Generation(tokens, "settled", DecodeStats(new_tokens=len(tokens), cycles=len(tokens)))


@contextmanager
def _in_process(pair, monkeypatch, **options):
    import uvicorn

    import autojudge.serve.decode_loop
    from autojudge.serve.app import ServerOptions, build_app
    monkeypatch.setattr(autojudge.serve.decode_loop, "decode", _scripted_decode)
    app = build_app(pair, ServerOptions(decoding=DecodingOptions(window=4, max_new_tokens=512), **options))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app.state.slots
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _body(pair, prompt: str, **extra) -> dict:
    return {"model": pair.target.name, "max_tokens": 8, "messages": [{"role": "user", "content": prompt}], **extra}


def _until(condition, seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_failing_request_gets_a_500_and_frees_its_slot(pair, monkeypatch):
    with _in_process(pair, monkeypatch) as (base, slots):
        assert slots.size == 1
        failed = httpx.post(base + "/v1/chat/completions", json=_body(pair, "boom"), timeout=30)
        assert failed.status_code == 500 and "the pass failed" in failed.json()["error"]["message"]
        streamed = httpx.post(base + "/v1/chat/completions", json=_body(pair, "boom", stream=True), timeout=30)
        assert streamed.status_code == 200 and "the pass failed" in streamed.text and "[DONE]" not in streamed.text
        # The one slot came back both times: the next request decodes as the library does.
        reply = httpx.post(base + "/v1/chat/completions", json=_body(pair, PROMPTS[0]), timeout=30)
        assert reply.json()["choices"][0]["message"]["content"] == _alone(pair, PROMPTS[0], 8)
        assert (slots.running, slots.waiting) == (0, 0)
        metrics = httpx.get(base + "/metrics", timeout=10).text
        assert 'autojudge_requests_total{outcome="error"} 2.0' in metrics


def test_a_client_that_disconnects_frees_its_slot_at_once(pair, monkeypatch):
    with _in_process(pair, monkeypatch) as (base, slots):
        url, slow = base + "/v1/chat/completions", _body(pair, "slow", stream=True, max_tokens=6000)
        with httpx.stream("POST", url, json=slow, timeout=30) as first:
            assert first.status_code == 200 and _until(lambda: slots.running == 1)
            lines = first.iter_lines()  # kept: a closed iterator would hang up
            assert next(line for line in lines if line).startswith("data: ")
            with httpx.stream("POST", url, json=slow, timeout=30):  # waits for the one slot...
                assert _until(lambda: slots.waiting == 1)
            assert _until(lambda: slots.waiting == 0)  # ...and leaves the line when it hangs up
            assert slots.running == 1
        # The first hung up while decoding a two-minute answer: its decoding ends at the
        # next cycle and gives the slot back, and the next request runs at once.
        assert _until(lambda: slots.running == 0)
        started = time.time()
        reply = httpx.post(url, json=_body(pair, PROMPTS[1]), timeout=30)
        assert reply.json()["choices"][0]["message"]["content"] == _alone(pair, PROMPTS[1], 8)
        assert time.time() - started < 10


@pytest.mark.integration
def test_requests_in_flight_share_passes_on_llamacpp():
    """Eight requests on four slots of the real default pair: every one completes, their
    passes were merged, and each answer is the one the prompt gets alone."""
    pytest.importorskip("llama_cpp")
    # Prompts whose continuations have no near-tie in their first tokens (unlike, say,
    # "Water boils at": " 100 degrees Celsius. If" or "(2", by the shape of the pass).
    prompts = ["The capital of France is", "def add(a, b):", "1, 2, 3, 4,", "Once upon a time",
               "The opposite of hot is", "Monday, Tuesday, Wednesday,", "January, February, March,",
               "10, 20, 30, 40,"]
    process, base = _launch(["--backend", "llamacpp", "--slots", "4", "--window", "4"], {})
    try:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        model = client.models.list().data[0].id

        def complete(prompt: str) -> str:
            reply = client.completions.create(model=model, prompt=prompt, max_tokens=8)
            assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens > 0
            return reply.choices[0].text

        with ThreadPoolExecutor(len(prompts)) as pool:
            together = list(pool.map(complete, prompts))
        metrics = httpx.get(base + "/metrics", timeout=10).text
        counts = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                  if line.startswith(("autojudge_model_passes_total", "autojudge_sequence_passes_total"))}
        # Seen: about 2 (the four threads' passes meet at the gate, grouped by model: the
        # draft's and the target's run as two passes).
        assert counts["autojudge_sequence_passes_total"] / counts["autojudge_model_passes_total"] > 1.3, counts
        assert "autojudge_slots 4.0" in metrics and "autojudge_running_requests 0.0" in metrics
        alone = [complete(p) for p in prompts]  # one at a time: nothing to merge with
    finally:
        process.terminate()
        process.wait(timeout=60)
    # Merged passes have other shapes, and llama.cpp's kernels round by shape: a near-tie
    # may flip (see test_llamacpp.py). Seen: 8 of 8 the same in ten bursts, and the same as
    # the library decodes them alone; a bug in merging or in slots would garble them all.
    assert sum(a == b for a, b in zip(together, alone)) >= 6, list(zip(together, alone))
