"""Instances from a mask (connected components, watershed), the object table and CSV, Z-slab stitching.

The nuclei are generated here as in the acceptance data (shared/acceptance/lib/make_instances.py):
ellipsoid-ish blobs, radius 4-6.5, about a third touching a neighbour, in 48×64×64 volumes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.measure import label

from voxseg.data.distance import normalised_distance
from voxseg.errors import ConfigError
from voxseg.inference.job.stitching import stitch_tables
from voxseg.inference.model.instances import (
    COLUMNS,
    drop_debris,
    label_instances,
    object_table,
    resolve_method,
    write_object_csv,
)


def touching_nuclei(
    seed: int,
    shape: tuple[int, int, int] = (48, 64, 64),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    cells: int = 24,
    jitter: float = 0.25,
) -> np.ndarray:
    """Instance labels of `cells` ellipsoids (radius 4-6.5 in the units of `spacing`, axes jittered by up
    to ±`jitter`), about a third of them placed touching an earlier one, as make_instances.py does."""
    rng = np.random.default_rng(seed)
    step = np.asarray(spacing, dtype=float)
    extent = np.asarray(shape) * step
    grid = np.stack(
        np.meshgrid(*(np.arange(n) * d for n, d in zip(shape, step, strict=True)), indexing="ij"), -1
    )
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(5000):
        if len(centres) == cells:
            break
        r = rng.uniform(4, 6.5)
        if centres and rng.random() < 0.35:  # touch a neighbour: centre at ~ r + r_other
            j = rng.integers(len(centres))
            direction = rng.normal(size=3)
            c = centres[j] + direction / np.linalg.norm(direction) * (r + radii[j]) * 0.95
        else:
            c = rng.uniform(r, extent - r)
        if np.any(c < r) or np.any(c > extent - r):
            continue
        if any(np.linalg.norm(c - o) < 0.9 * (r + ro) for o, ro in zip(centres, radii, strict=True)):
            continue
        centres.append(c)
        radii.append(r)
    labels = np.zeros(shape, np.int32)
    for k, (c, r) in enumerate(zip(centres, radii, strict=True), start=1):
        axes = r * (1 + jitter * rng.uniform(-1, 1, 3))
        inside = (((grid - c) / axes) ** 2).sum(-1) <= 1
        labels[inside & (labels == 0)] = k
    return labels


def noisy_probability(truth: np.ndarray, seed: int, noise: float) -> np.ndarray:
    """A network-like probability: the blurred true mask plus smooth noise, clipped to [0, 1]."""
    rng = np.random.default_rng(seed + 100)
    blurred = ndi.gaussian_filter((truth > 0).astype(np.float32), 1.0)
    wobble = 2 * noise * ndi.gaussian_filter(rng.normal(size=truth.shape), 1.0)
    return np.clip(blurred + wobble, 0, 1).astype(np.float32)


def f1_at_half(truth: np.ndarray, prediction: np.ndarray) -> float:
    """F1 of a one-to-one matching of objects whose IoU is >= 0.5 (background is not an object)."""
    n_true, n_pred = int(truth.max()), int(prediction.max())
    if n_true + n_pred == 0:
        return 1.0
    joint = np.bincount(
        truth.ravel() * (n_pred + 1) + prediction.ravel(), minlength=(n_true + 1) * (n_pred + 1)
    )
    joint = joint.reshape(n_true + 1, n_pred + 1)
    size_true, size_pred = joint.sum(1), joint.sum(0)
    overlap = joint[1:, 1:]
    iou = overlap / (size_true[1:, None] + size_pred[None, 1:] - overlap)
    rows, cols = linear_sum_assignment(-iou)
    matched = int((iou[rows, cols] >= 0.5).sum())
    return 2 * matched / (n_true + n_pred)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images split the voxels identically, up to a renaming of the ids (0 stays 0)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    one_to_one = pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))
    background = np.array_equal(a == 0, b == 0)
    return bool(one_to_one and background)


def test_f1_helper_scores_merges_and_perfect_matches() -> None:
    """The scorer itself: identical labels 1.0; three equal objects merged: none matched (IoU 1/3)."""
    truth = np.zeros((4, 4, 9), np.int32)
    truth[:, :, :3], truth[:, :, 3:6], truth[:, :, 6:] = 1, 2, 3
    merged = (truth > 0).astype(np.int32)
    assert f1_at_half(truth, truth) == 1.0
    assert f1_at_half(truth, merged) == 0.0
    truth[:, :, :3], truth[:, :, 3:] = 1, 2  # now the larger one (IoU 6/9) matches the merged object
    assert f1_at_half(truth, merged) == pytest.approx(2 / 3)


# -- label_instances ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_watershed_splits_touching_nuclei_that_connected_components_merge(seed: int) -> None:
    """On the true mask, watershed recovers nearly every nucleus; connected components merge touching ones."""
    truth = touching_nuclei(seed)
    mask = truth > 0
    connected = label_instances(mask, "connected")
    assert connected.max() < truth.max() - 5  # the data has touching nuclei, or this test proves nothing
    f1_connected = f1_at_half(truth, connected)
    f1_watershed = f1_at_half(truth, label_instances(mask, "watershed"))
    # measured: seed 0 connected 0.457, watershed 0.979; seed 1 connected 0.595, watershed 0.979
    assert f1_watershed >= 0.95
    assert f1_watershed > f1_connected + 0.3


def test_watershed_on_a_noisy_thresholded_probability() -> None:
    """A rough mask from a noisy probability (given to watershed too): still far better than connected."""
    truth = touching_nuclei(2)
    probability = noisy_probability(truth, 2, noise=0.4)
    mask = probability > 0.5
    f1_connected = f1_at_half(truth, label_instances(mask, "connected", min_size=30))
    f1_watershed = f1_at_half(truth, label_instances(mask, "watershed", probability, min_size=30))
    # measured: connected 0.541, watershed 0.979
    assert f1_watershed >= 0.93
    assert f1_watershed > f1_connected + 0.3


def test_watershed_measures_distance_with_the_spacing() -> None:
    """Nuclei sampled with Z steps twice the XY pixel are split best with the spacing given."""
    spacing = (2.0, 1.0, 1.0)
    scores = {"spacing": [], "no spacing": [], "connected": []}
    for seed in range(4):
        truth = touching_nuclei(seed, shape=(24, 64, 64), spacing=spacing)
        mask = truth > 0
        scores["spacing"].append(f1_at_half(truth, label_instances(mask, "watershed", spacing=spacing)))
        scores["no spacing"].append(f1_at_half(truth, label_instances(mask, "watershed")))
        scores["connected"].append(f1_at_half(truth, label_instances(mask, "connected", spacing=spacing)))
    mean = {name: float(np.mean(values)) for name, values in scores.items()}
    # measured (seeds 0-3): with spacing 0.990, spacing left at (1, 1, 1) 0.933, connected 0.495
    assert mean["spacing"] >= 0.97
    assert mean["spacing"] > mean["no spacing"] + 0.03
    assert mean["spacing"] > mean["connected"] + 0.3


def test_watershed_uses_the_probability_dip_between_pressed_nuclei() -> None:
    """Two nuclei pressed flat together (a 10×10×20 block) have no distance saddle; a probability that
    drops to half on their contact planes splits them in the middle."""
    mask = np.zeros((14, 14, 24), bool)
    mask[2:12, 2:12, 2:22] = True
    probability = mask.astype(np.float32)
    probability[:, :, 11:13] *= 0.5
    assert label_instances(mask, "watershed").max() == 1
    labels = label_instances(mask, "watershed", probability)
    assert labels.max() == 2
    assert np.bincount(labels.ravel())[1:].tolist() == [1000, 1000]


def test_connected_components_join_voxels_that_meet_at_a_corner() -> None:
    """Full connectivity: rim voxels attached by an edge or corner are not chipped off as specks."""
    mask = np.zeros((4, 4, 4), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = mask[1, 2, 1] = mask[3, 3, 1] = True
    assert label_instances(mask, "connected").max() == 1


def _ellipsoid(axes: tuple[float, float, float], margin: int = 4) -> np.ndarray:
    shape = tuple(int(2 * a) + 2 * margin for a in axes)
    grid = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in shape), indexing="ij")
    return sum((g / a) ** 2 for g, a in zip(grid, axes, strict=True)) <= 1


@pytest.mark.parametrize("axes", [(4, 4, 4), (6, 6, 6), (8, 8, 8), (5, 5, 10), (9, 6, 6)])
def test_watershed_does_not_split_a_single_nucleus(axes: tuple[float, float, float]) -> None:
    """Spheres of radius 4-8 and ellipsoids of aspect up to 2 stay one object, covering the whole mask."""
    mask = _ellipsoid(axes)
    labels = label_instances(mask, "watershed")
    assert labels.max() == 1
    assert np.array_equal(labels > 0, mask)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_watershed_does_not_split_a_nucleus_with_a_rough_surface(seed: int) -> None:
    """Bumps of a noisy threshold do not seed objects of their own (with or without the probability)."""
    truth = _ellipsoid((6, 6, 9)).astype(np.int32)
    probability = noisy_probability(truth, seed, noise=0.4)
    mask = probability > 0.5
    assert np.count_nonzero(mask != (truth > 0)) > 100  # the surface did change
    assert label_instances(mask, "connected", min_size=30).max() == 1  # but the nucleus is one piece
    assert label_instances(mask, "watershed", min_size=30).max() == 1
    assert label_instances(mask, "watershed", probability, min_size=30).max() == 1


def test_watershed_labels_every_mask_voxel_even_specks_without_a_peak() -> None:
    """A 2-voxel speck has no distance peak h high; it still gets a label, and min_size is what drops it."""
    mask = _ellipsoid((6, 6, 6))
    mask[0, 0, :2] = True
    labels = label_instances(mask, "watershed")
    assert np.array_equal(labels > 0, mask) and labels.max() == 2
    filtered = label_instances(mask, "watershed", min_size=3)
    assert filtered.max() == 1 and filtered[0, 0, 0] == 0


def _boxes(sides: list[int]) -> np.ndarray:
    """Separate cubes of the given sides along X, in that order."""
    volume = np.zeros((8, 8, sum(side + 2 for side in sides)), bool)
    x = 1
    for side in sides:
        volume[1 : 1 + side, 1 : 1 + side, x : x + side] = True
        x += side + 2
    return volume


@pytest.mark.parametrize("method", ["connected", "watershed"])
def test_size_filters_and_consecutive_ids(method: str) -> None:
    """Objects outside [min_size, max_size] voxels go; the rest are 1..N in their old order, uint32."""
    mask = _boxes([1, 2, 3, 4, 5])  # 1, 8, 27, 64, 125 voxels
    everything = label_instances(mask, method)  # (watershed numbers objects by its seeds, not along X)
    assert sorted(np.bincount(everything.ravel())[1:].tolist()) == [1, 8, 27, 64, 125]
    kept = label_instances(mask, method, min_size=8, max_size=64)
    assert kept.dtype == np.uint32
    assert np.unique(kept).tolist() == [0, 1, 2, 3]
    assert sorted(np.bincount(kept.ravel())[1:].tolist()) == [8, 27, 64]
    if method == "connected":  # the kept objects keep their order
        assert np.bincount(kept.ravel())[1:].tolist() == [8, 27, 64]
    assert label_instances(mask, method, min_size=126).max() == 0


def test_ids_are_consecutive_after_watershed_and_filtering() -> None:
    labels = label_instances(touching_nuclei(3) > 0, "watershed", min_size=300)
    ids = np.unique(labels)
    assert len(ids) > 5 and np.array_equal(ids, np.arange(len(ids)))


def test_anisotropic_spacing_is_accepted_by_both_methods() -> None:
    mask = _ellipsoid((3, 6, 6))
    for method in ("connected", "watershed"):
        assert label_instances(mask, method, spacing=(2.0, 0.5, 0.5)).max() == 1


def test_bad_arguments_are_refused() -> None:
    mask = _boxes([3])
    with pytest.raises(ValueError, match="connected, watershed, distance"):
        label_instances(mask, "stardist")
    with pytest.raises(ValueError, match="spacing"):
        label_instances(mask, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        label_instances(mask, spacing=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="probability shape"):
        label_instances(mask, probability=np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="min_size"):
        label_instances(mask, min_size=10, max_size=5)


# -- the distance output's instances ---------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_distance_seeds_one_object_per_centre_even_where_the_mask_joins_nuclei(seed: int) -> None:
    """Pressed nuclei whose masks merge into blobs: the distance a network learned (here the target
    itself, blurred and noisy as a prediction) parts them where the watershed of the mask cannot."""
    truth = touching_nuclei(seed, jitter=0.4)
    mask = ndi.binary_dilation(truth > 0, iterations=1)  # a mask a little fat, as predicted
    distance = ndi.gaussian_filter(normalised_distance(truth, radius=5.25), 1.0)
    distance += np.random.default_rng(seed).normal(0, 0.02, truth.shape).astype(np.float32)
    by_distance = label_instances(mask, "distance", distance=distance, min_size=30)
    by_mask = label_instances(mask, "watershed", min_size=30)
    # measured: seed 0 distance 1.0, watershed 0.844; seed 1 distance 1.0, watershed 0.889
    assert f1_at_half(truth, by_distance) >= 0.95
    assert f1_at_half(truth, by_distance) > f1_at_half(truth, by_mask) + 0.05


def test_distance_drops_a_part_of_the_mask_with_no_centre() -> None:
    """A bright wall is foreground to a mask but has no centre: no object (the watershed keeps it)."""
    mask = np.zeros((20, 40, 40), bool)
    mask[4:16, 4:16, 4:16] = True  # a nucleus
    mask[2:18, 30:32, 2:38] = True  # a thin wall
    distance = normalised_distance(label(mask[:, :, :20], connectivity=3), radius=6).astype(np.float32)
    distance = np.pad(distance, ((0, 0), (0, 0), (0, 20)))
    distance[mask & (np.arange(40) >= 20)[None, None]] = 0.0
    distance[2:18, 30:32] = 0.05  # the wall: faint and flat
    labels = label_instances(mask, "distance", distance=distance)
    assert labels.max() == 1 and labels[10, 10, 10] == 1 and not labels[10, 31].any()
    assert label_instances(mask, "watershed").max() >= 2


def test_auto_picks_the_method_the_run_was_trained_for() -> None:
    assert resolve_method("auto", ("foreground", "distance")) == "distance"
    assert resolve_method("auto", ("foreground",)) == "watershed"
    assert resolve_method("connected", ("foreground", "distance")) == "connected"
    with pytest.raises(ConfigError, match="no distance output"):
        resolve_method("distance", ("foreground",))
    with pytest.raises(ValueError, match="distance map"):
        label_instances(_boxes([3]), "distance")


# -- object_table and its CSV ---------------------------------------------------------------------


def _two_boxes() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((10, 12, 14), np.uint32)
    labels[1:3, 2:5, 3:7] = 1  # 2×3×4 = 24 voxels
    labels[5:9, 6:8, 10:11] = 7  # 4×2×1 = 8 voxels; ids need not be consecutive
    probability = np.zeros(labels.shape, np.float32)
    probability[1, 2:5, 3:7] = 0.6
    probability[2, 2:5, 3:7] = 1.0  # box 1: mean 0.8
    probability[5:9, 6:8, 10] = 0.25
    return labels, probability


def test_object_table_values() -> None:
    labels, probability = _two_boxes()
    rows = object_table(labels, probability=probability, spacing=(2.0, 0.5, 0.25))
    assert [list(row) for row in rows] == [list(COLUMNS)] * 2
    first, second = rows
    assert first["id"] == 1 and first["voxels"] == 24
    assert first["volume_um3"] == pytest.approx(24 * 0.25)
    assert [first[f"centroid_{axis}_px"] for axis in "zyx"] == pytest.approx([1.5, 3.0, 4.5])
    assert [first[f"centroid_{axis}_um"] for axis in "zyx"] == pytest.approx([3.0, 1.5, 1.125])
    bbox = [first[f"bbox_{axis}_{end}"] for axis in "zyx" for end in ("start", "stop")]
    assert bbox == [1, 3, 2, 5, 3, 7]  # the stop is exclusive, as in a slice
    box = tuple(slice(first[f"bbox_{axis}_start"], first[f"bbox_{axis}_stop"]) for axis in "zyx")
    assert (labels[box] == 1).all() and (labels == 1).sum() == first["voxels"]
    assert first["mean_probability"] == pytest.approx(0.8)
    assert second["id"] == 7 and second["voxels"] == 8
    assert second["volume_um3"] == pytest.approx(8 * 0.25)
    assert [second[f"centroid_{axis}_px"] for axis in "zyx"] == pytest.approx([6.5, 6.5, 10.0])
    assert second["mean_probability"] == pytest.approx(0.25)
    assert all(type(value) in (int, float) for row in rows for value in row.values())


def test_object_table_values_carry_no_binary_noise() -> None:
    """0.4 µm × 0.4 µm × 1 µm voxels: 7980 × 0.16000000000000003 is 1276.8000000000002 unrounded."""
    labels = np.zeros((20, 21, 40), np.uint32)
    labels[:19, :21, :20] = 1  # 7980 voxels
    labels[0, 0, 30:33] = 2  # centroid x 31, or 12.4 µm; 31 * 0.4 is 12.400000000000002
    labels[1, 1, 21:23] = 3  # centroid z 4/3, x 21 1/3: rounded to a thousandth of a voxel
    labels[2, 1, 21] = 3
    first, second, third = object_table(labels, spacing=(1.0, 0.4, 0.4))
    assert 7980 * (0.4 * 0.4 * 1.0) != 1276.8 and first["volume_um3"] == 1276.8
    assert second["centroid_x_um"] == 12.4 and second["centroid_x_px"] == 31.0
    assert (third["centroid_z_px"], third["centroid_y_px"], third["centroid_x_px"]) == (1.333, 1.0, 21.333)
    assert (third["centroid_z_um"], third["centroid_x_um"]) == (1.333, 8.5333)
    tiny = object_table(labels, spacing=(0.01, 0.002, 0.002))[1]  # finer voxels keep their digits
    assert tiny["volume_um3"] == pytest.approx(3 * 4e-8) and tiny["volume_um3"] > 0
    assert tiny["centroid_x_um"] == 0.062


def test_object_table_without_spacing_or_probability() -> None:
    labels, _ = _two_boxes()
    rows = object_table(labels)
    assert [row["voxels"] for row in rows] == [24, 8]
    assert all(row["volume_um3"] is None and row["mean_probability"] is None for row in rows)
    assert all(row[f"centroid_{axis}_um"] is None for row in rows for axis in "zyx")
    assert object_table(np.zeros((3, 3, 3), np.uint32)) == []
    with pytest.raises(ValueError, match="probability shape"):
        object_table(labels, probability=np.ones((2, 2, 2)))


def test_object_csv_round_trip(tmp_path: Path) -> None:
    labels, probability = _two_boxes()
    rows = object_table(labels, probability=probability, spacing=(2.0, 0.5, 0.25))
    path = tmp_path / "objects.csv"
    assert write_object_csv(path, rows) == path
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert [list(row) for row in read] == [list(COLUMNS)] * 2
    for original, back in zip(rows, read, strict=True):
        assert {key: float(value) for key, value in back.items()} == pytest.approx(original)
    without = object_table(labels)  # None is written as an empty field
    write_object_csv(path, without)
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert read[0]["volume_um3"] == "" and read[0]["mean_probability"] == "" and read[0]["voxels"] == "24"
    assert [p.name for p in tmp_path.iterdir()] == ["objects.csv"]  # no temporary file left beside it


def test_object_csv_of_no_objects_has_the_header(tmp_path: Path) -> None:
    path = write_object_csv(tmp_path / "none.csv", [])
    assert path.read_text().strip() == ",".join(COLUMNS)


def test_object_csv_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    """A write that fails half way leaves the previous table whole and no temporary file."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot format")

    path = tmp_path / "objects.csv"
    path.write_text("old\n")
    rows = [{"id": 1, "voxels": 3}, {"id": 2, "voxels": Unprintable()}]
    with pytest.raises(RuntimeError, match="cannot format"):
        write_object_csv(path, rows)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["objects.csv"]


