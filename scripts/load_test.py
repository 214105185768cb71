"""Load test on loopback: autojudge serve (exact, judge) against llama-cpp-python's own server.

    python scripts/load_test.py --clients 1,4,16 --requests 16 --max-tokens 128 --out docs/bench/serve-load.md

Starts each server in turn on a free loopback port (the same default target GGUF;
autojudge with its draft and, for judge, the shipped GSM8K judge; llama-cpp-python's
server with the target alone, what a CPU user would otherwise run), sends GSM8K eval
prompts from `clients` concurrent clients until `requests` have been answered (bounded
by --seconds per setting too), and reports completion tokens per second and p50/p95
latency, side by side, from one run on one machine. Every server runs with the same
thread count. It stops by itself and stops every server it started.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx

from autojudge.models.convert import gguf_path
from autojudge.models.registry import DEFAULT_TARGET, REGISTERED
from autojudge.tasks.gsm8k import GSM8K


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    # A file, not a pipe: a server logging every request would fill a pipe nobody reads and stall.
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log, text=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited: {log.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"no server on port {port} after 10 minutes")


def load(port: int, model: str, clients: int, requests: int, seconds: float, max_tokens: int,
         extra: dict) -> dict:
    prompts = [p.prompt for p in GSM8K().load("eval")]
    latencies, tokens = [], 0
    started = time.perf_counter()
    sent = iter(range(requests))

    def client(_: int) -> list[tuple[float, int]]:
        done = []
        for i in sent:  # the shared iterator bounds the requests, whichever client sends them
            if time.perf_counter() - started > seconds:
                break
            body = {"model": model, "max_tokens": max_tokens, "temperature": 0,
                    "messages": [{"role": "user", "content": prompts[i % len(prompts)]}], **extra}
            t = time.perf_counter()
            response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=3600)
            response.raise_for_status()
            done.append((time.perf_counter() - t, response.json()["usage"]["completion_tokens"]))
        return done

    with ThreadPoolExecutor(clients) as pool:
        for done in pool.map(client, range(clients)):
            latencies += [latency for latency, _ in done]
            tokens += sum(n for _, n in done)
    wall = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "tokens_per_second": tokens / wall,
            "p50": statistics.median(latencies) if latencies else None,
            "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=16, help="per setting and client count")
    parser.add_argument("--seconds", type=float, default=600, help="per setting and client count, at most")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--judge-mode", default="judge@0.9")
    parser.add_argument("--out", help="write the table (Markdown) here")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    target = str(gguf_path(REGISTERED[DEFAULT_TARGET]))
    autojudge = [sys.executable, "-m", "autojudge", "serve", "--window", "16", "--task", "gsm8k"]
    settings = [
        ("autojudge, exact", autojudge + ["--mode", "exact"], DEFAULT_TARGET, {}),
        (f"autojudge, {args.judge_mode}", autojudge + ["--mode", args.judge_mode], DEFAULT_TARGET, {}),
        ("llama-cpp-python server, target alone",
         [sys.executable, "-m", "llama_cpp.server", "--model", target, "--model_alias", "target",
          "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads), "--n_ctx", "4096",
          "--host", "127.0.0.1"], "target", {}),
    ]
    rows = []
    for name, command, model, extra in settings:
        port = free_port()
        process = start(command + ["--port", str(port)], port, args.threads)
        try:
            for n in clients:
                row = {"server": name, "clients": n, **load(port, model, n, args.requests, args.seconds,
                                                            args.max_tokens, extra)}
                rows.append(row)
                print(row, flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)
    lines = [f"{args.requests} GSM8K eval prompts per row (or {args.seconds:.0f} s), <= {args.max_tokens} new tokens, "
             f"greedy, {args.threads} thread(s), loopback, one run", "",
             "| server | clients | requests | completion tokens/s | p50 latency (s) | p95 latency (s) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['server']} | {r['clients']} | {r['requests']} | {r['tokens_per_second']:.2f} | "
              f"{r['p50'] or 0:.1f} | {r['p95'] or 0:.1f} |" for r in rows]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
