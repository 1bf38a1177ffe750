"""Under CPU bfloat16, a convolution whose input is smaller than its kernel computes in float32:
PyTorch's bfloat16 weight gradient read memory it never wrote there (NaN from freed blocks)."""

from __future__ import annotations

import torch
from torch import nn

from voxseg.accel.bf16_guard import SmallInputSafeConv3d, guard_small_bf16_convolutions


def _freed_memory_full_of_nan() -> None:
    junk = [torch.full((n,), float("nan")) for n in (1 << 10, 1 << 14, 1 << 16, 1 << 18)]
    del junk


def test_a_guarded_layer_keeps_finite_gradients_on_a_2_cubed_input() -> None:
    torch.manual_seed(0)
    layer = nn.Conv3d(64, 64, 3, padding=1, bias=False)
    assert guard_small_bf16_convolutions(layer) == 1 and type(layer) is SmallInputSafeConv3d
    for _ in range(20):
        x = torch.randn(2, 64, 2, 2, 2).relu()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
        assert y.dtype == torch.float32  # left autocast: computed in float32
        _freed_memory_full_of_nan()
        y.backward(torch.randn_like(y))
        assert torch.isfinite(layer.weight.grad).all()
        layer.weight.grad = None


def test_inputs_as_large_as_the_kernel_stay_in_bfloat16_and_keys_stay() -> None:
    plain = nn.Conv3d(4, 4, 3, padding=1)
    guarded = nn.Conv3d(4, 4, 3, padding=1)
    guarded.load_state_dict(plain.state_dict())
    guard_small_bf16_convolutions(guarded)
    assert guarded.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(1, 4, 3, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert guarded(x).dtype == torch.bfloat16
        torch.testing.assert_close(guarded(x), plain(x))
    torch.testing.assert_close(guarded(x), plain(x))  # outside autocast nothing changes