# -- stitching Z slabs ----------------------------------------------------------------------------


def _blobs(seed: int, shape: tuple[int, int, int] = (30, 40, 40)) -> np.ndarray:
    """Irregular, branching foreground (smoothed noise above a level): many objects cross any Z cut."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=shape), 2.0)
    return field > np.quantile(field, 0.85)


def stitch_slabs(slabs: list[np.ndarray], connectivity: int = 3, min_overlap: float = 0.0) -> np.ndarray:
    """The slabs stacked along Z as one label image, through `stitch_tables`' renaming."""
    tables = stitch_tables(slabs, connectivity, min_overlap)
    return np.concatenate([table[slab] for table, slab in zip(tables, slabs, strict=True)])


@pytest.mark.parametrize("cuts", [[15], [1, 17], [8, 9, 20]])
def test_stitched_slabs_equal_labelling_the_whole_volume(cuts: list[int]) -> None:
    """Slabs labelled one by one, then stitched, give the whole volume's objects (ids up to a renaming)."""
    mask = _blobs(0)
    whole = label_instances(mask, "connected")
    slabs = [label_instances(part, "connected") for part in np.split(mask, cuts)]
    assert sum(int(s.max()) for s in slabs) > whole.max() + 5  # the cuts did cut objects
    stitched = stitch_slabs(slabs)
    assert stitched.dtype == np.uint32 and stitched.shape == mask.shape
    assert same_partition(stitched, whole)
    assert np.array_equal(np.unique(stitched), np.arange(whole.max() + 1))


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_stitching_follows_the_connectivity_of_the_labelling(connectivity: int) -> None:
    mask = _blobs(1)
    whole = label(mask, connectivity=connectivity)
    slabs = [label(part, connectivity=connectivity) for part in np.split(mask, [10, 21])]
    assert same_partition(stitch_slabs(slabs, connectivity=connectivity), whole)


