"""Which of the target's layers tells an important mismatch best?

The judge reads the target's final-norm hidden state after the draft token. Linear
probes often read a property better from a middle layer than from the last one, so
this recomputes, on the torch runtime, the target's hidden state after each mined
mismatch's draft token at several layers, and cross-validates (5 folds by problem,
logistic regression, best C) the judge on each layer, on pairs of layers, and on the
mined run's own llama.cpp features of the same labels.

One prefill of the prompt and the response up to its last mismatch, then one
single-token pass per mismatch from the cache cut back to its position (latest first).
Recomputed states are kept per problem under --cache, so a killed run resumes.

    taskset -c 1 python scripts/layer_probe.py --data data/mined/gsm8k/shard-1-of-2 \
        --limit 100 --cache /tmp/layer-probe --out docs/bench/layer-probe-gsm8k.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from script_report import publish
from tqdm import tqdm

from autojudge.judge.report import auc_difference_interval
from autojudge.judge.train import C_GRID, best_c, cross_validate_columns, load_mined, problem_folds
from autojudge.mining.rule_features import response_ids
from autojudge.models.loading import resolve
from autojudge.prompting import chat_prompt_ids
from autojudge.runfiles import read_records
from autojudge.tasks import get_task


@torch.inference_mode()
def states_after_draft_tokens(model, prompt: list[int], response: list[int], mismatches: list[dict],
                              layers: list[int]) -> np.ndarray:
    """[mismatches, layers, hidden]: the residual stream after each layer (the last one
    after the final norm, as the judge reads it) at each mismatch's draft token."""
    last = max(m["position"] for m in mismatches)
    prefix = torch.tensor([prompt + response[:last]])
    cache = model(prefix, use_cache=True).past_key_values
    out = np.empty((len(mismatches), len(layers), model.config.hidden_size), dtype=np.float16)
    for k in sorted(range(len(mismatches)), key=lambda k: -mismatches[k]["position"]):
        surplus = cache.get_seq_length() - (len(prompt) + mismatches[k]["position"])
        if surplus:
            cache.crop(-surplus)  # this transformers' crop takes the number of tokens to drop
        hidden = model(torch.tensor([[mismatches[k]["draft_token"]]]), past_key_values=cache, use_cache=True,
                       output_hidden_states=True).hidden_states
        out[k] = torch.stack([hidden[layer][0, -1] for layer in layers]).numpy().astype(np.float16)
    return out


def best_scores(x: np.ndarray, y: np.ndarray, folds, c_grid=C_GRID) -> tuple[float, np.ndarray]:
    """Cross-validated ROC-AUC at the best C of the grid, and those out-of-fold scores."""
    results = cross_validate_columns(x, y, folds, c_grid)
    return results[best_c(results)]


