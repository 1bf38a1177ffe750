"""Sliding-window inference: streamed along Z it equals MONAI's on the whole volume; validation's
in-memory blend is the same code; TTA, stop, and cuDNN's setting restored."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from voxseg.data.normalise import Normalisation, normalise
from voxseg.errors import Stopped
from voxseg.inference.model.sliding import (
    RingState,
    assembled,
    blended_probability,
    streamed_probabilities,
    window_predictor,
)

CPU = torch.device("cpu")


def _identity() -> nn.Module:
    """A 3x3x3 convolution that returns its input: predictions can be compared voxel by voxel."""
    conv = nn.Conv3d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1, 1] = 1.0
        conv.bias.zero_()
    return conv.eval()


@pytest.fixture(scope="module", params=[1, 2], ids=["foreground", "foreground+distance"])
def predict(request):
    """A small network with one output, or two (a run trained on instance labels)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, request.param, 3, padding=1)
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
    channels = predict(torch.zeros(1, 1, *window)).shape[1]
    streamed = np.full((channels, *shape), np.nan, np.float32)
    seen = []
    for z, planes in streamed_probabilities(volume, norm, window, overlap, predict, 3):
        seen.append((z, planes.shape[1]))
        streamed[:, z : z + planes.shape[1]] = planes
    assert [z for z, _ in seen] == sorted(z for z, _ in seen) and sum(n for _, n in seen) == shape[0]
    padded = [max(s, w) for s, w in zip(shape, window, strict=True)]
    amounts = [((p - s) // 2, p - s - (p - s) // 2) for p, s in zip(padded, shape, strict=True)]
    whole = torch.from_numpy(np.pad(norm(volume), amounts, constant_values=norm.padding))[None, None]
    reference = sliding_window_inference(whole, window, 3, predict, overlap=overlap, mode="gaussian")[0]
    crop = tuple(slice(before, before + side) for (before, _), side in zip(amounts, shape, strict=True))
    np.testing.assert_allclose(streamed, reference.numpy()[(slice(None), *crop)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "window", "overlap", "cuts"),
    [
        ((40, 50, 37), (16, 16, 16), 0.25, [0, 12, 13, 40]),  # cuts inside and on window rows
        ((40, 50, 37), (16, 16, 16), 0.5, [0, 8, 24, 40]),
        ((10, 70, 20), (16, 32, 32), 0.25, [0, 3, 10]),  # padded in Z: one row for every region
        ((33, 33, 33), (8, 16, 16), 0.0, [0, 1, 32, 33]),  # one-plane regions, the last row irregular
    ],
)
def test_regions_streamed_apart_equal_the_whole_volume_bit_for_bit(predict, shape, window, overlap, cuts):
    """What lets processes share a volume, and a stopped prediction resume: each region takes the windows
    of the volume's own grid that touch it, and its planes get the same sums in the same order."""
    volume = np.random.default_rng(1).normal(100, 20, shape).astype(np.float32)
    norm = Normalisation.of(volume)
    whole = assembled(streamed_probabilities(volume, norm, window, overlap, predict, 3), shape)
    counts: list[tuple[int, int]] = []
    parts = []
    for first, end in zip(cuts, cuts[1:], strict=False):
        stream = streamed_probabilities(
            volume, norm, window, overlap, predict, 3, lambda d, t: counts.append((d, t)), region=(first, end)
        )
        planes = [(z, p.copy()) for z, p in stream]  # each view is valid until the next is asked for
        assert planes[0][0] == first and sum(p.shape[1] for _, p in planes) == end - first
        parts.extend(p for _, p in planes)
    assert np.array_equal(np.concatenate(parts, axis=1), whole)
    total_whole = []
    list(
        streamed_probabilities(volume, norm, window, overlap, predict, 3, lambda d, t: total_whole.append(t))
    )
    assert max(t for _, t in counts) <= total_whole[-1]  # a region reads only the windows touching it


def _copied(state: RingState) -> RingState:
    """A stream's state kept past the call (it is handed views of the stream's buffers)."""
    return RingState(
        state.next_row, state.final, [v.copy() for v in state.values], [w.copy() for w in state.weights]
    )


@pytest.mark.parametrize("stop_after_row", [0, 1, 3])
def test_a_stream_continues_from_its_state_after_a_row_bit_for_bit(predict, stop_after_row: int) -> None:
    """What lets a stopped prediction continue without redoing a row: the state after a row (the next
    row's start and the partial sums of the planes not yet final) restarts the stream."""
    shape, window = (40, 20, 24), (8, 8, 8)
    volume = np.random.default_rng(3).normal(100, 20, shape).astype(np.float32)
    norm = Normalisation.of(volume)
    whole = assembled(streamed_probabilities(volume, norm, window, 0.25, predict, 3), shape)
    states: list[RingState] = []
    first = [
        (z, p.copy())
        for z, p in streamed_probabilities(
            volume, norm, window, 0.25, predict, 3, on_row=lambda state: states.append(_copied(state))
        )
    ]
    state = states[stop_after_row]
    done = [p for z, p in first if z < state.final]
    windows: list[int] = []
    rest = streamed_probabilities(
        volume,
        norm,
        window,
        0.25,
        predict,
        3,
        lambda d, t: windows.append(t),
        region=(state.final, shape[0]),
        resume_from=state,
    )
    continued = [p.copy() for _, p in rest]
    assert np.array_equal(np.concatenate(done + continued, axis=1), whole)
    rows_after = len(states) - stop_after_row - 1
    assert windows[-1] == rows_after * 12  # only the rows after the state, 3 × 4 windows each


def test_validation_blends_as_prediction_streams(predict) -> None:
    """Validation's probability of a normalised volume is prediction's, window for window."""
    volume = np.random.default_rng(2).normal(100, 20, (30, 40, 20)).astype(np.float32)
    norm = Normalisation.of(volume)
    streamed = np.concatenate(
        [p.copy() for _, p in streamed_probabilities(volume, norm, (16, 16, 16), 0.25, predict, 2)], axis=1
    )
    np.testing.assert_array_equal(blended_probability(norm(volume), (16, 16, 16), predict, 2), streamed)


@pytest.mark.parametrize("shape", [(8, 8, 8), (5, 9, 7), (20, 13, 30)])
def test_blended_probability_keeps_shape_and_alignment(shape: tuple[int, int, int]) -> None:
    """Volumes smaller or larger than the window come back the same size, with no shift from padding."""
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    for tta in (False, True):  # the identity is flip-invariant: TTA changes nothing
        probability = blended_probability(image, (8, 8, 8), window_predictor(_identity(), CPU, tta=tta), 2)
        assert probability.shape == (1, *shape) and probability.dtype == np.float32
        np.testing.assert_allclose(probability[0], 1 / (1 + np.exp(-image)), rtol=1e-4, atol=1e-4)


def test_a_set_stop_ends_before_the_next_batch(predict) -> None:
    volume = np.zeros((16, 32, 32), np.float32)
    stop, reports = threading.Event(), []

    def report(done: int, total: int) -> None:
        reports.append(done)
        stop.set()

    with pytest.raises(Stopped, match="after 2 of 9 windows"):
        list(
            streamed_probabilities(
                volume, Normalisation.of(volume), (16, 16, 16), 0.25, predict, 2, report, stop
            )
        )
    assert reports == [2]


class _RecordsAutotuning(nn.Module):
    """Identity that notes whether cuDNN autotuning was on each time it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.autotuning_seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.autotuning_seen.append(torch.backends.cudnn.benchmark)
        return x


def test_validation_runs_without_cudnn_autotuning_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training turns autotuning on; validation's shapes would each be timed afresh."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    model = _RecordsAutotuning()
    blended_probability(np.zeros((12, 8, 8), np.float32), (8, 8, 8), window_predictor(model, CPU), 1)
    assert model.autotuning_seen == [False, False]
    assert torch.backends.cudnn.benchmark is True


def test_normalisation_equals_trainings_on_small_volumes_and_samples_large_ones(monkeypatch) -> None:
    volume = np.random.default_rng(1).gamma(2.0, 50.0, (20, 30, 40)).astype(np.float32)
    whole = Normalisation.of(volume)
    np.testing.assert_allclose(whole(volume), normalise(volume), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr("voxseg.data.normalise.NORMALISATION_SAMPLE", 1000)
    sampled = Normalisation.of(volume)  # a strided sample of ~1000 voxels: close, not equal
    assert sampled != whole
    assert abs(sampled.mean - whole.mean) < 0.1 * whole.std and abs(sampled.std / whole.std - 1) < 0.1
