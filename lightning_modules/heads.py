"""The classification head, computed in float32 under AMP.

bf16 keeps 8 bits of mantissa: logits of an ambiguous pair often tie, and a tie goes to the lower class index,
which systematically favours one class of the pair. The head (and so the loss and every per-class count) runs in
float32; the backbone stays in the run's precision.
"""

from __future__ import annotations

import torch
from torch import nn


class Float32Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) whose output is float32 under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float())


def float32_head(linear: nn.Linear) -> Float32Linear:
    """The same layer, with the same parameter tensors, as a ``Float32Linear`` (no new random draws)."""
    head = Float32Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
    head.weight, head.bias = linear.weight, linear.bias
    return head
