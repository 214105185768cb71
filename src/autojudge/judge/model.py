"""A trained judge and its file: one safetensors file, no pickle.

Tensors: `mean`, `scale` (StandardScaler), `weight`, `bias` (LogisticRegression).
The safetensors header carries JSON metadata: format version, the model pair and
runtimes it was trained on, the feature layout, validation AUC and threshold table.
Loading checks all of it, so a judge is never silently applied to features it was not
trained on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from autojudge.decoding.features import LOGIT_FEATURES, RULE_FEATURES, TARGET_LOGIT_FEATURES
from autojudge.errors import AutojudgeError
from autojudge.models.backend import feature_layer_name
from autojudge.models.registry import same_weights

FORMAT = "autojudge-judge"
VERSION = 1
# A feature set names the groups a judge reads, in this order. "draft" and "target" are
# the models' final-norm hidden states after reading the draft token; "logits" the
# six numbers of autojudge.decoding.features. "both" is the old name of "hidden".
FEATURE_SETS = {
    "draft": ("draft",), "target": ("target",), "hidden": ("draft", "target"), "both": ("draft", "target"),
    "logits": ("logits",), "target+logits": ("target", "logits"), "all": ("draft", "target", "logits"),
    # With the training-free rules' features (FLy's top-3 entropy and lookahead; autojudge rule-features).
    "logits+rules": ("logits", "rules"), "target+logits+rules": ("target", "logits", "rules"),
    # The target's alone ("target-logits": its four columns of "logits"): a judge for any
    # drafter, a lookup included, which has no hidden states or logits of its own.
    "target+target-logits": ("target", "target-logits"),
}


def feature_width(features: str, hidden: dict) -> int:
    """Columns of a feature set, given the two models' hidden sizes."""
    widths = {"logits": len(LOGIT_FEATURES), "target-logits": len(TARGET_LOGIT_FEATURES),
              "rules": len(RULE_FEATURES), **hidden}
    return sum(widths[group] for group in FEATURE_SETS[features])


class JudgeError(AutojudgeError):
    """A judge file is unreadable, or was trained for other models or features."""