def test_objects_touching_only_diagonally_across_a_cut() -> None:
    """Joined at a corner with full connectivity, separate with faces only, as whole-volume labels are."""
    mask = np.zeros((4, 5, 5), bool)
    mask[:2, 1, 1] = True
    mask[2:, 2, 2] = True  # meets the first only at a corner, between planes 1 and 2
    slabs = [label(part, connectivity=3) for part in np.split(mask, [2])]
    assert stitch_slabs(slabs, connectivity=3).max() == 1
    assert stitch_slabs(slabs, connectivity=1).max() == 2


def test_watershed_slabs_stitch_better_with_min_overlap() -> None:
    """Watershed labels of slabs: joining any contact merges neighbours cut by the border; 0.5 does not."""
    truth = touching_nuclei(2)
    slabs = [label_instances(part, "watershed") for part in np.split(truth > 0, [16, 32])]
    any_contact = f1_at_half(truth, stitch_slabs(slabs))
    overlapping = f1_at_half(truth, stitch_slabs(slabs, min_overlap=0.5))
    # measured: any contact 0.864, min_overlap 0.5 0.957 (the whole volume at once: 1.000)
    assert overlapping >= 0.93
    assert overlapping > any_contact + 0.05


def test_stitch_tables_number_along_z_and_skip_empty_slabs() -> None:
    top = np.zeros((2, 4, 6), np.uint32)
    top[:, 0, 0] = 1  # ends at the cut
    top[1, 2, 2:4] = 2  # continues below
    middle = np.zeros((2, 4, 6), np.uint32)  # nothing in it: cuts it separates nothing
    middle[:, 2, 2] = 5  # ids need not be consecutive
    bottom = np.zeros((3, 4, 6), np.uint32)
    bottom[0, 2, 2] = 1
    bottom[0, 3, 5] = 2
    tables = stitch_tables([top, middle, bottom])
    assert tables[0].tolist() == [0, 1, 2]
    assert tables[1].tolist() == [0, 0, 0, 0, 0, 2]
    assert tables[2].tolist() == [0, 2, 3]
    empty = np.zeros((3, 4, 6), np.uint32)
    assert [t.tolist() for t in stitch_tables([top, empty, bottom])] == [[0, 1, 2], [0], [0, 3, 4]]
    assert stitch_tables([]) == []


