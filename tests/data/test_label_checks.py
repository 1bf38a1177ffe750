"""Labels whose values look like another convention than the one they are read with are named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from voxseg.data import checks, label_checks
from voxseg.data.checks import Reading
from voxseg.data.discovery import Pair
from voxseg.data.label_checks import SPARSE_MAP, judge_label, label_warnings, low_values
from voxseg.data.labels import LabelMap
from voxseg.errors import DataError

SHAPE = (24, 20, 16)


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)
    return path


def _pair(tmp_path: Path, label: np.ndarray, name: str = "v.tif") -> Pair:
    """An image of the label's shape (unread by the checks: only its header is) and the label."""
    image = _write(tmp_path / "images" / name, np.zeros(label.shape, np.float32))
    return Pair(image, _write(tmp_path / "labels" / name, label))


def _blobs() -> np.ndarray:
    """Two objects with ids 1 and 2: the default map's instance labels."""
    label = np.zeros(SHAPE, np.uint8)
    label[3:9, 4:10, 3:9] = 1
    label[12:18, 10:16, 8:14] = 2
    return label


def _reviewed(axis: int = 0, planes: tuple[int, ...] = (4, 11, 19)) -> np.ndarray:
    """Sparse labels: the planes reviewed in napari hold 1 (background) or 2 (an object), the rest 0."""
    label = np.zeros(SHAPE, np.uint8)
    moved, objects = np.moveaxis(label, axis, 0), np.moveaxis(_blobs() > 0, axis, 0)
    for plane in planes:
        moved[plane] = np.where(objects[plane], 2, 1)
    return label


@pytest.mark.parametrize(("axis", "name"), [(0, "Z"), (2, "X")])
def test_sparse_labels_without_a_map_are_refused_naming_the_map(tmp_path: Path, axis: int, name: str) -> None:
    pair = _pair(tmp_path, _reviewed(axis, (2, 7, 12)))
    with pytest.raises(DataError) as error:
        judge_label(pair, Reading())
    message = str(error.value)
    assert message.startswith(f"{pair.label}: looks like sparse annotations")
    assert f"3 of {SHAPE[axis]} {name} planes" in message
    assert f"--label-map {SPARSE_MAP}" in message
    assert "--label-map 0:background,*:foreground" in message  # how to train them as read anyway


def test_a_given_map_that_reads_1_as_background_lets_sparse_labels_through(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _reviewed())
    assert judge_label(pair, Reading(label_map=LabelMap.parse(SPARSE_MAP))) is None
    assert judge_label(pair, Reading(label_map=LabelMap.parse(None, ignore_label=1))) is None


def test_sparse_labels_with_an_ignore_label_still_read_1_as_foreground(tmp_path: Path) -> None:
    """`--ignore-label 5` leaves 1 and 2 both foreground: the reviewed planes would still train whole."""
    pair = _pair(tmp_path, _reviewed())
    with pytest.raises(DataError, match=r"read as 0:background,5:ignore,\*:foreground"):
        judge_label(pair, Reading(label_map=LabelMap.parse(None, ignore_label=5)))


def test_two_objects_ids_are_a_warning_not_a_refusal(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _blobs())
    warning = judge_label(pair, Reading())
    assert warning is not None and warning.startswith(f"{pair.label}: holds only the values 0, 1 and 2")
    assert f"--label-map {SPARSE_MAP}" in warning and "0:background,1:foreground,2:background" in warning


def test_stroke_annotations_on_planes_are_a_warning(tmp_path: Path) -> None:
    """1s and 2s on few planes that they do not fill (strokes) may be sparse labels or ids: named."""
    label = np.zeros(SHAPE, np.uint8)
    label[5, 2:6, 2:6], label[5, 10:13, 10:13] = 1, 2
    assert "holds only the values 0, 1 and 2" in (judge_label(_pair(tmp_path, label), Reading()) or "")


def test_reviewed_planes_on_most_of_the_volume_are_a_warning(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _reviewed(planes=tuple(range(0, 24, 2)) + (1,)))
    assert judge_label(pair, Reading()) is not None


@pytest.mark.parametrize(
    "label",
    [
        (_blobs() > 0).astype(np.uint8),  # a mask
        (_blobs() > 0).astype(np.uint8) * 255,  # a 0/255 mask
        _blobs() * 3,  # ids 3 and 6
        np.where(_blobs() == 2, 2, 1).astype(np.uint8),  # no 0: class_warnings names it (all foreground)
        np.where(_blobs() == 2, 2, 0).astype(np.uint8),  # 0 and 2 only
    ],
)
def test_other_labels_say_nothing(tmp_path: Path, label: np.ndarray) -> None:
    assert judge_label(_pair(tmp_path, label), Reading()) is None


def test_reading_stops_at_the_first_slab_with_another_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instance labels (ids above 2) are answered from their first slab, not read whole."""
    monkeypatch.setattr(checks, "SLAB_VOXELS", SHAPE[1] * SHAPE[2])  # one plane a slab
    read: list[slice] = []

    def counted(shape: tuple[int, ...]) -> Iterator[slice]:
        for zs in checks.slabs(shape):
            read.append(zs)
            yield zs

    monkeypatch.setattr(label_checks, "slabs", counted)
    label = _blobs()
    label[0, 0, 0] = 7
    assert low_values(_pair(tmp_path, label), Reading()) is None
    assert len(read) == 1
    found = low_values(_pair(tmp_path, _blobs(), "w.tif"), Reading())
    assert len(read) == 1 + SHAPE[0]
    assert found is not None and found.ones == found.twos == 6**3
    assert [int(planes.sum()) for planes in found.occupied] == [12, 12, 11]


def test_label_warnings_names_each_file_and_skips_images_alone(tmp_path: Path) -> None:
    blobs = _pair(tmp_path, _blobs(), "a.tif")
    mask = _pair(tmp_path, (_blobs() > 0).astype(np.uint8), "b.tif")
    warnings = label_warnings([blobs, mask, Pair(mask.image, None)], Reading())
    assert len(warnings) == 1 and warnings[0].startswith(f"{blobs.label}: holds only")


def test_a_file_that_cannot_be_read_is_named_as_loading_names_it(tmp_path: Path) -> None:
    """The image is opened first, as when the data load: its error comes first, naming it."""
    pair = _pair(tmp_path, _reviewed())
    _write(pair.image, np.zeros((2, *SHAPE), np.float32))  # two channels: no 3D volume without --channel
    with pytest.raises(DataError, match="channels") as error:
        judge_label(pair, Reading())
    assert str(error.value).startswith(str(pair.image))


def test_a_rewritten_file_is_read_anew(tmp_path: Path) -> None:
    """The check is cached per file version: fixing the file must change the answer."""
    pair = _pair(tmp_path, _blobs())
    assert judge_label(pair, Reading()) is not None
    _write(pair.label, (_blobs() > 0).astype(np.uint16))  # another size: a new version even within a tick
    assert judge_label(pair, Reading()) is None
