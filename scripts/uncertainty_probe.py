"""Does the target's uncertainty along the response so far tell the judge more?

Labels are largely a property of the problem (docs/bench/auc-ceiling-gsm8k.md: scoring
each label by its problem's important share gives 0.809). A decoder knows, at a
mismatch, how uncertain the target has been on every earlier token of the response: it
computed those logits in its verification passes. This probe recomputes them on torch
(float32, one pass over the prompt and the response up to the last mismatch per
problem, cached per problem, resumable) and adds six numbers per mismatch to the
judge's target features (layer-18 states from `layer_probe.py`'s cache) and logit
features: the target's mean and largest entropy over the earlier tokens, the share of
them whose top two log-probabilities lie within 0.5 and within 1.0, their count of
near-ties (log1p), and the position (log1p). Cross-validated by problem, same folds,
with a bootstrap interval by problem; on the problems whose uncertainty is cached.

    python scripts/uncertainty_probe.py --data data/mined/gsm8k/shard-* --cache /tmp/uncertainty \\
        --states /tmp/layer-probe --out docs/bench/uncertainty-probe-gsm8k.md
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from layer_probe import best_scores  # noqa: E402
from script_report import publish  # noqa: E402

from autojudge.judge.report import auc_difference_interval  # noqa: E402
from autojudge.judge.train import load_mined, problem_folds  # noqa: E402
from autojudge.mining.rule_features import response_ids  # noqa: E402
from autojudge.models.loading import resolve  # noqa: E402
from autojudge.prompting import chat_prompt_ids  # noqa: E402
from autojudge.runfiles import read_records  # noqa: E402
from autojudge.tasks import get_task  # noqa: E402

C_VALUES = (1e-4, 3e-4, 1e-3, 1e-2, 1.0)
NAMES = ["mean entropy so far", "share within 0.5", "share within 1.0", "largest entropy so far",
         "log1p(position)", "log1p(near-ties so far)"]


@torch.inference_mode()
def uncertainty_along(model, prompt: list[int], response: list[int], last: int) -> np.ndarray:
    """[2, last + 1]: the target's entropy and top-two margin at response positions 0..last."""
    logits = model(torch.tensor([prompt + response[:last]])).logits[0, len(prompt) - 1:].float()
    logp = torch.log_softmax(logits, -1)
    top2 = logp.topk(2, -1).values
    return np.stack([-(logp.exp() * logp).sum(-1).numpy(), (top2[:, 0] - top2[:, 1]).numpy()])


def so_far(uncertainty: np.ndarray, position: int) -> list[float]:
    """The six numbers at a mismatch at `position`, from the tokens before it."""
    if position == 0:
        return [0.0] * len(NAMES)
    entropy, margin = uncertainty[0, :position], uncertainty[1, :position]
    return [entropy.mean(), (margin < 0.5).mean(), (margin < 1.0).mean(), entropy.max(), np.log1p(position),
            np.log1p((margin < 0.5).sum())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="mining runs (final-norm ones, as layer_probe reads)")
    parser.add_argument("--cache", required=True, help="folder of per-problem uncertainty (resumable)")
    parser.add_argument("--states", required=True, help="layer_probe.py's cache of recomputed states")
    parser.add_argument("--layer", type=int, default=18, help="the layer of --states the judge reads (default: 18)")
    parser.add_argument("--score-only", action="store_true", help="compute nothing new: score the cached problems")
    parser.add_argument("--out", help="write the report here too (markdown)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_mined(args.data)
    task = get_task(data.meta["task"])
    problems = {p.id: p for p in task.load(data.meta["split"])}
    records = [r for run in args.data for r in read_records(Path(run) / "problems.jsonl", repair=False)
               if r["mismatches"]]
    cache, states_dir = Path(args.cache), Path(args.states)
    cache.mkdir(parents=True, exist_ok=True)
    if not args.score_only:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        path = resolve(data.meta["target"])
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        for record in tqdm(records, desc="problems", unit="problem"):
            file = cache / f"{record['problem_id']}.npy"
            ids = None if file.exists() else response_ids(tokenizer, record)
            if ids is None:
                continue
            prompt = chat_prompt_ids(tokenizer, task.messages(problems[record["problem_id"]]))
            found = uncertainty_along(model, prompt, ids, max(m["position"] for m in record["mismatches"]))
            np.save(file.with_suffix(".tmp.npy"), found)  # renamed into place whole: a kill leaves no torn file
            os.replace(file.with_suffix(".tmp.npy"), file)

    have = ({int(f.name.split(".")[0]) for f in cache.glob("*.npy") if ".tmp" not in f.name}
            & {int(f.stem) for f in states_dir.glob("*.safetensors")})
    subset = data.select(np.isin(data.problem, sorted(have)))
    extra, states = [], []
    for record in records:
        if record["problem_id"] in have:
            uncertainty = np.load(cache / f"{record['problem_id']}.npy")
            extra += [so_far(uncertainty, m["position"]) for m in record["mismatches"]]
            cached = load_file(str(states_dir / f"{record['problem_id']}.safetensors"))
            states.append(cached["states"][:, list(cached["layers"]).index(args.layer)])
    extra, states = np.array(extra, dtype=np.float32), np.concatenate(states).astype(np.float32)
    y, folds = subset.important, problem_folds(subset)

    def scored(x: np.ndarray) -> tuple[float, np.ndarray]:
        return best_scores(x, y, folds, C_VALUES)

    base = scored(np.hstack([states, subset.logits]))
    more = scored(np.hstack([states, subset.logits, extra]))
    alone = scored(extra)
    low, high = auc_difference_interval((subset.problem, y, more[1]), (subset.problem, y, base[1]))
    lines = [f"{len(have)} problems, {len(y)} labels, {y.mean():.1%} important; ROC-AUC, 5-fold cross-validation "
             "by problem, same folds", "", "| the judge's features | ROC-AUC |", "|---|---|",
             f"| target layer {args.layer} and logit features | {base[0]:.3f} |",
             f"| the same and the uncertainty so far ({', '.join(NAMES)}) | {more[0]:.3f} |",
             f"| the uncertainty so far alone | {alone[0]:.3f} |", "",
             f"With the uncertainty against without: {more[0] - base[0]:+.3f} (95% bootstrap by problem "
             f"{low:+.3f} to {high:+.3f})."]
    return publish(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
