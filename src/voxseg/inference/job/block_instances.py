"""Instances of a mask larger than memory, or shared by the ranks of a job: labelled slab by slab,
stitched into one set of ids.

Three phases, each recorded per slab in the journal (so a stopped job resumes inside them), with the
ranks waiting for each other between them:
1. each rank labels its slabs, each with a halo of planes on both sides (so the watershed sees the
   nuclei a slab's edge cuts whole), and keeps its own planes as local ids, with the count of each id
   and the ids on the volume's faces;
2. rank 0 joins the ids across the cuts (`join_tables`: exactly for connected components, by face
   overlap for watershed labels) from those counts and the two planes facing each cut, drops debris
   by the stitched objects' sizes, and writes one lookup table per slab: the agreed global ids;
3. each rank relabels its slabs, writes the labels and the mask that agrees with them (what the size
   filters dropped as specks is not foreground either: QCANet 16→08, Dice 0.851 of the thresholded
   mask, 0.854 without the debris) and measures its objects; rank 0 merges the rows in slab order.
The slabs are the plan's, whatever the number of ranks, so N ranks give one process's ids and table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.errors import Stopped
from voxseg.inference.job.blocks import VolumePlan, share
from voxseg.inference.job.journal import Journal, WorkArrays, crc
from voxseg.inference.job.stitching import face_pairs, join_tables
from voxseg.inference.model.instances import (
    AXES,
    drop_debris,
    label_instances,
    measure_objects,
    watershed_scale,
)
from voxseg.io.formats import open_volume
from voxseg.io.writers import create_volume, planes_of

if TYPE_CHECKING:
    from voxseg.runtime.distributed import Parallel

#: planes of context on each side of a slab
HALO = 8
#: watershed objects on either side of a cut are one when their faces overlap this much
WATERSHED_OVERLAP = 0.5


@dataclass(frozen=True)
class InstanceOptions:
    method: str
    min_size: int
    max_size: int | None
    min_relative_size: float
    spacing: tuple[float, float, float] | None
    object_radius: float | None


def label_slabs(
    options: InstanceOptions,
    plan: VolumePlan,
    journal: Journal,
    work: WorkArrays,
    parallel: Parallel,
    stop: threading.Event | None = None,
) -> list[dict[str, Any]]:
    """Write the labels and the final mask of the thresholded mask in `journal`; return the objects'
    rows (`measure_objects`, merged across slabs) on rank 0, nothing on the others. Slabs the journal
    records as done (and that read back as recorded) are not done again."""
    assert work.local is not None and work.labels is not None
    mine = share(list(range(len(plan.slabs))), parallel.rank, parallel.world)
    local_done = journal.verified("local")
    for k in mine:
        if k not in local_done:
            _label_slab(options, plan, journal, work, k, stop)
    parallel.barrier()
    if parallel.is_main and not (journal / "tables.npz").exists():
        _agree_on_ids(options, plan, journal, work)
    parallel.barrier()
    with np.load(journal / "tables.npz") as saved:
        tables = [saved[f"t{k}"] for k in range(len(plan.slabs))]
    rows_done = journal.verified("rows")
    for k in mine:
        if k not in rows_done:
            _relabel_slab(plan, journal, work, k, tables[k], stop)
    parallel.barrier()
    if not parallel.is_main:
        return []
    merged: dict[int, dict[str, Any]] = {}
    for k, record in sorted(journal.records("rows").items()):
        for row in record["rows"]:
            _merge(merged, row, plan.slabs[k][0])
    return [merged[key] for key in sorted(merged)]


def _label_slab(
    options: InstanceOptions, plan: VolumePlan, journal: Journal, work: WorkArrays, k: int, stop
) -> None:
    if stop is not None and stop.is_set():
        raise Stopped(f"stopped before labelling slab {k + 1} of {len(plan.slabs)}")
    h, smoothing = watershed_scale(options.object_radius)
    z0, z1 = plan.slabs[k]
    lo, hi = max(z0 - HALO, 0), min(z1 + HALO, plan.shape[0])
    # the watershed's seeds follow the probability, or the distance; connected components need the mask
    seeded = work.probability and options.method == "watershed"
    probability = open_volume(journal / work.probability)[lo:hi] if seeded else None
    distance = open_volume(journal / work.distance)[lo:hi] if work.distance else None
    block = label_instances(
        open_volume(journal / work.thresholded)[lo:hi] > 0,
        options.method,
        probability=probability,
        spacing=options.spacing or (1.0, 1.0, 1.0),
        min_size=options.min_size,
        max_size=options.max_size,
        h=h,
        smoothing=smoothing,
        distance=distance,
    )
    own = np.ascontiguousarray(block[z0 - lo : z1 - lo], dtype=np.uint32)
    with planes_of(journal / work.local) as local:
        local[z0:z1] = own
    edge = on_the_edge(own, first=z0 == 0, last=z1 == plan.shape[0])
    journal.record(
        "local",
        k,
        {"z": [z0, z1], "crc": {work.local: crc(own)}},
        {"counts": np.bincount(own.ravel()), "edge": edge},
    )


def _agree_on_ids(options: InstanceOptions, plan: VolumePlan, journal: Journal, work: WorkArrays) -> None:
    """Rank 0: the lookup tables of every slab into the volume's ids, and the output arrays."""
    assert work.local is not None and work.labels is not None
    saved = [journal.arrays("local", k) for k in range(len(plan.slabs))]
    local = open_volume(journal / work.local)
    overlap = 0.0 if options.method == "connected" else WATERSHED_OVERLAP
    pairs = [
        (k, k + 1, face_pairs(local[plan.slabs[k][1] - 1], local[plan.slabs[k + 1][0]], 3, overlap))
        for k in range(len(plan.slabs) - 1)
    ]
    tables = join_tables([s["counts"] for s in saved], pairs)
    if options.min_relative_size > 0:
        count = max((int(table.max()) for table in tables), default=0)
        sizes = np.zeros(count + 1, dtype=np.int64)
        cut = np.zeros(count + 1, dtype=bool)
        for table, slab in zip(tables, saved, strict=True):
            sizes += np.bincount(table, weights=slab["counts"], minlength=count + 1).astype(np.int64)
            cut[table[slab["edge"]]] = True
        debris = drop_debris(sizes, options.min_relative_size, cut)
        tables = [debris[table].astype(np.uint32) for table in tables]
    count = max((int(table.max()) for table in tables), default=0)
    dtype = np.uint16 if count < 2**16 else np.uint32
    spacing = options.spacing
    stamp = journal.stamp()
    create_volume(journal / work.labels, plan.shape, dtype, spacing, plan.chunks, provenance=stamp)
    create_volume(journal / work.mask, plan.shape, np.uint8, spacing, plan.chunks, provenance=stamp)
    journal.save_arrays("tables.npz", {f"t{k}": table.astype(dtype) for k, table in enumerate(tables)})


