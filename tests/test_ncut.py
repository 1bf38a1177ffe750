"""The soft N-cut: lowest for the partition that follows the image, separable smoothing exact."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from voxseg.ncut import _gaussian, _smoothed, soft_ncut


def _two_regions(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 16³ image whose left half is bright (with a little noise), and that half as a mask."""
    generator = torch.Generator().manual_seed(seed)
    inside = torch.zeros(1, 1, 16, 16, 16)
    inside[..., :8] = 1
    image = 100 + 100 * inside + torch.randn(inside.shape, generator=generator)
    return image, inside


def test_the_partition_that_follows_the_image_has_the_lowest_cut() -> None:
    image, inside = _two_regions()
    right = torch.cat([1 - inside, inside], 1)
    shifted = torch.roll(inside, 4, dims=-1)
    wrong = torch.cat([1 - shifted, shifted], 1)
    undecided = torch.full_like(right, 0.5)
    values = [float(soft_ncut(p, image)) for p in (right, wrong, undecided)]
    assert values[0] < 0.05 and min(values[1:]) > 1.0 and max(values) <= 2.0


def test_the_cut_is_differentiable_in_the_probabilities() -> None:
    image, inside = _two_regions()
    logits = (3 * torch.cat([-inside, inside], 1) + torch.randn(1, 2, 16, 16, 16)).requires_grad_()
    soft_ncut(torch.softmax(logits, 1), image).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_separable_smoothing_equals_the_3d_gaussian() -> None:
    volume = torch.rand(2, 1, 9, 11, 13)
    line = _gaussian(2, 4.0)
    kernel = (line[:, None, None] * line[None, :, None] * line[None, None, :])[None, None]
    assert torch.allclose(_smoothed(volume, 2, 4.0), F.conv3d(volume, kernel, padding=2), atol=1e-4)
