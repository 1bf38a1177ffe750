"""Instances of large masks, labelled slab by slab: ids unique and consistent across slab borders,
the same for any number of ranks sharing the slabs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from voxseg.inference.job.block_instances import InstanceOptions, label_slabs
from voxseg.inference.job.blocks import VolumePlan
from voxseg.inference.job.journal import Journal, WorkArrays
from voxseg.inference.model.instances import label_instances, object_table, table_row
from voxseg.io.writers import create_volume, planes_of
from voxseg.runtime.distributed import Parallel


def label_in_slabs(
    folder: Path,
    mask: np.ndarray,
    method: str,
    slab_voxels: int = 10**9,
    spacing=None,
    min_relative_size: float = 0.0,
    parallel: Parallel | None = None,
) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """(rows, labels, final mask) of a thresholded mask, through the journal's arrays as predict has them."""
    plan = VolumePlan.of(mask.shape, slab_voxels)
    journal = Journal(folder / ".voxseg-partial-m")
    work = WorkArrays("m_mask.tif", "thresholded.tif", None, "local.tif", "m_labels.tif")
    journal.begin({})
    for name, dtype in ((work.thresholded, np.uint8), (work.local, np.uint32)):
        create_volume(journal / name, mask.shape, dtype, None, plan.chunks)
    with planes_of(journal / work.thresholded) as out:
        out[0 : mask.shape[0]] = mask.astype(np.uint8)
    options = InstanceOptions(method, 0, None, min_relative_size, spacing, None)
    rows = [
        table_row(row, spacing) for row in label_slabs(options, plan, journal, work, parallel or Parallel())
    ]
    return rows, tifffile.imread(journal / work.labels), tifffile.imread(journal / work.mask)


def _blobs(shape: tuple[int, int, int], count: int, seed: int) -> np.ndarray:
    """Separate balls of radius 3-5, some crossing every slab border."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    mask = np.zeros(shape, bool)
    for _ in range(count):
        centre = rng.uniform(5, np.array(shape) - 5)
        mask |= ((grid - centre[:, None, None, None]) ** 2).sum(0) <= rng.uniform(3, 5) ** 2
    return mask


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """The same objects, whatever their ids."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


@pytest.mark.parametrize("slab_voxels", [10**9, 12 * 40 * 40, 5 * 40 * 40])
def test_slabs_give_the_whole_volumes_connected_components(tmp_path: Path, slab_voxels: int) -> None:
    mask = _blobs((36, 40, 40), 25, seed=0)
    rows, labels, _ = label_in_slabs(tmp_path, mask, "connected", slab_voxels, spacing=(2.0, 1.0, 1.0))
    whole = label_instances(mask, "connected")
    assert _same_partition(labels, whole)
    assert sorted(np.unique(labels)[1:]) == list(range(1, whole.max() + 1))  # ids 1..N, each once
    expected = {row["voxels"]: row for row in object_table(whole, spacing=(2.0, 1.0, 1.0))}
    for row in rows:  # rows merged across slabs equal the whole volume's (matched by size here)
        match = expected[row["voxels"]]
        assert row == match


def test_watershed_in_slabs_keeps_nuclei_whole_across_borders(tmp_path: Path) -> None:
    mask = _blobs((36, 40, 40), 12, seed=3)
    _, labels, _ = label_in_slabs(tmp_path, mask, "watershed", 8 * 40 * 40)
    whole = label_instances(mask, "watershed")
    assert abs(int(labels.max()) - int(whole.max())) <= 1  # a tip cut by a border may split differently


def test_the_predictor_writes_the_table_it_stitched(tmp_path: Path) -> None:
    mask = _blobs((20, 30, 30), 6, seed=1)
    rows, _, _ = label_in_slabs(tmp_path, mask, "connected", 5 * 30 * 30)
    from voxseg.inference.model.instances import write_object_csv

    write_object_csv(tmp_path / "objects.csv", rows)
    with open(tmp_path / "objects.csv") as handle:
        assert [int(r["id"]) for r in csv.DictReader(handle)] == list(range(1, len(rows) + 1))


@pytest.mark.parametrize("slab_voxels", [10**9, 6 * 40 * 40])
def test_debris_below_a_share_of_a_typical_object_is_dropped_from_labels_and_mask_across_slabs(
    tmp_path: Path, slab_voxels: int
) -> None:
    grid = np.indices((30, 40, 40))
    mask = np.zeros((30, 40, 40), bool)
    for centre in ((8, 10, 10), (15, 28, 12), (22, 12, 28), (15, 30, 30)):  # nuclei of ~500 voxels
        mask |= ((grid - np.array(centre)[:, None, None, None]) ** 2).sum(0) <= 5**2
    mask[2:4, 35:37, 2:4] = True  # a speck of 8 voxels
    mask[12:18, 2, 36] = True  # a sliver of 6 voxels crossing slab borders
    mask[27:, 37:, 37:] = True  # 27 voxels of a nucleus that the volume's last plane and corner cut: kept
    kept, _, _ = label_in_slabs(tmp_path / "kept", mask, "connected", slab_voxels)
    rows, labels, cleaned = label_in_slabs(tmp_path, mask, "connected", slab_voxels, min_relative_size=0.1)
    assert (len(kept), len(rows)) == (7, 5)
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 5] and sorted(np.unique(labels)) == [0, 1, 2, 3, 4, 5]
    assert (
        labels[3, 36, 3] == 0 and labels[15, 2, 36] == 0 and labels[8, 10, 10] > 0 and labels[29, 39, 39] > 0
    )
    assert sorted(row["voxels"] for row in rows)[0] == 27 and all(row["voxels"] > 400 for row in rows[:4])
    # the mask now agrees with the labels: the dropped speck and sliver are background there too
    np.testing.assert_array_equal(cleaned, (labels > 0).astype(np.uint8))