def _relabel_slab(
    plan: VolumePlan, journal: Journal, work: WorkArrays, k: int, table: np.ndarray, stop
) -> None:
    assert work.local is not None and work.labels is not None
    if stop is not None and stop.is_set():
        raise Stopped(f"stopped before relabelling slab {k + 1} of {len(plan.slabs)}")
    z0, z1 = plan.slabs[k]
    labels = table[open_volume(journal / work.local)[z0:z1]]
    mask = (labels > 0).view(np.uint8)
    with planes_of(journal / work.labels) as out, planes_of(journal / work.mask) as cleaned:
        out[z0:z1] = labels
        cleaned[z0:z1] = mask
    probability = open_volume(journal / work.probability)[z0:z1] if work.probability else None
    rows = measure_objects(labels, probability)
    journal.record(
        "rows", k, {"z": [z0, z1], "crc": {work.labels: crc(labels), work.mask: crc(mask)}, "rows": rows}
    )


def on_the_edge(ids: np.ndarray, first: bool, last: bool) -> np.ndarray:
    """The ids of a slab found on the volume's faces: its Y and X faces, and its Z faces where the
    slab is the volume's first or last."""
    faces = [ids[:, 0], ids[:, -1], ids[:, :, 0], ids[:, :, -1]]
    faces += ([ids[0]] if first else []) + ([ids[-1]] if last else [])
    return np.unique(np.concatenate([face.ravel() for face in faces]))


def _merge(rows: dict[int, dict[str, Any]], row: dict[str, Any], z0: int) -> None:
    """Add one slab's row of an object (`measure_objects`) to the volume's row of it (centroids and
    boxes in volume Z)."""
    row = {
        **row,
        "centroid_z_px": row["centroid_z_px"] + z0,
        "bbox_z_start": row["bbox_z_start"] + z0,
        "bbox_z_stop": row["bbox_z_stop"] + z0,
    }
    seen = rows.get(row["id"])
    if seen is None:
        rows[row["id"]] = row
        return
    n, m = seen["voxels"], row["voxels"]
    for axis in AXES:
        key = f"centroid_{axis}_px"
        seen[key] = (seen[key] * n + row[key] * m) / (n + m)
        seen[f"bbox_{axis}_start"] = min(seen[f"bbox_{axis}_start"], row[f"bbox_{axis}_start"])
        seen[f"bbox_{axis}_stop"] = max(seen[f"bbox_{axis}_stop"], row[f"bbox_{axis}_stop"])
    if seen["mean_probability"] is not None:
        seen["mean_probability"] = (seen["mean_probability"] * n + row["mean_probability"] * m) / (n + m)
    seen["voxels"] = n + m
