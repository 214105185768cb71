"""Time one decoding step of the torch backend against transformers' own `generate`.

    python scripts/bench_torch_step.py --target DIR [--device cuda] [--dtype bfloat16]
        [--random] [--tokens 128]

Target-only greedy decoding after a 300-token prompt, in one run: the transformers
`generate` loop, our engine asking transformers for hidden states
(`output_hidden_states`), our engine calling the decoder and the LM head apart (the
CPU default where it is exact), and, on a GPU, our engine on a static cache replaying
each step from a CUDA graph (the GPU default). `--random` builds random weights from
DIR's config.json alone, for timing on a machine the real weights cannot reach (the
cost of a pass does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from autojudge.decoding import generate
from autojudge.models.hf import HFCausalLM
from autojudge.models.static import StaticCacheLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="model directory (config.json at least)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--random", action="store_true", help="random weights from the config")
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    if args.random:
        torch.manual_seed(0)
        with torch.device(args.device):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.target), dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.target, dtype=dtype).to(args.device)
    model.eval()
    prompt = list(range(100, 400))
    ids = torch.tensor([prompt], device=args.device)

    def transformers_generate():
        model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0,
                       max_new_tokens=args.tokens, min_new_tokens=args.tokens)

    def ours(split: bool):
        lm = HFCausalLM(model, "target")
        if split and not lm.split:
            return None  # this model keeps the general path
        lm.split = split
        return lambda: generate(lm, prompt, max_new_tokens=args.tokens)

    def graphed():
        if not args.device.startswith("cuda"):
            return None
        lm = StaticCacheLM(model, "target")
        return lambda: generate(lm, prompt, max_new_tokens=args.tokens)

    runs = {"transformers generate": transformers_generate,
            "ours, output_hidden_states": ours(False),
            "ours, decoder and LM head apart": ours(True),
            "ours, static cache, CUDA graphs": graphed()}
    print(f"| {args.target} on {args.device}, {args.dtype} | tok/s | ms/token |\n|---|---|---|")
    for label, run in runs.items():
        if run is None:
            print(f"| {label} | - | - |")
            continue
        run()  # warm-up: kernels and allocator
        synchronize(args.device)
        start = time.perf_counter()
        run()
        synchronize(args.device)
        seconds = time.perf_counter() - start
        print(f"| {label} | {args.tokens / seconds:.1f} | {seconds / args.tokens * 1e3:.1f} |")


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
