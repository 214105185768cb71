"""Route multi-row float32 linear layers through oneDNN on CPU.

On the AVX2 CPUs we measured, torch's default (MKL) linear is 2-3x slower than
oneDNN for 2-64 rows at a time, which is exactly the shape of a verification pass
(docs/speed.md). For one row both are memory-bound and within ~10% of each other.
Weights are kept once, in oneDNN's blocked layout only: keeping the plain copy too
would double the memory of both models for that 10%.
"""

from __future__ import annotations

import torch
from torch import nn


class OneDNNLinear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        # Buffers, not parameters: nothing here is trained, and a blocked oneDNN
        # tensor is not a state_dict entry anyone should save.
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, onednn"


def available() -> bool:
    return torch.backends.mkldnn.is_available()


def use_onednn_linear(model: nn.Module) -> int:
    """Replace every float32 CPU nn.Linear in `model` in place; return how many."""
    if not available():
        return 0
    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if (type(child) is nn.Linear and child.weight.dtype == torch.float32
                    and child.weight.device.type == "cpu"):
                setattr(parent, child_name, OneDNNLinear(child))
                replaced += 1
    return replaced
