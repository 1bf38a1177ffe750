"""Pairing images with labels by name: a wrong pairing would silently train on the wrong labels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from voxseg.config import TrainConfig
from voxseg.data.discovery import label_name_pattern, list_volumes, pair_files
from voxseg.errors import ConfigError, DataError


def _touch_tiffs(folder: Path, names: list[str]) -> Path:
    """Tiny real TIFFs; pairing only looks at names, but the files are genuine."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        tifffile.imwrite(folder / name, np.zeros((2, 2, 2), np.uint8))
    return folder


def _pairs_by_name(images: Path, labels: Path) -> dict[str, str]:
    return {pair.image.name: pair.label.name for pair in pair_files(images, labels)}


def test_pairs_by_name_not_by_sort_order(tmp_path: Path) -> None:
    """Sorted, the label list is in a different order than the images: zip() would mis-pair them."""
    images = _touch_tiffs(tmp_path / "images", ["cell.tif", "cell_2.tif"])
    labels = _touch_tiffs(tmp_path / "labels", ["cell_2_gt.tif", "cell_gt.tif"])
    assert sorted(p.name for p in labels.iterdir()) == ["cell_2_gt.tif", "cell_gt.tif"]
    assert _pairs_by_name(images, labels) == {"cell.tif": "cell_gt.tif", "cell_2.tif": "cell_2_gt.tif"}


@pytest.mark.parametrize("suffix", ["_label", "_labels", "_mask", "_gt", ""])
def test_label_suffixes(tmp_path: Path, suffix: str) -> None:
    """Every documented suffix (and the bare image name) pairs."""
    images = _touch_tiffs(tmp_path / "images", ["a.tif", "b.tif"])
    labels = _touch_tiffs(tmp_path / "labels", [f"b{suffix}.tif", f"a{suffix}.tif"])
    assert _pairs_by_name(images, labels) == {"a.tif": f"a{suffix}.tif", "b.tif": f"b{suffix}.tif"}


def test_tif_and_tiff_extensions_mix(tmp_path: Path) -> None:
    """An image .tiff may have a .tif label and vice versa; the order of pairs follows the images."""
    images = _touch_tiffs(tmp_path / "images", ["a.tiff", "b.tif", "c.TIF"])
    labels = _touch_tiffs(tmp_path / "labels", ["a_label.tif", "b_label.tiff", "c_mask.tif"])
    pairs = pair_files(images, labels)
    assert [(p.image.name, p.label.name) for p in pairs] == [
        ("a.tiff", "a_label.tif"),
        ("b.tif", "b_label.tiff"),
        ("c.TIF", "c_mask.tif"),
    ]
    assert pairs[0].name == "a.tiff"


def test_non_tiff_files_are_ignored(tmp_path: Path) -> None:
    images = _touch_tiffs(tmp_path / "images", ["a.tif"])
    labels = _touch_tiffs(tmp_path / "labels", ["a_label.tif"])
    (images / "notes.txt").write_text("not an image")
    (labels / "a_label.png").write_bytes(b"x")
    assert _pairs_by_name(images, labels) == {"a.tif": "a_label.tif"}


def test_unmatched_image_is_named(tmp_path: Path) -> None:
    images = _touch_tiffs(tmp_path / "images", ["a.tif", "lonely_image.tif"])
    labels = _touch_tiffs(tmp_path / "labels", ["a_label.tif"])
    with pytest.raises(DataError, match="lonely_image.tif") as info:
        pair_files(images, labels)
    assert "without a label" in str(info.value)
    assert "a.tif," not in str(info.value)  # only the unmatched file is listed


def test_unmatched_label_is_named(tmp_path: Path) -> None:
    images = _touch_tiffs(tmp_path / "images", ["a.tif"])
    labels = _touch_tiffs(tmp_path / "labels", ["a_label.tif", "stray_label.tif"])
    with pytest.raises(DataError, match="stray_label.tif") as info:
        pair_files(images, labels)
    assert "without an image" in str(info.value)


def test_both_kinds_of_unmatched_files_are_listed_together(tmp_path: Path) -> None:
    """One error lists everything that is wrong, so the user fixes it in one go."""
    images = _touch_tiffs(tmp_path / "images", ["a.tif", "b.tif"])
    labels = _touch_tiffs(tmp_path / "labels", ["a_label.tif", "c_label.tif"])
    with pytest.raises(DataError) as info:
        pair_files(images, labels)
    assert "b.tif" in str(info.value)
    assert "c_label.tif" in str(info.value)


def test_two_labels_for_one_image_is_an_error(tmp_path: Path) -> None:
    images = _touch_tiffs(tmp_path / "images", ["vol.tif"])
    labels = _touch_tiffs(tmp_path / "labels", ["vol_label.tif", "vol_mask.tif"])
    with pytest.raises(DataError) as info:
        pair_files(images, labels)
    message = str(info.value)
    assert "vol_label.tif" in message and "vol_mask.tif" in message and "vol.tif" in message


def test_missing_folder_names_the_option(tmp_path: Path) -> None:
    labels = _touch_tiffs(tmp_path / "labels", ["a.tif"])
    with pytest.raises(DataError, match="--images") as info:
        pair_files(tmp_path / "nowhere", labels)
    assert "does not exist" in str(info.value)


def test_empty_folder_names_the_option(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "readme.txt").write_text("no tiffs here")
    labels = _touch_tiffs(tmp_path / "labels", ["a.tif"])
    with pytest.raises(DataError, match="--images") as info:
        pair_files(images, labels)
    assert "no volumes (.tif/.tiff, .zarr or .h5/.hdf5)" in str(info.value)


