"""The server under test: a real `autojudge serve` process on loopback with tiny
random-weight models on torch, an openai client for it, and the library decoding the
same prompts in this process to compare with."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx2 as httpx  # the HTTP client the openai package itself uses

from autojudge.decoding.modes import DecodingOptions, decode
from autojudge.prompting import chat_prompt_ids

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


def _alone(pair, prompt: str, max_tokens: int, mode: str = "exact") -> str:
    ids = chat_prompt_ids(pair.tokenizer, [{"role": "user", "content": prompt}])
    out = decode(pair, ids, mode, DecodingOptions(window=4, max_new_tokens=max_tokens, draft_p_min=0.0))
    return pair.tokenizer.decode(out.token_ids, skip_special_tokens=True)


def _chat(client, prompt: str, max_tokens: int = 24, **extra):
    return client.chat.completions.create(model=client.models.list().data[0].id, max_tokens=max_tokens,
                                          messages=[{"role": "user", "content": prompt}], extra_body=extra or None)
