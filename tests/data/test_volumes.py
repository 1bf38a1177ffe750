"""Normalisation and padding of volumes held in memory or left on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxseg.data.discovery import Pair
from voxseg.data.labels import IGNORED
from voxseg.data.normalise import CLIP_PERCENTILES, normalise
from voxseg.data.volumes import (
    Volume,
    load_volumes,
    pad_amounts,
    pad_volume,
)


def _volume(name: str, shape: tuple[int, int, int], seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(name, rng.normal(size=shape).astype(np.float32), (rng.random(shape) > 0.7).astype(np.uint8))


# -- normalise ----------------------------------------------------------------------------------------


def test_normalise_z_scores() -> None:
    image = np.random.default_rng(0).normal(500.0, 40.0, (16, 16, 16)).astype(np.float32)
    out = normalise(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert abs(float(out.mean())) < 1e-4
    assert float(out.std()) == pytest.approx(1.0, abs=1e-3)


def test_normalise_clips_hot_pixels_to_the_percentiles() -> None:
    """One hot pixel must not squash the contrast of everything else."""
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 100, (20, 20, 20)).astype(np.float32)
    image[0, 0, 0] = 1e6
    image[0, 0, 1] = -1e6
    low, high = np.percentile(image, CLIP_PERCENTILES)
    out = normalise(image)
    clipped = np.clip(image, low, high)
    expected = (clipped - clipped.mean()) / clipped.std()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert out[0, 0, 0] == pytest.approx(out.max()) and out.max() < 3  # not 1e6 standard deviations away
    assert out[0, 0, 1] == pytest.approx(out.min())


def test_normalise_constant_volume_gives_zeros() -> None:
    out = normalise(np.full((8, 8, 8), 7.0, np.float32))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, np.zeros((8, 8, 8), np.float32))


def test_normalise_integer_image() -> None:
    image = np.arange(8 * 8 * 8, dtype=np.uint16).reshape(8, 8, 8)
    out = normalise(image)
    assert out.dtype == np.float32
    assert float(out.std()) == pytest.approx(1.0, abs=1e-3)
    assert np.all(np.diff(out.ravel()) >= 0)  # order of intensities preserved


# -- padding ------------------------------------------------------------------------------------------


def test_pad_amounts_are_symmetric() -> None:
    assert pad_amounts((10, 20, 7), (16, 16, 16)) == [(3, 3), (0, 0), (4, 5)]


def test_pad_volume_reaches_at_least_the_target() -> None:
    volume = _volume("v", (10, 20, 7))
    padded = pad_volume(volume, (16, 16, 16))
    assert padded.shape == (16, 20, 16)
    assert padded.name == "v"
    # original content in the middle, label 0 and image minimum around it
    np.testing.assert_array_equal(padded.image[3:13, :, 4:11], volume.image)
    np.testing.assert_array_equal(padded.label[3:13, :, 4:11], volume.label)
    assert padded.label.sum() == volume.label.sum()
    assert padded.label.dtype == np.uint8
    border = np.ones(padded.shape, bool)
    border[3:13, :, 4:11] = False
    assert np.all(padded.image[border] == volume.image.min())


def test_pad_volume_leaves_big_volumes_alone() -> None:
    volume = _volume("v", (16, 20, 16))
    assert pad_volume(volume, (16, 16, 8)) is volume


# -- volumes left on disk -----------------------------------------------------------------------------


def _zarr_pair(root: Path, image: np.ndarray, label: np.ndarray) -> Pair:
    import zarr

    paths = []
    for kind, array in (("images", image), ("labels", label)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        store = zarr.open_array(root / kind / "v.zarr", mode="w", shape=array.shape, dtype=array.dtype)
        store[...] = array
        paths.append(root / kind / "v.zarr")
    return Pair(paths[0], paths[1])


def test_a_volume_over_the_budget_stays_on_disk_and_reads_as_held(tmp_path: Path) -> None:
    """Beyond the memory budget a volume is read patch by patch, with the same normalisation and
    label classes as when it is held; held-out boxes read as not annotated, the image unchanged."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (20, 16, 16)).astype(np.float32)
    label = (rng.random((20, 16, 16)) > 0.8).astype(np.uint16) * 7
    pair = _zarr_pair(tmp_path, image, label)
    (held,), _, _ = load_volumes([pair])
    (on_disk,), _, notes = load_volumes([pair], memory_budget=0)
    assert not held.on_disk and on_disk.on_disk
    assert any("read patch by patch from disk" in note for note in notes)
    window = (slice(3, 11), slice(2, 10), slice(0, 16))
    np.testing.assert_array_equal(on_disk.image[window], held.image[window])
    np.testing.assert_array_equal(on_disk.label[window], held.label[window])
    box = (slice(2, 6), slice(4, 9), slice(0, 3))
    hidden = on_disk.label.held_out([box])
    expected = held.label.copy()
    expected[box] = IGNORED
    np.testing.assert_array_equal(hidden[:], expected)
    np.testing.assert_array_equal(hidden[3], expected[3])  # an integer index drops its axis
    np.testing.assert_array_equal(hidden[1:4, 5:12], expected[1:4, 5:12])
    np.testing.assert_array_equal(hidden.region((slice(3, 20),) * 3)[:], expected[3:, 3:, 3:])


def test_a_time_point_of_a_series_trains_with_its_labels(tmp_path: Path) -> None:
    """--timepoint reads one volume of a TZYX image, and of TZYX labels the same time point (3D labels
    are that time point's)."""
    import tifffile

    from voxseg.data.checks import Reading

    rng = np.random.default_rng(0)
    series = rng.normal(100, 10, (2, 12, 16, 16)).astype(np.float32)
    labels = (rng.random((2, 12, 16, 16)) > 0.8).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", series, imagej=True, metadata={"axes": "TZYX"})
    tifffile.imwrite(tmp_path / "a_label.tif", labels, imagej=True, metadata={"axes": "TZYX"})
    tifffile.imwrite(tmp_path / "b_label.tif", labels[1])
    (of_series,), _, _ = load_volumes(
        [Pair(tmp_path / "a.tif", tmp_path / "a_label.tif")], Reading(timepoint=1)
    )
    (of_3d,), _, _ = load_volumes([Pair(tmp_path / "a.tif", tmp_path / "b_label.tif")], Reading(timepoint=1))
    np.testing.assert_array_equal(of_series.image, normalise(series[1]))
    np.testing.assert_array_equal(of_series.label, labels[1])
    np.testing.assert_array_equal(of_3d.label, of_series.label)


def test_an_image_without_labels_says_it_partitions_itself_before_it_does(tmp_path: Path, caplog) -> None:
    """WNet3D's partitions take about a minute per volume on 2 cores: the log says so first."""
    import logging

    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32))
    said = []

    def partition(image: np.ndarray, spacing) -> tuple[np.ndarray, float]:
        said.append(caplog.text)
        return np.zeros(image.shape, np.uint8), 0.0

    with caplog.at_level(logging.INFO, logger="voxseg"):
        load_volumes([Pair(tmp_path / "a.tif", None)], partition=partition)
    assert "labels: a.tif partitions itself (the lowest N-cut of" in said[0]
