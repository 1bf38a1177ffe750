"""Streamed (tiled along Z) sliding-window prediction equals MONAI's on the whole volume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from voxseg.data.normalise import Normalisation, normalise
from voxseg.inference.streaming import streamed_probabilities


@pytest.fixture(scope="module")
def predict():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 1, 3, padding=1)
    )
    return torch.no_grad()(lambda x: torch.sigmoid(net(x)))


@pytest.mark.parametrize(
    ("shape", "window", "overlap"),
    [
        ((40, 50, 37), (16, 16, 16), 0.25),
        ((10, 70, 20), (16, 32, 32), 0.25),
        ((33, 33, 33), (8, 16, 16), 0.5),
    ],
)
def test_streamed_equals_monai_on_the_whole_volume(predict, shape, window, overlap) -> None:
    volume = np.random.default_rng(0).normal(100, 20, shape).astype(np.float32)
    norm = Normalisation.of(volume)
    streamed = np.full(shape, np.nan, np.float32)
    seen = []
    for z, planes in streamed_probabilities(volume, norm, window, overlap, predict, 3):
        seen.append((z, planes.shape[0]))
        streamed[z : z + planes.shape[0]] = planes
    assert [z for z, _ in seen] == sorted(z for z, _ in seen) and sum(n for _, n in seen) == shape[0]
    padded = [max(s, w) for s, w in zip(shape, window, strict=True)]
    amounts = [((p - s) // 2, p - s - (p - s) // 2) for p, s in zip(padded, shape, strict=True)]
    whole = torch.from_numpy(np.pad(norm(volume), amounts, constant_values=norm.padding))[None, None]
    reference = sliding_window_inference(whole, window, 3, predict, overlap=overlap, mode="gaussian")[0, 0]
    crop = tuple(slice(before, before + side) for (before, _), side in zip(amounts, shape, strict=True))
    np.testing.assert_allclose(streamed, reference.numpy()[crop], rtol=1e-5, atol=1e-6)


def test_normalisation_equals_trainings_on_small_volumes_and_samples_large_ones(monkeypatch) -> None:
    volume = np.random.default_rng(1).gamma(2.0, 50.0, (20, 30, 40)).astype(np.float32)
    whole = Normalisation.of(volume)
    np.testing.assert_allclose(whole(volume), normalise(volume), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr("voxseg.data.normalise.NORMALISATION_SAMPLE", 1000)
    sampled = Normalisation.of(volume)  # a strided sample of ~1000 voxels: close, not equal
    assert sampled != whole
    assert abs(sampled.mean - whole.mean) < 0.1 * whole.std and abs(sampled.std / whole.std - 1) < 0.1
