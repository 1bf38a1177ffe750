"""Sliding-window prediction and the Dice score used for validation (and best.pth selection)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from voxseg.inference.sliding import predict_probability


def _identity() -> nn.Module:
    """A 3x3x3 convolution that returns its input: predictions can be compared voxel by voxel."""
    conv = nn.Conv3d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1, 1] = 1.0
        conv.bias.zero_()
    return conv.eval()


@pytest.mark.parametrize("shape", [(8, 8, 8), (5, 9, 7), (20, 13, 30)])
def test_predict_probability_keeps_shape_and_alignment(shape: tuple[int, int, int]) -> None:
    """Volumes smaller or larger than the window come back the same size, with no shift from padding."""
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    probability = predict_probability(_identity(), image, (8, 8, 8), torch.device("cpu"), batch_size=2)
    assert tuple(probability.shape) == shape and probability.dtype == torch.float32
    torch.testing.assert_close(probability, torch.sigmoid(torch.from_numpy(image)), rtol=1e-4, atol=1e-4)


class _RecordsAutotuning(nn.Module):
    """Identity that notes whether cuDNN autotuning was on each time it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.autotuning_seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.autotuning_seen.append(torch.backends.cudnn.benchmark)
        return x


def test_inference_runs_without_cudnn_autotuning_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training turns autotuning on; inference's changing shapes would each be timed afresh."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    model = _RecordsAutotuning()
    predict_probability(model, np.zeros((12, 8, 8), np.float32), (8, 8, 8), torch.device("cpu"), batch_size=1)
    assert model.autotuning_seen == [False, False]
    assert torch.backends.cudnn.benchmark is True