def test_min_overlap_keeps_neighbours_that_only_graze_the_cut_apart() -> None:
    """A cut nucleus overlaps itself; neighbours touching across the cut by a sliver or corner do not."""
    above = np.zeros((1, 10, 10), np.uint32)
    above[0, 1:5, 1:5] = 1  # 16 voxels on the cut
    above[0, 6:9, 1:9] = 2  # 24 voxels on the cut
    below = np.zeros((1, 10, 10), np.uint32)
    below[0, 1:5, 1:5] = 1  # the rest of object 1: all of its face overlaps
    below[0, 8:10, 7:9] = 2  # 2 of its 4 face voxels lie across from object 2
    below[0, 0, 5:7] = 3  # meets object 1 only at a corner: no face overlap
    assert stitch_slabs([above, below]).max() == 2  # any contact joins (full connectivity)
    assert stitch_slabs([above, below], connectivity=1).max() == 3  # faces only: not the corner
    assert stitch_slabs([above, below], min_overlap=0.5).max() == 3  # half of the smaller face is enough
    apart = stitch_slabs([above, below], min_overlap=0.6)
    assert apart.max() == 4
    assert apart[0, 2, 2] == apart[1, 2, 2]


def test_stitching_refuses_mismatched_slabs() -> None:
    with pytest.raises(ValueError, match="same Y, X"):
        stitch_slabs([np.zeros((2, 4, 4), np.uint32), np.zeros((2, 4, 5), np.uint32)])
    with pytest.raises(ValueError, match="connectivity"):
        stitch_slabs([np.zeros((2, 4, 4), np.uint32)], connectivity=0)


