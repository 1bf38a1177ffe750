"""Separable trilinear 2× upsampling: PyTorch's values and gradients, only where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from voxseg.accel.upsample import SeparableUpsample, double_trilinear, use_separable_upsampling
from voxseg.models.registry import build_model


def _reference(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)


@pytest.mark.parametrize("shape", [(1, 8, 4, 4, 4), (2, 3, 5, 1, 7), (1, 1, 2, 3, 1)])
def test_values_and_gradients_match_pytorch(shape: tuple[int, ...]) -> None:
    """Odd sides and sides of 1 included: the edges are where a two-tap filter goes wrong."""
    torch.manual_seed(0)
    x1 = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = _reference(x1), double_trilinear(x2)
    torch.testing.assert_close(y2, y1)
    grad = torch.randn_like(y1)
    y1.backward(grad)
    y2.backward(grad)
    torch.testing.assert_close(x2.grad, x1.grad)


def test_gradcheck() -> None:
    x = torch.randn(1, 2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(double_trilinear, (x,))


def test_only_trilinear_doubling_without_corner_alignment_is_switched() -> None:
    layers = nn.ModuleList(
        [
            nn.Upsample(scale_factor=2, mode="trilinear"),
            nn.Upsample(scale_factor=(2.0, 2.0, 2.0), mode="trilinear", align_corners=False),
            nn.Upsample(scale_factor=2, mode="trilinear", align_corners=True),
            nn.Upsample(scale_factor=3, mode="trilinear"),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Upsample(size=(8, 8, 8), mode="trilinear"),
        ]
    )
    assert use_separable_upsampling(layers) == 2
    assert [type(layer) is SeparableUpsample for layer in layers] == [True, True] + [False] * 4


def test_segresnet_keeps_its_outputs_gradients_and_state_dict() -> None:
    torch.manual_seed(0)
    reference = build_model("SegResNet")
    fast = build_model("SegResNet")
    fast.load_state_dict(reference.state_dict())
    assert use_separable_upsampling(fast) == 3
    assert list(fast.state_dict()) == list(reference.state_dict())
    x = torch.randn(1, 1, 16, 16, 16)
    y1, y2 = reference(x), fast(x)
    torch.testing.assert_close(y2, y1, rtol=1e-4, atol=1e-5)
    y1.square().mean().backward()
    y2.square().mean().backward()
    for (name, a), b in zip(reference.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-6, msg=name)


def test_autocast_runs_pytorchs_own_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under bfloat16 autocast the layer is PyTorch's: only float32 work was measured faster."""
    calls: list[int] = []
    monkeypatch.setattr("voxseg.accel.upsample.double_trilinear", lambda x: calls.append(1) or _reference(x))
    layer = nn.Upsample(scale_factor=2, mode="trilinear")
    use_separable_upsampling(layer)
    x = torch.randn(1, 2, 4, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert calls == []
    layer(x)
    assert calls == [1]
