"""Models: the default pair's offline fetch, loading any pair, and the backend interface."""

from autojudge.models.backend import CausalLM, StepOutput
from autojudge.models.loading import ModelPair, load_pair

__all__ = ["CausalLM", "StepOutput", "ModelPair", "load_pair"]
