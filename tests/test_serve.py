"""`autojudge serve`: a real server process on loopback, driven by the real openai client.

The server runs tiny random-weight models on torch, so its answers can be checked
against the library decoding the same prompt in this process. Torch holds one sequence
per model: one slot. Slots given back on failure or disconnect are tested on a server in
this process whose decoding is replaced; requests decoding together on llama.cpp, on
the real default pair (integration).
"""

from __future__ import annotations

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
from tests.serving import PROMPTS, _alone, _chat, _free_port, _launch
from tests.toy_task import tiny_pair


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


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
