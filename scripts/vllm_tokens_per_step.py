"""Tokens per verification step inside vLLM, strict against the autojudge plugin.

Runs the float32 default pair through vLLM's offline LLM (run it in .venv-vllm), one
engine per mode over the same GSM8K eval problems, greedy, and prints one JSON line
per mode from vLLM's own speculative-decoding counters. Modes: "strict" (vLLM alone), a
judge file (`--judge PATH@THRESHOLD`, repeatable), and with `--random-judge` a judge of
random weights on the target's final-norm states at threshold 0.5 (a check of the
mechanism, not of accuracy) and one that accepts every draft token (the ceiling):

    taskset -c 1 env OMP_NUM_THREADS=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 \
        .venv-vllm/bin/python scripts/vllm_tokens_per_step.py --problems 10 --max-new-tokens 128 --random-judge
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import torch

from autojudge.judge.model import Judge
from autojudge.models.loading import load_tokenizer
from autojudge.models.registry import DRAFT, TARGET
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks.gsm8k import GSM8K
from autojudge.vllm_plugin.models import vllm_model_dir


def synthetic_judge(path: Path, hidden: dict, bias: float, weight_scale: float) -> str:
    """A judge file for the default pair reading the target's final norm: P(important) =
    sigmoid(w . x + bias) with w random of scale `weight_scale` (0: constant)."""
    n = hidden["target"]
    weight = torch.randn(n, generator=torch.Generator().manual_seed(2)) * weight_scale / n ** 0.5
    backend = {"backend": "transformers"}
    meta = {"pair": {"draft": DRAFT.name, "target": TARGET.name, "draft_backend": backend, "target_backend": backend},
            "features": "target", "hidden": hidden, "thresholds": [{"threshold": 0.5, "recall": 0.0}]}
    Judge(torch.zeros(n), torch.ones(n), weight, bias, meta).save(path)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--window", type=int, default=4, help="num_speculative_tokens")
    parser.add_argument("--judge", action="append", default=[], help="PATH@THRESHOLD, repeatable")
    parser.add_argument("--random-judge", action="store_true")
    args = parser.parse_args(argv)

    from vllm import LLM, SamplingParams

    target_dir, draft_dir = vllm_model_dir(TARGET.name), vllm_model_dir(DRAFT.name)
    hidden = {key: json.loads((d / "config.json").read_text())["hidden_size"]
              for key, d in (("draft", draft_dir), ("target", target_dir))}
    tokenizer = load_tokenizer(TARGET.name)
    task = GSM8K()
    prompts = [{"prompt_token_ids": chat_prompt_ids(tokenizer, task.messages(p))}
               for p in task.load("eval")[:args.problems]]
    modes: dict[str, dict | None] = {"strict": None}
    for spec in args.judge:
        path, _, threshold = spec.rpartition("@")
        modes[f"judge:{threshold} {Path(path).name}"] = {"judge": path, "threshold": float(threshold)}
    scratch = Path(tempfile.mkdtemp())
    if args.random_judge:
        modes["random-judge:0.5"] = {"judge": synthetic_judge(scratch / "random.safetensors", hidden, 0.0, 4.0),
                                     "threshold": 0.5}
        modes["accept-all"] = {"judge": synthetic_judge(scratch / "all.safetensors", hidden, -20.0, 0.0),
                               "threshold": 0.5}
    params = SamplingParams(max_tokens=args.max_new_tokens, temperature=0, ignore_eos=True)
    for name, settings in modes.items():
        extra = {"additional_config": {"autojudge": settings}} if settings else {}
        llm = LLM(model=str(target_dir), dtype="float32", max_model_len=2048, seed=0, enforce_eager=True,
                  gpu_memory_utilization=0.5, kv_cache_memory_bytes=512 << 20, disable_log_stats=False,
                  speculative_config={"model": str(draft_dir), "method": "draft_model",
                                      "num_speculative_tokens": args.window}, **extra)
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - start
        counts = {m.name.removeprefix("vllm:spec_decode_"): m.values if hasattr(m, "values") else m.value
                  for m in llm.get_metrics() if m.name.startswith("vllm:spec_decode")}
        tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
        print(json.dumps({"mode": name, "problems": len(prompts), "window": args.window,
                          "tokens_per_step": round(1 + counts["num_accepted_tokens"] / counts["num_drafts"], 3),
                          "accepted_fraction": round(counts["num_accepted_tokens"] / counts["num_draft_tokens"], 3),
                          "accepted_per_position": counts["num_accepted_tokens_per_pos"],
                          "tokens": tokens, "seconds": round(seconds, 1),
                          "tokens_per_second": round(tokens / seconds, 2)}), flush=True)
        del llm
        gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