@dataclass
class Judge:
    mean: torch.Tensor  # [n_features]
    scale: torch.Tensor
    weight: torch.Tensor
    bias: float
    meta: dict  # pair, features (a FEATURE_SETS name), hidden sizes, thresholds...
    _copies: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # per device

    @property
    def features(self) -> str:
        return self.meta["features"]

    @property
    def groups(self) -> tuple[str, ...]:
        """The feature groups read, in order: of "draft", "target", "logits", "target-logits", "rules"."""
        return FEATURE_SETS[self.features]

    @property
    def runtimes_read(self) -> tuple[str, ...]:
        """The runtimes whose numbers the judge reads, of "draft_backend" and
        "target_backend": hidden states come from one model each, logit and rule features
        from both. A judge of the target's states alone does not depend on how the draft
        was run (its labels were mined with some draft; its features never see it)."""
        groups = set(self.groups)
        reads_draft = bool(groups & {"draft", "logits", "rules"})
        reads_target = bool(groups & {"target", "logits", "target-logits", "rules"})
        return tuple(key for key, read in (("draft_backend", reads_draft), ("target_backend", reads_target)) if read)

    def featurize(self, parts: dict[str, torch.Tensor | None]) -> torch.Tensor:
        """The feature rows from {group: [n, width] tensor}, on the device of the last
        group (a mixed pair's draft may be on the CPU while its target is on a GPU)."""
        chosen = [parts[group] for group in self.groups]
        device = chosen[-1].device
        return torch.cat([p.to(device, torch.float32) for p in chosen], dim=-1)

    def prob_important(self, parts: dict[str, torch.Tensor | None]) -> torch.Tensor:
        x = self.featurize(parts)
        mean, scale, weight = self._parameters_on(x.device)
        return torch.sigmoid((x - mean) / scale @ weight + self.bias)

    def _parameters_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mean, scale, weight on `device`, copied there once (decoding calls this per cycle)."""
        if self.mean.device == device:
            return self.mean, self.scale, self.weight
        if device not in self._copies:
            self._copies[device] = tuple(t.to(device) for t in (self.mean, self.scale, self.weight))
        return self._copies[device]

    def fingerprint(self) -> str:
        """SHA-256 of the parameters and metadata: names this exact judge in results."""
        digest = hashlib.sha256(json.dumps(self.meta, sort_keys=True).encode())
        for tensor in (self.mean, self.scale, self.weight, torch.tensor([self.bias])):
            digest.update(tensor.float().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def threshold_for_recall(self, recall: float) -> float:
        """The largest threshold whose validation recall of important mismatches is >= recall."""
        rows = [r for r in self.meta["thresholds"] if r["recall"] >= recall]
        if not rows:
            raise JudgeError(f"no threshold reaches recall {recall}; the table tops out at "
                             f"{max(r['recall'] for r in self.meta['thresholds']):.3f}")
        return max(r["threshold"] for r in rows)

    def save(self, path: str | Path) -> None:
        tensors = {"mean": self.mean, "scale": self.scale, "weight": self.weight,
                   "bias": torch.tensor([self.bias], dtype=torch.float32)}
        meta = {"format": FORMAT, "version": VERSION, **self.meta}
        tmp = Path(str(path) + ".tmp")
        save_file({k: v.float().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"autojudge": json.dumps(meta)})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Judge":
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = _judge_meta(path, handle.metadata() or {})
                tensors = {k: handle.get_tensor(k) for k in ("mean", "scale", "weight", "bias")}
        except FileNotFoundError:
            raise JudgeError(f"{path}: no such judge file") from None
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise JudgeError(f"{path}: not a readable judge file ({exc})") from None
        expected = feature_width(meta["features"], meta["hidden"])
        if not (all(tensors[k].shape == (expected,) for k in ("mean", "scale", "weight"))
                and tensors["bias"].shape == (1,)):
            raise JudgeError(f"{path}: tensor sizes do not match its feature layout")
        return cls(tensors["mean"], tensors["scale"], tensors["weight"], float(tensors["bias"][0]), meta)

    @property
    def feature_layer(self) -> int | None:
        """The target layer it reads (None: the last, after the final norm)."""
        return self.meta["pair"].get("target_backend", {}).get("feature_layer")

    def check_reads(self, target) -> None:
        """Refuse a target that now reads another layer (say, since another judge was loaded on it)."""
        layer = getattr(target, "feature_layer", None)
        if layer != self.feature_layer:
            raise JudgeError(f"this judge reads the target's {feature_layer_name(self.feature_layer)}, but the target "
                             f"now gives its {feature_layer_name(layer)}; load the judge again (load_judge) before "
                             "decoding with it")

    def check_compatible(self, pair_description: dict, draft_hidden: int, target_hidden: int) -> None:
        """Refuse to judge features from another model pair, runtime or hidden size (a
        runtime only where the judge reads its numbers: runtimes_read)."""
        trained = self.meta["pair"]
        problems = []
        for key in ("draft", "target"):
            # A requantized copy of the model trained on (registry.same_weights) fits too.
            if same_weights(str(trained.get(key))) != same_weights(str(pair_description.get(key))):
                problems.append(f"{key} {pair_description.get(key)} (judge trained on {trained.get(key)})")
        sizes = {"draft": draft_hidden, "target": target_hidden}
        for key, size in sizes.items():
            if self.meta["hidden"][key] != size:
                problems.append(f"{key} hidden size {size} (judge expects {self.meta['hidden'][key]})")
        for key in self.runtimes_read:
            if trained.get(key, {}).get("backend") != pair_description.get(key, {}).get("backend"):
                problems.append(f"{key} {pair_description.get(key)} (judge trained on {trained.get(key)})")
        layers = [d.get("target_backend", {}).get("feature_layer") for d in (pair_description, trained)]
        if layers[0] != layers[1]:
            problems.append(f"the target's features from its {feature_layer_name(layers[0])} "
                            f"(judge trained on its {feature_layer_name(layers[1])})")
        if problems:
            raise JudgeError("this judge does not fit the loaded pair: " + "; ".join(problems))


def _judge_meta(path, header: dict) -> dict:
    try:
        meta = json.loads(header["autojudge"])
    except (KeyError, json.JSONDecodeError):
        raise JudgeError(f"{path}: a safetensors file without judge metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = meta if isinstance(meta, dict) else {}
        raise JudgeError(f"{path}: format {found.get('format')} v{found.get('version')}, "
                         f"this autojudge reads {FORMAT} v{VERSION}")
    # What loading, check_compatible and threshold_for_recall rely on.
    try:
        valid = (meta["features"] in FEATURE_SETS
                 and all(isinstance(meta["hidden"][k], int) and isinstance(meta["pair"][k], str)
                         for k in ("draft", "target"))
                 and all(isinstance(r["recall"], (int, float)) and isinstance(r["threshold"], (int, float))
                         for r in meta["thresholds"]) and len(meta["thresholds"]) > 0)
    except (KeyError, TypeError):
        valid = False
    if not valid:
        raise JudgeError(f"{path}: judge metadata without a valid feature layout, pair, hidden sizes "
                         "or threshold table")
    return meta
