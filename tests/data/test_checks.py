"""Integrity checks on every file before training: each problem must name the file at fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from voxseg.data import checks
from voxseg.data.checks import Reading, load_pair, open_pair, read_volume, scan_pair
from voxseg.data.discovery import Pair
from voxseg.data.labels import LabelMap
from voxseg.data.volumes import load_volumes
from voxseg.errors import DataError

SHAPE = (8, 12, 10)


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)
    return path


def _pair(tmp_path: Path, image: np.ndarray, label: np.ndarray) -> Pair:
    return Pair(
        _write(tmp_path / "images" / "vol.tif", image), _write(tmp_path / "labels" / "vol_label.tif", label)
    )


def _image(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(0).normal(100, 10, shape).astype(np.float32)


def _label(shape: tuple[int, ...] = SHAPE, dtype: type = np.uint16) -> np.ndarray:
    label = np.zeros(shape, dtype)
    label[2:5, 3:7, 2:6] = 1
    label[5:7, 8:11, 6:9] = 2
    return label


def test_valid_pair_loads(tmp_path: Path) -> None:
    image, mask, warnings = load_pair(_pair(tmp_path, _image(), _label()))
    assert image.shape == mask.shape == SHAPE
    assert warnings == []


def test_2d_file_names_file_and_3d(tmp_path: Path) -> None:
    path = _write(tmp_path / "flat.tif", np.zeros((12, 10), np.float32))
    with pytest.raises(DataError, match="3D") as info:
        read_volume(path)
    assert "flat.tif" in str(info.value)


def test_2d_image_in_a_pair(tmp_path: Path) -> None:
    pair = _pair(tmp_path, np.zeros((12, 10), np.float32), _label())
    with pytest.raises(DataError, match="3D") as info:
        load_pair(pair)
    assert str(pair.image) in str(info.value)


def test_shape_mismatch_names_the_label_file(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _image(), _label((8, 12, 9)))
    with pytest.raises(DataError) as info:
        load_pair(pair)
    message = str(info.value)
    assert message.startswith(str(pair.label))
    assert "vol.tif" in message and "(8, 12, 9)" in message and "(8, 12, 10)" in message
    assert "another order" not in message


def test_a_label_saved_with_its_axes_in_another_order_says_so(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _image(), _label().transpose(2, 1, 0).copy())
    with pytest.raises(DataError, match="the same sides in another order"):
        load_pair(pair)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_image(tmp_path: Path, bad: float) -> None:
    image = _image()
    image[1, 2, 3] = bad
    pair = _pair(tmp_path, image, _label())
    with pytest.raises(DataError, match="NaN or Inf") as info:
        load_pair(pair)
    assert str(pair.image) in str(info.value)


def test_non_integer_float_labels(tmp_path: Path) -> None:
    label = _label().astype(np.float32)
    label[0, 0, 0] = 0.5
    pair = _pair(tmp_path, _image(), label)
    with pytest.raises(DataError, match="integers") as info:
        load_pair(pair)
    assert str(pair.label) in str(info.value) and "0.5" in str(info.value)


def test_integer_valued_float_labels_are_accepted(tmp_path: Path) -> None:
    """Labels saved as float32 by some tools are fine as long as the values are whole numbers."""
    _, mask, _ = load_pair(_pair(tmp_path, _image(), _label().astype(np.float32)))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, _label() > 0)


def test_nan_labels(tmp_path: Path) -> None:
    label = _label().astype(np.float32)
    label[1, 1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        load_pair(_pair(tmp_path, _image(), label))


def test_negative_labels(tmp_path: Path) -> None:
    label = _label(dtype=np.int16)
    label[0, 0, 0] = -1
    pair = _pair(tmp_path, _image(), label)
    with pytest.raises(DataError, match=">= 0") as info:
        load_pair(pair)
    assert str(pair.label) in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    garbage = tmp_path / "images" / "garbage.tif"
    garbage.parent.mkdir()
    garbage.write_bytes(b"this is not a tiff\n" * 20)
    with pytest.raises(DataError, match="cannot read") as info:
        read_volume(garbage)
    assert "garbage.tif" in str(info.value)
    assert "\n" not in str(info.value)  # the CLI prints it as one line


def test_label_without_foreground_is_a_warning_not_an_error(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _image(), np.zeros(SHAPE, np.uint8))
    _, mask, warnings = load_pair(pair)
    assert not mask.any()
    assert len(warnings) == 1 and str(pair.label) in warnings[0] and "no foreground" in warnings[0]


def test_instance_labels_become_a_binary_uint8_mask(tmp_path: Path) -> None:
    """Ids above 255 (uint16) must not wrap around to 0 when cast to uint8."""
    label = _label()
    label[label == 2] = 256
    label[0, 0, 0] = 1000
    _, mask, _ = load_pair(_pair(tmp_path, _image(), label))
    assert mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask, (label > 0).astype(np.uint8))


def test_binary_labels(tmp_path: Path) -> None:
    label = _label() > 0
    _, mask, warnings = load_pair(_pair(tmp_path, _image(), label.astype(np.uint8)))
    np.testing.assert_array_equal(mask, label)
    assert warnings == []


def test_singleton_axis_is_squeezed(tmp_path: Path) -> None:
    """A (1, Z, Y, X) file (e.g. one channel) is a 3D volume."""
    data = _image((1, *SHAPE))
    path = _write(tmp_path / "one_channel.tif", data)
    assert tifffile.imread(path).shape == (1, *SHAPE)  # the file really is 4D
    volume = read_volume(path)
    assert volume.shape == SHAPE
    np.testing.assert_array_equal(volume, data[0])


def test_multichannel_file_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "two_channels.tif", _image((2, *SHAPE)))
    with pytest.raises(DataError, match=r"two_channels.tif: 2 channels on axis 0 .*--channel N \(0 to 1\)"):
        read_volume(path)


def test_load_volumes_normalises_and_collects_warnings(tmp_path: Path) -> None:
    good = Pair(
        _write(tmp_path / "i" / "a.tif", _image() * 3 + 7),
        _write(tmp_path / "l" / "a.tif", _label()),
    )
    empty = Pair(
        _write(tmp_path / "i" / "b.tif", _image()),
        _write(tmp_path / "l" / "b.tif", np.zeros(SHAPE, np.uint8)),
    )
    volumes, warnings, _ = load_volumes([good, empty])
    assert [v.name for v in volumes] == ["a.tif", "b.tif"]
    assert volumes[0].image.dtype == np.float32 and volumes[0].label.dtype == np.uint8
    assert abs(float(volumes[0].image.mean())) < 1e-4
    assert len(warnings) == 1 and "b.tif" in warnings[0]


def test_load_volumes_stops_at_the_first_bad_file(tmp_path: Path) -> None:
    good = Pair(_write(tmp_path / "i" / "a.tif", _image()), _write(tmp_path / "l" / "a.tif", _label()))
    bad = Pair(
        _write(tmp_path / "i" / "b.tif", _image()), _write(tmp_path / "l" / "b.tif", _label((8, 8, 8)))
    )
    with pytest.raises(DataError, match=r"l/b\.tif"):
        load_volumes([good, bad])


def test_label_of_almost_only_background_names_the_share(tmp_path: Path) -> None:
    label = np.zeros((20, 20, 20), np.uint8)
    label[3, 4, 5] = 1  # 1 voxel of 8000: 0.0125%
    pair = _pair(tmp_path, _image(label.shape), label)
    _, _, warnings = load_pair(pair)
    share = "only 0.013% of its annotated voxels are foreground (1 of 8000)"
    assert warnings == [f"{pair.label}: {share}: is it the right label file?"]


def test_label_of_almost_only_foreground_names_the_share(tmp_path: Path) -> None:
    label = np.full((20, 20, 20), 3, np.uint16)
    label[0, 0, :2] = 0
    _, _, warnings = load_pair(_pair(tmp_path, _image(label.shape), label))
    share = "only 0.025% of its annotated voxels are background (2 of 8000)"
    assert len(warnings) == 1 and share in warnings[0]


def test_label_with_no_background_names_the_map(tmp_path: Path) -> None:
    """Values 1 and 2 with no 0: without a map 1 (meant as background?) trains as foreground."""
    label = np.ones(SHAPE, np.uint8)
    label[2:4, 2:5, 2:5] = 2
    pair = _pair(tmp_path, _image(), label)
    _, _, warnings = load_pair(pair)
    assert len(warnings) == 1 and warnings[0].startswith(f"{pair.label}: every annotated voxel is foreground")
    assert "--label-map (read as 0:background,*:foreground)" in warnings[0]


def test_the_shares_count_annotated_voxels_only(tmp_path: Path) -> None:
    """Sparse labels leave most voxels out (0: ignore); the share is of the annotated ones."""
    label = np.zeros((20, 20, 20), np.uint8)
    label[10] = 1
    label[10, 5:7, 5:7] = 2  # 1% of the annotated voxels, 0.05% of all
    reading = Reading(label_map=LabelMap.parse("0:ignore,1:background,2:foreground"))
    _, _, warnings = load_pair(_pair(tmp_path, _image(label.shape), label), reading)
    assert warnings == []


def test_on_disk_scan_warns_as_loading_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A volume read patch by patch from disk is checked slab by slab, with the same warning."""
    monkeypatch.setattr(checks, "SLAB_VOXELS", 400)  # one plane a slab
    label = np.zeros((20, 20, 20), np.uint8)
    label[3, 4, 5] = 1
    pair = _pair(tmp_path, _image(label.shape), label)
    image_file, label_file = open_pair(pair, Reading())
    assert scan_pair(image_file, label_file, pair, LabelMap()) == load_pair(pair)[2]
    assert len(load_pair(pair)[2]) == 1
