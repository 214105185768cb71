"""Speculative decoding: the loop (engine) and the acceptance policies it calls."""

from autojudge.decoding.engine import DecodeStats, Generation, generate
from autojudge.decoding.policies import AcceptancePolicy, Exact, TopK, Window

__all__ = ["AcceptancePolicy", "DecodeStats", "Exact", "Generation", "TopK", "Window", "generate"]