def test_empty_label_folder_names_the_label_option(tmp_path: Path) -> None:
    images = _touch_tiffs(tmp_path / "images", ["a.tif"])
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError, match="--labels"):
        pair_files(images, tmp_path / "labels")


def test_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "images.tif"
    file.write_bytes(b"")
    with pytest.raises(DataError, match="--images.*not a folder"):
        list_volumes(file, "--images")


def test_validation_folders_use_their_own_option_names(tmp_path: Path) -> None:
    """Errors about --val-images must not blame --images."""
    labels = _touch_tiffs(tmp_path / "labels", ["a.tif"])
    with pytest.raises(DataError, match="--val-images"):
        pair_files(tmp_path / "missing", labels, "--val-images", "--val-labels")


def test_one_folder_for_images_and_labels_never_pairs_a_file_with_itself(tmp_path: Path) -> None:
    """uint16 images paired with themselves would silently train on `image > 0` as the labels."""
    names = ["vol_00.tif", "vol_00_label.tif", "vol_01.tif", "vol_01_label.tif"]
    folder = _touch_tiffs(tmp_path / "data", names)
    try:
        pairs = pair_files(folder, folder)
    except DataError:
        return  # refusing the layout is acceptable
    assert all(pair.image != pair.label for pair in pairs)
    expected = {"vol_00.tif": "vol_00_label.tif", "vol_01.tif": "vol_01_label.tif"}
    assert _pairs_by_name(folder, folder) == expected


def test_two_images_with_one_name_are_refused(tmp_path: Path) -> None:
    """`a.tif` and `a.h5` in one folder: which to train on is the user's choice, not voxseg's."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for path in (images / "a.tif", images / "a.h5", labels / "a_label.tif"):
        path.write_bytes(b"")
    with pytest.raises(DataError, match="a.h5 and a.tif .* are both named a"):
        pair_files(images, labels)


# -- --label-name: labels named otherwise than the images ------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("mask_{name}", ["MASK_a.tif", "mask_a_b.tif"]),
        ("{name}_gt", ["a_gt.tiff", "a_b_gt.tif"]),
        ("{name}-seg.tif", ["a-seg.h5", "a_b-seg.tif"]),
        ("{name}", ["a.tif", "a_b.tif"]),
    ],
)
def test_a_label_name_pattern_pairs_prefixes_and_suffixes(
    tmp_path: Path, pattern: str, names: list[str]
) -> None:
    """`{name}` is the image's name; case and the extension do not matter."""
    images = _touch_tiffs(tmp_path / "images", ["a.tif", "a_b.tif"])
    labels = _touch_tiffs(tmp_path / "labels", names)
    pairs = pair_files(images, labels, label_name=label_name_pattern(pattern))
    assert [(p.image.name, p.label.name) for p in pairs] == [("a.tif", names[0]), ("a_b.tif", names[1])]


def test_a_label_name_pattern_replaces_the_automatic_suffixes(tmp_path: Path) -> None:
    images = _touch_tiffs(tmp_path / "images", ["a.tif"])
    labels = _touch_tiffs(tmp_path / "labels", ["a_label.tif"])
    with pytest.raises(DataError, match=r"label names must be mask_\{name\} \(--label-name\)"):
        pair_files(images, labels, label_name="mask_{name}")


def test_a_label_name_pattern_in_one_folder_with_the_images(tmp_path: Path) -> None:
    folder = _touch_tiffs(tmp_path / "data", ["a.tif", "mask_a.tif", "b.tif", "mask_b.tif"])
    pairs = pair_files(folder, folder, label_name="mask_{name}")
    assert [(p.image.name, p.label.name) for p in pairs] == [("a.tif", "mask_a.tif"), ("b.tif", "mask_b.tif")]


def test_the_pairing_error_points_to_label_name_and_guesses_the_pattern(tmp_path: Path) -> None:
    """mask_X.tif for X.tif: the one-line error says which option pairs them, and with what."""
    images = _touch_tiffs(tmp_path / "images", ["vol_1.tif", "vol_2.tif"])
    labels = _touch_tiffs(tmp_path / "labels", ["mask_vol_1.tif", "mask_vol_2.tif"])
    with pytest.raises(DataError) as info:
        pair_files(images, labels)
    message = str(info.value)
    assert "\n" not in message and "for other names give --label-name" in message
    assert message.endswith("these look like --label-name 'mask_{name}')")
    assert len(pair_files(images, labels, label_name="mask_{name}")) == 2


def test_no_pattern_is_guessed_from_names_that_only_look_alike(tmp_path: Path) -> None:
    """`vol_1` is not the name in `vol_10_seg`: no suggestion rather than a wrong one."""
    images = _touch_tiffs(tmp_path / "images", ["vol_1.tif"])
    labels = _touch_tiffs(tmp_path / "labels", ["vol_10_seg.tif"])
    with pytest.raises(DataError) as info:
        pair_files(images, labels)
    assert "look like" not in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("mask_", "must hold {name} once"),
        ("{name}_{name}", "must hold {name} once"),
        ("masks/{name}", "names a folder"),
        ("{name}_{id}", "braces other than {name}"),
    ],
)
def test_bad_label_name_patterns_are_refused_when_the_options_are_checked(pattern: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"--label-name: .*{re.escape(problem)}"):
        TrainConfig(images=Path("i"), labels=Path("l"), label_name=pattern).resolved()
    assert TrainConfig(
        images=Path("i"), labels=Path("l"), label_name="mask_{name}.ome.tif"
    ).resolved().label_name == ("mask_{name}")
