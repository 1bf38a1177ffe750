"""voxseg's oneDNN convolutions: PyTorch's values and gradients, the same state dict, eligible layers only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voxseg.accel.onednn import OneDnnConv3d, use_onednn_convolutions
from voxseg.models.registry import build_model

needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN"
)


@needs_onednn
@pytest.mark.parametrize(
    ("in_channels", "out_channels", "kernel", "padding", "bias", "batch", "stride"),
    [
        (1, 8, 3, 1, False, 1, 1),
        (8, 16, 3, 1, True, 1, 1),
        (16, 8, 1, 0, True, 2, 1),
        (4, 4, 5, 2, True, 1, 1),
        (3, 5, 3, 0, True, 2, 1),
        (8, 16, 3, 1, False, 1, 2),  # a U-Net's downsampling
        (4, 6, 3, 0, True, 2, 2),  # odd sides: the last row of the input is never used
        (2, 3, 2, 0, True, 1, 2),
        (3, 4, 3, 1, True, 1, (1, 2, 3)),
    ],
)
def test_onednn_conv_matches_pytorch_forward_and_backward(
    in_channels, out_channels, kernel, padding, bias, batch, stride
):
    torch.manual_seed(0)
    options = dict(padding=padding, bias=bias, stride=stride)
    reference = nn.Conv3d(in_channels, out_channels, kernel, **options)
    fast = nn.Conv3d(in_channels, out_channels, kernel, **options)
    fast.load_state_dict(reference.state_dict())
    assert use_onednn_convolutions(fast) == 1 and isinstance(fast, OneDnnConv3d)
    x1 = torch.randn(batch, in_channels, 9, 10, 11, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = reference(x1), fast(x2)
    torch.testing.assert_close(y2, y1, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(y1)
    y1.backward(grad)
    y2.backward(grad)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-3)
    if bias:
        torch.testing.assert_close(fast.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-3)


@needs_onednn
def test_onednn_switch_keeps_state_dict_and_skips_what_it_cannot_compute():
    model = build_model("SegResNet")
    keys = list(model.state_dict())
    total = sum(1 for m in model.modules() if isinstance(m, nn.Conv3d))
    assert use_onednn_convolutions(model) == total  # strided downsampling layers included
    assert list(model.state_dict()) == keys
    others = nn.ModuleList(
        [
            nn.Conv3d(2, 2, 3, dilation=2),
            nn.Conv3d(2, 2, 3, groups=2),
            nn.Conv3d(2, 2, 3, padding_mode="reflect"),
        ]
    )
    assert use_onednn_convolutions(others) == 0


@needs_onednn
def test_whole_model_gradients_match():
    torch.manual_seed(0)
    reference = build_model("SegResNet")
    fast = build_model("SegResNet")
    fast.load_state_dict(reference.state_dict())
    use_onednn_convolutions(fast)
    x = torch.randn(1, 1, 16, 16, 16)
    reference(x).square().mean().backward()
    fast(x).square().mean().backward()
    for (name, a), b in zip(reference.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5, msg=name)