def write_run(source: Path, out: Path, cache_dir: Path, records: list[dict], column: int, layer: int,
              meta: dict) -> None:
    """A mining run like `source`, its target features replaced by the recomputed states of
    one layer: labels, draft and logit features as mined. Its meta says where the target
    features came from; a judge trained on it reads that layer on any runtime (llama.cpp's
    agrees with transformers' to a cosine of 0.9998)."""
    (out / "features").mkdir(parents=True, exist_ok=True)
    meta = {**meta, "target_backend": {**meta["target_backend"], "feature_layer": layer},
            "features": {**meta["features"], "position": f"after reading the draft token, output of layer {layer}",
                         "target_recomputed": "transformers, float32 (scripts/layer_probe.py)"}}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    with open(out / "problems.jsonl", "w") as lines:
        for record in records:
            states = cache_dir / f"{record['problem_id']}.safetensors"
            if not states.exists():
                continue
            tensors = load_file(str(source / "features" / f"{record['problem_id']}.safetensors"))
            tensors["target"] = load_file(str(states))["states"][:, column].astype(np.float16)
            save_file(tensors, str(out / "features" / f"{record['problem_id']}.safetensors"))
            lines.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a mining run (its problems, labels and features)")
    parser.add_argument("--limit", type=int, help="only the run's first N problems with labels")
    parser.add_argument("--layers", default="7,14,18,21,24,28",
                        help="layers to read (the last is after the final norm)")
    parser.add_argument("--cache", required=True, help="directory for the recomputed states (resumable)")
    parser.add_argument("--out", help="write the report here too (markdown)")
    parser.add_argument("--write-run", metavar="DIR",
                        help="also write a copy of the mining run whose target features are --write-layer's, "
                             "for `autojudge train` (the problems whose states were recomputed)")
    parser.add_argument("--write-layer", type=int, default=18, help="the layer --write-run keeps (default: 18)")
    parser.add_argument("--write-only", action="store_true",
                        help="with --write-run: write the copy and skip the layers' cross-validation")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = load_mined(args.data)
    task = get_task(data.meta["task"])
    problems = {p.id: p for p in task.load(data.meta["split"])}
    path = resolve(data.meta["target"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    layers = [int(x) for x in args.layers.split(",")]
    cache_dir = Path(args.cache)
    cache_dir.mkdir(parents=True, exist_ok=True)

    records = [r for r in read_records(Path(args.data) / "problems.jsonl", repair=False) if r["mismatches"]]
    records = records[:args.limit] if args.limit else records
    skipped, seconds = [], []
    for record in tqdm(records, desc="problems", unit="problem"):
        file = cache_dir / f"{record['problem_id']}.safetensors"
        if file.exists():
            continue
        ids = response_ids(tokenizer, record)
        if ids is None:
            skipped.append(record["problem_id"])
            continue
        prompt = chat_prompt_ids(tokenizer, task.messages(problems[record["problem_id"]]))
        start = time.perf_counter()
        states = states_after_draft_tokens(model, prompt, ids, record["mismatches"], layers)
        seconds.append(time.perf_counter() - start)
        # Renamed into place whole, so that a kill mid-write leaves no file a rerun would trust.
        save_file({"states": states, "layers": np.array(layers)}, str(file.with_suffix(".tmp")))
        os.replace(file.with_suffix(".tmp"), file)

    if args.write_run:
        write_run(Path(args.data), Path(args.write_run), cache_dir, records, layers.index(args.write_layer),
                  args.write_layer, data.meta)
        print(f"Written: {args.write_run}, the target's features from layer {args.write_layer}.")
        if args.write_only:
            return 0

    # The labels of the problems whose states were recomputed, in the run's order.
    have = {int(f.stem) for f in cache_dir.glob("*.safetensors")} & {r["problem_id"] for r in records}
    subset = data.select(np.isin(data.problem, sorted(have)))
    states = np.concatenate([load_file(str(cache_dir / f"{p}.safetensors"))["states"]
                             for p in dict.fromkeys(subset.problem.tolist())]).astype(np.float32)
    y, folds = subset.important, problem_folds(subset)

    def scored(x: np.ndarray) -> tuple[float, np.ndarray]:
        return best_scores(x, y, folds)

    by_layer = [scored(states[:, i]) for i in range(len(layers))]
    best = int(np.argmax([auc for auc, _ in by_layer[:-1]]))
    rows = [("mined (llama.cpp), final norm", scored(subset.features("target"))[0]),
            ("mined (llama.cpp), final norm and logit features", scored(subset.features("target+logits"))[0])]
    rows += [(f"torch, layer {layer}" + (" (final norm)" if i == len(layers) - 1 else ""), by_layer[i][0])
             for i, layer in enumerate(layers)]
    rows += [(f"torch, layer {layers[best]} and the final norm",
              scored(np.hstack([states[:, best], states[:, -1]]))[0]),
             (f"torch, layer {layers[best]} and the mined logit features",
              scored(np.hstack([states[:, best], subset.logits]))[0])]
    low, high = auc_difference_interval((subset.problem, y, by_layer[best][1]), (subset.problem, y, by_layer[-1][1]))
    lines = [f"{len(have)} problems, {len(y)} labels, {y.mean():.1%} important "
             f"({len(skipped)} skipped: {'a problem whose' if len(skipped) == 1 else 'problems whose'} text "
             "tokenizes to other tokens)", "",
             "| the judge's target features | ROC-AUC (cross-validated) |", "|---|---|"]
    lines += [f"| {name} | {auc:.3f} |" for name, auc in rows]
    lines += ["", f"Layer {layers[best]} against the final norm, same labels and folds: "
              f"{by_layer[best][0] - by_layer[-1][0]:+.3f} (95% bootstrap over problems {low:+.3f} to {high:+.3f})."]
    if seconds:
        lines += ["", f"{np.mean(seconds):.1f} s per problem on one thread ({len(seconds)} recomputed in this call)"]
    if args.write_run:
        lines += ["", f"Written: {args.write_run}, the target's features from layer {args.write_layer}."]
    return publish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
