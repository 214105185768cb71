"""The runtimes a model can run on, and the options that say how a pair runs.

`RUNTIMES` is the one list of runtimes: the CLI's --backend choices, the "auto" rule
and the loaders all come from it. Nothing here imports torch or llama.cpp when the
module is imported: the CLI grammar reads this list, and `autojudge --help` starts
without either.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from autojudge.errors import ModelLoadError
from autojudge.models.registry import REGISTERED

if TYPE_CHECKING:
    import torch

    from autojudge.models.backend import CausalLM

AUTO = "auto"  # not a runtime: the rule `auto_backend` applies to the models named


def _float32():
    import torch  # here, not at the top: see the module's docstring
    return torch.float32


@dataclass(frozen=True)
class RuntimeOptions:
    """How a pair's models run. Frozen and made of plain values, so that it can be
    compared, hashed and pickled to Ray workers (autojudge.workers)."""

    backend: str = AUTO
    """The runtime of both models: a name in RUNTIMES, or "auto" (see `auto_backend`)."""

    draft_backend: str | None = None
    """Another runtime for the draft alone (a mixed pair, e.g. a llama.cpp draft proposing
    for a torch target); None: the draft runs on `backend` too."""

    device: str = "cpu"
    """The torch device of the models, e.g. "cuda" or "cuda:1"; llama.cpp runs on the CPU."""

    dtype: torch.dtype = field(default_factory=_float32)
    """The number format of torch weights; llama.cpp runs the GGUF's own."""

    linear: str = "onednn"
    """torch CPU float32 linear kernels: "onednn" (faster verification) or "default"."""

    cuda_graphs: bool = True
    """On a GPU, replay each torch step from a CUDA graph (autojudge.models.static) where
    the model allows it; False: run each step eagerly."""

    uniform_passes: bool = False
    """llama.cpp, the target only: read a lone new token in a two-token pass, the cached
    token before it read again, so that every logit comes from many-token kernels. Its
    one-token kernels round differently (the default target's logits land about 0.3
    apart), so the target alone and exact speculative decoding, whose verification
    passes hold many tokens, part ways at near-ties. With Q4_0 weights this makes them
    agree (logits within about 1e-5); K-quant weights (Q4_K_M) differ between many-token
    pass sizes too, which this cannot mend. Torch needs none of it: it is exact already."""

    feature_layer: int | None = None
    """The target's layer whose output is the judge's hidden-state feature (1 to its number
    of layers minus 1; see backend.CausalLM.read_features_from); None: the last layer
    after the final norm. A judge brings its own (judge.shipped.load_judge)."""

    def resolved(self, *names: str | None) -> RuntimeOptions:
        """These options, with "auto" replaced by the runtime it picks for the named models."""
        if self.backend != AUTO:
            return self
        return replace(self, backend=auto_backend(*names, device=self.device))

    def for_draft(self) -> RuntimeOptions:
        """The options the draft loads with: on `draft_backend` where one is named, and
        without uniform passes, since the draft's rounding decides only what it proposes, and
        with its final-norm features."""
        return replace(self, backend=self.draft_backend or self.backend, uniform_passes=False, feature_layer=None)


@dataclass(frozen=True)
class Runtime:
    """One runtime models can run on: its names, its loader, the devices it uses."""
    name: str  # what --backend takes
    label: str  # what messages call it
    # "module:function" taking (model name, RuntimeOptions): imported when a model loads,
    # not with this list (see the module's docstring).
    loader: str
    cpu_only: bool  # False: any device torch can use
    # Whether "auto" picks this runtime for these models (on a device it runs on); None:
    # never, it is the fallback.
    auto_picks: Callable[[list[str]], bool] | None = None

    def runs_on(self, device: str) -> bool:
        return not self.cpu_only or device == "cpu"

    def load(self, name: str, options: RuntimeOptions) -> CausalLM:
        module, _, function = self.loader.partition(":")
        return getattr(importlib.import_module(module), function)(name, options)


def _llamacpp_can_run(names: list[str]) -> bool:
    """llama.cpp is installed and every model has a GGUF: a registered one, or a .gguf file.
    Where it can, it is the faster runtime on a CPU (3.75x per target token here,
    docs/speed.md)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return all(name in REGISTERED or name.endswith(".gguf") for name in names)


# Any Hugging Face model, any torch device, exact numerics: what "auto" falls back to.
FALLBACK = "torch"

RUNTIMES = {runtime.name: runtime for runtime in (
    Runtime(FALLBACK, "torch", "autojudge.models.loading:load_torch", cpu_only=False),
    Runtime("llamacpp", "llama.cpp", "autojudge.models.loading:load_llamacpp", cpu_only=True,
            auto_picks=_llamacpp_can_run),
)}

BACKEND_CHOICES = (AUTO, *RUNTIMES)


def auto_backend(*names: str | None, device: str = "cpu") -> str:
    """What "auto" means for these models on `device`: the first runtime whose rule picks
    it there (llama.cpp on a CPU for GGUF-backed models), else torch."""
    named = [name for name in names if name is not None]
    for runtime in RUNTIMES.values():
        if runtime.auto_picks is not None and runtime.runs_on(device) and runtime.auto_picks(named):
            return runtime.name
    return FALLBACK


def get_runtime(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise ModelLoadError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    return RUNTIMES[name]


def check_runs_on(device: str, *backends: str | None) -> None:
    """Refuse, before anything is read, a runtime that cannot use `device`. None, "auto"
    and unknown names pass: "auto" picks one that can, the loader refuses the unknown."""
    for backend in backends:
        runtime = RUNTIMES.get(backend)
        if runtime is not None and not runtime.runs_on(device):
            raise ModelLoadError(f"the {runtime.label} backend runs on the CPU; use --backend {FALLBACK} "
                                 f"for --device {device}")