def test_drop_debris_keeps_objects_of_at_least_the_share_of_a_typical_object_and_renumbers() -> None:
    sizes = np.array([999, 1000, 90, 1200, 0, 100, 800])  # id 0 is background; id 4 has no voxels
    # half of the 2190 object voxels lie in objects up to 1000 voxels: 90 < 95 <= 100
    assert drop_debris(sizes, 0.095).tolist() == [0, 1, 0, 2, 0, 3, 4]
    assert drop_debris(sizes, 0.0).tolist() == [0, 1, 2, 3, 0, 4, 5]
    assert drop_debris(np.array([5]), 0.1).tolist() == [0]  # no objects at all


def test_drop_debris_is_not_fooled_by_specks_that_outnumber_the_nuclei() -> None:
    sizes = np.array([0] + [2] * 20 + [1500, 2000, 2500])  # the median object is a 2-voxel speck
    assert drop_debris(sizes, 0.1).tolist() == [0] * 21 + [1, 2, 3]


def test_drop_debris_keeps_what_the_volume_edge_cuts() -> None:
    sizes = np.array([0, 3000, 40000, 50000, 30])
    cut = np.array([False, True, False, False, False])  # object 1 touches the volume's edge
    assert drop_debris(sizes, 0.1).tolist() == [0, 0, 1, 2, 0]
    assert drop_debris(sizes, 0.1, cut).tolist() == [0, 1, 2, 3, 0]


def test_the_watershed_scales_to_the_object_size() -> None:
    """Small touching nuclei: the defaults (measured on radius 4-6.5) smooth their saddles away;
    scaled to their radius every one is found. Unknown radius: the defaults."""
    from voxseg.inference.model.instances import SMOOTHING, H, watershed_scale

    assert watershed_scale(None) == (H, SMOOTHING)
    shape = (12, 12, 60)
    grid = np.indices(shape)
    truth = np.zeros(shape, np.int32)
    for index, x in enumerate(range(4, 56, 4), start=1):
        ball = ((grid - np.array([6, 6, x])[:, None, None, None]) ** 2).sum(0) <= 2.5**2
        truth[ball & (truth == 0)] = index
    mask = truth > 0
    merged = label_instances(mask, "watershed")
    h, smoothing = watershed_scale(2.5)
    found = label_instances(mask, "watershed", h=h, smoothing=smoothing)
    assert merged.max() < truth.max() == found.max()
