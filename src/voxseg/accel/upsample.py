"""Trilinear 2× upsampling on the CPU as three separable passes, forward and backward.

PyTorch's CPU `upsample_trilinear3d` computes each output voxel from its 8 neighbours, and its
backward pass scatters back the same way. Doubling a side with `align_corners=False` is a fixed
two-tap filter along each axis instead (out[2i] = ¾·x[i] + ¼·x[i-1], out[2i+1] = ¾·x[i] + ¼·x[i+1],
edges clamped), and its gradient the matching two-tap reduction. On a 2-core AVX2 CPU, SegResNet's
largest decoder upsampling (8 channels, 32³ → 64³) took 25 ms forward and backward, 8.4 ms this
way; the three of a step 32 → 13 ms. Same values up to float rounding (tested against PyTorch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_SPATIAL = (2, 3, 4)


def _double_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Linear 2× upsampling of `x` along `dim` (align_corners=False)."""
    n = x.shape[dim]
    interleaved = list(x.shape)
    interleaved.insert(dim + 1, 2)
    out = torch.empty(interleaved, dtype=x.dtype, device=x.device)
    even, odd = out.select(dim + 1, 0), out.select(dim + 1, 1)
    torch.mul(x, 0.75, out=even)
    torch.mul(x, 0.75, out=odd)
    even.narrow(dim, 1, n - 1).add_(x.narrow(dim, 0, n - 1), alpha=0.25)
    even.narrow(dim, 0, 1).add_(x.narrow(dim, 0, 1), alpha=0.25)
    odd.narrow(dim, 0, n - 1).add_(x.narrow(dim, 1, n - 1), alpha=0.25)
    odd.narrow(dim, n - 1, 1).add_(x.narrow(dim, n - 1, 1), alpha=0.25)
    doubled = list(x.shape)
    doubled[dim] = 2 * n
    return out.view(doubled)


def _halve_axis(grad: torch.Tensor, dim: int) -> torch.Tensor:
    """The adjoint of `_double_axis`: each input voxel gathers the gradient of the outputs it fed."""
    n = grad.shape[dim] // 2
    paired = list(grad.shape)
    paired[dim] = n
    paired.insert(dim + 1, 2)
    grad = grad.reshape(paired)
    even, odd = grad.select(dim + 1, 0), grad.select(dim + 1, 1)
    out = (even + odd).mul_(0.75)
    out.narrow(dim, 0, n - 1).add_(even.narrow(dim, 1, n - 1), alpha=0.25)
    out.narrow(dim, 0, 1).add_(even.narrow(dim, 0, 1), alpha=0.25)
    out.narrow(dim, 1, n - 1).add_(odd.narrow(dim, 0, n - 1), alpha=0.25)
    out.narrow(dim, n - 1, 1).add_(odd.narrow(dim, n - 1, 1), alpha=0.25)
    return out


class _DoubleTrilinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        for dim in _SPATIAL:
            x = _double_axis(x, dim)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        for dim in reversed(_SPATIAL):
            grad = _halve_axis(grad, dim)
        return grad


def double_trilinear(x: torch.Tensor) -> torch.Tensor:
    """`F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)` for (N, C, D, H, W)."""
    return _DoubleTrilinear.apply(x)


class SeparableUpsample(nn.Upsample):
    """An nn.Upsample whose CPU float work is `double_trilinear`; anything else runs as before."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.device.type == "cpu" and input.is_floating_point() and not torch.is_autocast_enabled("cpu"):
            return double_trilinear(input)
        return super().forward(input)


def _eligible(module: nn.Upsample) -> bool:
    if (
        type(module) is not nn.Upsample
        or module.size is not None
        or module.mode != "trilinear"
        or module.align_corners
        or module.recompute_scale_factor
    ):
        return False
    factors = module.scale_factor if isinstance(module.scale_factor, tuple) else (module.scale_factor,) * 3
    return len(factors) == 3 and all(float(factor) == 2.0 for factor in factors)


def use_separable_upsampling(model: nn.Module) -> int:
    """Switch `model`'s trilinear 2× nn.Upsample layers to SeparableUpsample in place; return how many."""
    switched = 0
    for module in model.modules():
        if isinstance(module, nn.Upsample) and _eligible(module):
            module.__class__ = SeparableUpsample
            switched += 1
    return switched
