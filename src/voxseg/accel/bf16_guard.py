"""CPU bfloat16 convolutions whose input is smaller than their kernel run in float32 instead.

PyTorch 2.13's CPU bfloat16 Conv3d weight gradient reads memory it never wrote when a spatial side
of the input is smaller than the kernel: a 2³ feature map under a 3³ kernel, which is SegResNet's
deepest level at 16³ patches. With freed memory full of NaN, 47 of 50 such weight gradients were
NaN (float32, and sides of 3 or more, were always finite); in training, SegResNet at 16³ turned NaN
within 1-3 steps. Those layers are the smallest of the network, so float32 there costs nothing
measurable. This is a correctness guard, not a fast path: it applies whatever `--no-fast-kernels` says.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallInputSafeConv3d(nn.Conv3d):
    """A Conv3d that leaves autocast for inputs smaller than its kernel; same parameters and keys."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        smaller = any(side < k for side, k in zip(input.shape[2:], self.kernel_size, strict=True))
        if smaller and input.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                as_float = None if bias is None else bias.float()
                return super()._conv_forward(input.float(), weight.float(), as_float)
        return super()._conv_forward(input, weight, bias)


def guard_small_bf16_convolutions(model: nn.Module) -> int:
    """Switch `model`'s plain Conv3d layers to SmallInputSafeConv3d in place; return how many."""
    switched = 0
    for module in model.modules():
        if type(module) is nn.Conv3d:
            module.__class__ = SmallInputSafeConv3d
            switched += 1
    return switched
