"""Label maps: what each label value means (background, foreground, not annotated) and what is scored."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.data.labels import BACKGROUND, FOREGROUND, IGNORED, LabelMap, scored
from voxseg.errors import ConfigError, DataError

SPARSE = "0:ignore,1:background,2:foreground"

# --- parse and str ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, ""])
def test_default_map_is_background_zero_and_foreground_above(text: str | None) -> None:
    label_map = LabelMap.parse(text)
    assert label_map.is_default and label_map == LabelMap()
    assert str(label_map) == "0:background,*:foreground"
    assert not label_map.has_ignored


def test_spelled_out_default_is_default() -> None:
    assert LabelMap.parse("0:background,*:foreground").is_default


def test_sparse_map_round_trips_through_str() -> None:
    label_map = LabelMap.parse(SPARSE)
    assert label_map.values == ((0, IGNORED), (1, BACKGROUND), (2, FOREGROUND)) and label_map.others is None
    assert str(label_map) == SPARSE and not label_map.is_default
    assert LabelMap.parse(str(label_map)) == label_map


@pytest.mark.parametrize(
    "text",
    [
        "0:ignored,1:bg,2:fg",
        " 0 : Ignore , 1:BACKGROUND,2 :Foreground ",
        "2:foreground,0:unlabelled,1:background",
    ],
)
def test_aliases_spaces_case_and_order(text: str) -> None:
    """Aliases, spaces, case and the order of entries do not change the map."""
    assert LabelMap.parse(text) == LabelMap.parse(SPARSE)
    assert str(LabelMap.parse(text)) == SPARSE


def test_star_gives_the_class_of_unlisted_values() -> None:
    label_map = LabelMap.parse("1:foreground,*:ignore")
    assert label_map.values == ((1, FOREGROUND),) and label_map.others == IGNORED
    assert str(label_map) == "1:foreground,*:ignore" and label_map.has_ignored


def test_ignore_label_is_added_to_the_default_map() -> None:
    label_map = LabelMap.parse(None, ignore_label=5)
    assert label_map.values == ((0, BACKGROUND), (5, IGNORED)) and label_map.others == FOREGROUND
    assert str(label_map) == "0:background,5:ignore,*:foreground"
    assert label_map.has_ignored and not label_map.is_default


def test_ignore_label_is_added_to_a_given_map() -> None:
    label_map = LabelMap.parse("1:background,2:foreground", ignore_label=0)
    assert label_map == LabelMap.parse(SPARSE)
    # naming the same value ignore twice is no conflict
    assert LabelMap.parse(SPARSE, ignore_label=0) == LabelMap.parse(SPARSE)


@pytest.mark.parametrize(
    ("text", "ignore_label", "message"),
    [
        ("1:foreground", 1, "already maps it to foreground"),
        (None, 0, "already maps it to background"),
        (None, -1, ">= 0"),
    ],
)
def test_ignore_label_conflicts(text: str | None, ignore_label: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        LabelMap.parse(text, ignore_label=ignore_label)
    assert "--ignore-label" in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0:background,1:ignore", "no value is mapped to foreground"),
        ("0:background,1:cell", "'1:cell' is not VALUE:CLASS"),
        ("1", "'1' is not VALUE:CLASS"),
        ("one:foreground", "'one' is not a whole number"),
        ("1.5:foreground", "'1.5' is not a whole number"),
        ("-1:foreground", "-1 is negative or given twice"),
        ("1:foreground,1:background", "1 is negative or given twice"),
    ],
)
def test_bad_maps_are_config_errors_naming_the_option(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        LabelMap.parse(text, option="--val-label-map")
    assert str(error.value).startswith("--val-label-map:")


# --- classes ------------------------------------------------------------------------------------


def test_default_map_on_instance_labels() -> None:
    raw = np.array([[[0, 1, 2, 65535]]], np.uint16)
    classes = LabelMap().classes(raw, "x.tif")
    assert classes.dtype == np.uint8
    np.testing.assert_array_equal(classes, [[[0, 1, 1, 1]]])


def test_sparse_map_classes() -> None:
    raw = np.array([0, 1, 2, 2, 0, 1], np.uint16).reshape(1, 2, 3)
    classes = LabelMap.parse(SPARSE).classes(raw, "x.tif")
    assert classes.dtype == np.uint8
    np.testing.assert_array_equal(
        classes.ravel(), [IGNORED, BACKGROUND, FOREGROUND, FOREGROUND, IGNORED, BACKGROUND]
    )


def test_a_value_the_map_does_not_cover_names_the_file_and_value() -> None:
    raw = np.array([0, 1, 2, 7, 7], np.uint16)
    with pytest.raises(DataError, match=r"labels/a\.tif: label values 7 are not in --label-map") as error:
        LabelMap.parse(SPARSE).classes(raw, "labels/a.tif")
    assert SPARSE in str(error.value)


def test_many_uncovered_values_are_shortened() -> None:
    raw = np.arange(20, dtype=np.uint16)
    with pytest.raises(DataError, match=r"label values 3, 4, 5, 6, 7 …") as error:
        LabelMap.parse(SPARSE).classes(raw, "a.tif")
    assert "8" not in str(error.value).split("label values")[1].split("are not")[0]


def test_large_uncovered_values_are_shown_exactly() -> None:
    """uint32 instance ids above a million must be named as they are, not rounded to 6 digits."""
    raw = np.array([0, 1, 2, 1_000_001], np.uint32)
    with pytest.raises(DataError, match="1000001"):
        LabelMap.parse(SPARSE).classes(raw, "a.tif")


def test_star_covers_the_rest() -> None:
    raw = np.array([0, 1, 2, 3, 900], np.uint16)
    classes = LabelMap.parse("0:ignore,1:background,*:foreground").classes(raw, "a.tif")
    np.testing.assert_array_equal(classes, [IGNORED, BACKGROUND, FOREGROUND, FOREGROUND, FOREGROUND])
    classes = LabelMap.parse("2:foreground,*:ignore").classes(raw, "a.tif")
    np.testing.assert_array_equal(classes, [IGNORED, IGNORED, FOREGROUND, IGNORED, IGNORED])


def test_ignore_label_on_the_default_map_classes() -> None:
    raw = np.array([0, 1, 5, 6], np.uint16)
    classes = LabelMap.parse(None, ignore_label=5).classes(raw, "a.tif")
    np.testing.assert_array_equal(classes, [BACKGROUND, FOREGROUND, IGNORED, FOREGROUND])


@pytest.mark.parametrize(
    ("text", "ignore_label", "expected"),
    [
        (None, None, False),
        ("0:background,*:foreground", None, False),
        ("1:background,2:foreground", None, False),
        (SPARSE, None, True),
        ("1:foreground,*:ignore", None, True),
        (None, 3, True),
    ],
)
def test_has_ignored(text: str | None, ignore_label: int | None, expected: bool) -> None:
    assert LabelMap.parse(text, ignore_label).has_ignored is expected


# --- scored -------------------------------------------------------------------------------------


def test_scored_keeps_every_voxel_of_dense_labels() -> None:
    probability = np.array([0.1, 0.9, 0.4], np.float32)
    classes = np.array([BACKGROUND, FOREGROUND, BACKGROUND], np.uint8)
    kept, truth = scored(probability, classes)
    np.testing.assert_array_equal(kept, probability)
    np.testing.assert_array_equal(truth, [False, True, False])
    assert truth.dtype == bool


def test_scored_leaves_out_the_ignored_voxels() -> None:
    probability = np.array([[0.1, 0.9], [0.4, 0.7]], np.float32)
    classes = np.array([[IGNORED, FOREGROUND], [BACKGROUND, IGNORED]], np.uint8)
    kept, truth = scored(probability, classes)
    np.testing.assert_array_equal(kept, np.array([0.9, 0.4], np.float32))
    np.testing.assert_array_equal(truth, [True, False])


def test_instance_ids_under_a_class_map_are_named_as_such() -> None:
    """A class map (the sparse one copied from the docs) given instance labels: say what they look like."""
    raw = np.arange(40, dtype=np.uint16)
    hint = r"37 values left out: instance ids, one per object\? Without --label-map"
    with pytest.raises(DataError, match=hint):
        LabelMap.parse(SPARSE).classes(raw, "a.tif")


def test_a_class_the_map_leaves_out_is_not_called_instance_ids() -> None:
    raw = np.array([0, 1, 2, 3], np.uint8)
    hint = r"not in --label-map 0:background,1:foreground \(add VALUE:CLASS"
    with pytest.raises(DataError, match=hint) as error:
        LabelMap.parse("0:background,1:foreground").classes(raw, "a.tif")
    assert "instance" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "ignore_label", "expected"),
    [(None, None, (BACKGROUND, FOREGROUND, FOREGROUND)), (SPARSE, None, (IGNORED, BACKGROUND, FOREGROUND)),
     ("1:foreground", None, (None, FOREGROUND, None)), (None, 2, (BACKGROUND, FOREGROUND, IGNORED))],
)  # fmt: skip
def test_class_of(text: str | None, ignore_label: int | None, expected: tuple[int | None, ...]) -> None:
    label_map = LabelMap.parse(text, ignore_label)
    assert tuple(label_map.class_of(value) for value in (0, 1, 2)) == expected
