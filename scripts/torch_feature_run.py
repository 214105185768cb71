"""A mining run whose target features are the torch runtime's, from one whose target
states were already recomputed on torch: a judge trained on it fits the float32 pair
(autojudge's torch runtime, and vLLM's float32 path through autojudge's plugin).

scripts/layer_probe.py --write-run recomputes the target's states at a layer on torch
(transformers, float32) for every mined label, but keeps the mined run's meta, which
names llama.cpp as the target's runtime: a judge trained there would be refused by the
torch runtime and by the plugin. This writes a sibling run that says what its target
features are: the same files (relative symbolic links: labels, features, rule features
unchanged), and a meta whose target runtime is torch float32 at that layer. The labels,
the draft's states and the logit features stay as mined on llama.cpp's Q4_K_M pair,
and the meta keeps saying so (draft_backend, labels_mined_on): train it with
`--features target`, the one feature set whose numbers are all torch's.

    .venv/bin/python scripts/torch_feature_run.py --source data/mined/gsm8k-layer18/shard-1-of-2 \
        --out data/mined/gsm8k-torch-layer18/shard-1-of-2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# What scripts/layer_probe.py writes in a run's meta when its target states are torch's.
RECOMPUTED = "transformers, float32"
LINKED = ("problems.jsonl", "features", "rules")


def torch_meta(meta: dict, source: Path) -> dict:
    """`meta` with the target's runtime the torch one the states were computed on."""
    recomputed = meta.get("features", {}).get("target_recomputed", "")
    layer = meta.get("target_backend", {}).get("feature_layer")
    if not recomputed.startswith(RECOMPUTED) or layer is None:
        raise SystemExit(f"{source}: its target states were not recomputed on torch at a layer "
                         "(run scripts/layer_probe.py --write-run first)")
    # layer_probe runs plain transformers (torch's default float32 kernels), which the
    # torch runtime's oneDNN linears and vLLM's float32 path match to rounding.
    target = {"backend": "transformers", "dtype": "float32", "device": "cpu", "linear": "default",
              "feature_layer": layer}
    return {**meta, "target_backend": target, "labels_mined_on": meta["target_backend"]}


def write(source: Path, out: Path) -> None:
    meta_path = source / "meta.json"
    if not meta_path.is_file():
        raise SystemExit(f"{source}: not a mining run (no meta.json)")
    meta = torch_meta(json.loads(meta_path.read_text()), source)
    out.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if not (source / name).exists():
            continue
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        # Relative, so that the pair of runs moves with the repository.
        link.symlink_to(os.path.relpath(source.resolve() / name, out.resolve()))
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="a run written by scripts/layer_probe.py --write-run")
    parser.add_argument("--out", required=True, help="the run to write (its files link to the source's)")
    args = parser.parse_args(argv)
    write(Path(args.source), Path(args.out))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
