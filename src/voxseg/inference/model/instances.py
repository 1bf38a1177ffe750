"""One label per nucleus: instances from a foreground mask, and a table of the objects.

A network predicts a foreground probability; the mask (probability > threshold) says where nuclei
are but not which voxel belongs to which nucleus. Nuclei that touch form one connected blob, so
`label_instances` splits blobs with a seeded watershed on the distance to the background, whose
peaks sit in nucleus centres and whose saddles sit at the necks between touching nuclei.

All functions take and return numpy arrays (scikit-image / scipy, no voxel loops in Python). Arrays
are indexed (Z, Y, X); `spacing` is the voxel size along (Z, Y, X), in µm where it is known.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label, regionprops_table
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

from voxseg.data.objects import voxel_weighted_median
from voxseg.errors import ConfigError
from voxseg.inference.provenance import csv_stamp_line
from voxseg.runtime.files import atomic_write

METHODS = ("connected", "watershed", "distance")

#: minimum height (in the units of `spacing`) of a distance peak to seed its own object
H = 0.5
#: Gaussian sigma (in the units of `spacing`) applied to the distance map before finding peaks
SMOOTHING = 1.0
#: the object radius (in the units of `spacing`) at which H and SMOOTHING were measured (below)
REFERENCE_RADIUS = 5.25
#: `distance`: its seed height and smoothing, as a share of the watershed's (`watershed_scale`)
DISTANCE_SCALE = 0.5


def resolve_method(asked: str, outputs: Sequence[str]) -> str:
    """The instance method `asked` (`auto`: the one the run was trained for) for a network with
    `outputs`: `distance` when it predicts the distance to each nucleus's boundary, else `watershed`."""
    if asked == "auto":
        return "distance" if "distance" in outputs else "watershed"
    if asked == "distance" and "distance" not in outputs:
        raise ConfigError(
            "--instances distance: this model has no distance output (it trained on a mask, or with "
            "--instance-output none); choose --instances watershed or auto"
        )
    return asked


def watershed_scale(object_radius: float | None) -> tuple[float, float]:
    """(h, smoothing) for objects of `object_radius` (None: unknown, the measured defaults).

    Both are lengths, so they scale with the objects: on GoNuclear's ovule nuclei (radius 1.5 µm)
    the defaults smooth away the saddles between touching nuclei (F1 0.951 and 0.878 on the true
    masks of its two crops), scaled they give 1.0 and 1.0; QCANet's nuclei (radius 8 µm) give 1.0
    either way."""
    if object_radius is None or object_radius <= 0:
        return H, SMOOTHING
    scale = object_radius / REFERENCE_RADIUS
    return H * scale, SMOOTHING * scale


#: columns of `object_table`, in CSV order. Units are in the names: `_px` in voxels (array
#: indices), `_um` in µm (empty without a voxel size); the box is `[start, stop)` along each axis,
#: as a Python slice (`labels[z_start:z_stop, y_start:y_stop, x_start:x_stop]` holds the object)
COLUMNS = (
    "id",
    "voxels",
    "volume_um3",
    "centroid_z_px",
    "centroid_y_px",
    "centroid_x_px",
    "centroid_z_um",
    "centroid_y_um",
    "centroid_x_um",
    "bbox_z_start",
    "bbox_z_stop",
    "bbox_y_start",
    "bbox_y_stop",
    "bbox_x_start",
    "bbox_x_stop",
    "mean_probability",
)
AXES = "zyx"
#: decimals of a mean probability (a float32 has about 7 significant digits)
PROBABILITY_DECIMALS = 4


def label_instances(
    mask: np.ndarray,
    method: str = "watershed",
    probability: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    min_size: int = 0,
    max_size: int | None = None,
    *,
    h: float = H,
    smoothing: float = SMOOTHING,
    distance: np.ndarray | None = None,
) -> np.ndarray:
    """Instance labels (uint32; 1..N, 0 background) of the foreground `mask` (any non-zero voxel).

    `"connected"`: connected components with full (26-) connectivity. A thresholded nucleus often
    has rim voxels joined to it only by an edge or a corner; 6-connectivity would chip those off as
    separate specks, while merging touching nuclei happens either way and is what `"watershed"` is
    for. (`stitching.stitch_tables` uses the same connectivity by default, so slabs rejoin exactly.)

    `"watershed"`: seeds are the h-maxima (peaks at least `h` high) of the Euclidean distance to the
    background, measured with `sampling=spacing` so anisotropic voxels (e.g. Z steps 2-4× the XY
    pixel) give round distances, and smoothed by a Gaussian of `smoothing` (both in the units of
    `spacing`) so that bumps of a rough mask surface do not each seed an object. When `probability`
    is given the distance is weighted by it before smoothing: a network's probability often dips
    where two nuclei meet, which deepens the saddle between them. The watershed of the negated map
    then floods the mask from the seeds; a connected part of the mask with no seed of its own (too
    thin for a peak of height `h`) becomes one object, so both methods label the same voxels and
    debris is left to `min_size`.

    Defaults (`H`, `SMOOTHING`) measured on synthetic nuclei like the acceptance data's: 48×64×64
    voxels, 24 ellipsoids of radius 4-6.5 with each axis jittered up to ±25 %, about a third placed
    touching a neighbour; F1 at IoU 0.5, mean (and worst) of seeds 0-5. "noise n": probability =
    clip(blur(truth, 1) + 2n·blur(white noise, 1), 0, 1), mask = probability > 0.5, min_size 30;
    "dips": the probability is also 0 on the contact surface between touching nuclei.

    ========================================================  =========  =======================
    mask                                                      connected  watershed (defaults)
    ========================================================  =========  =======================
    true mask, spheres (exactly as make_instances.py)         0.594      1.000 (1.000)
    true mask                                                 0.580      0.993 (0.979)
    noise 0.25, with probability                              0.562      0.971 (0.889)
    noise 0.4, with probability (without: 0.953)              0.556      0.956 (0.889)
    noise 0.4, dips, with probability (without: 0.979)        0.556      0.986 (0.936)
    voxels 2×1×1, true mask (with spacing left at 1: 0.908)   0.527      0.993 (0.979)
    voxels 2×1×1, noise 0.4, with probability                 0.436      0.945 (0.889)
    ========================================================  =========  =======================

    Over-splitting, 40 isolated ellipsoids (radius 4-10, aspect 1-2.5): none split on true masks;
    at noise 0.4, 0/40 with cubic voxels and 1/40 with 2×1×1 voxels (noise 0.5: 1/40 and 3/40, 6/40
    with probability). h 0.25 or smoothing 0.5 would gain up to 0.03 F1 at noise 0.4 but split 4-7
    of the 40 at 2×1×1; h >= 0.75 or smoothing 1.5 lose 0.02-0.12 F1.

    `"distance"`: the network's own distance output (`distance`, each nucleus's distance to its
    boundary over its largest, `data.distance`) weights the distance transform instead of the
    probability. It falls to 0 where the network saw two nuclei meet, so it deepens the saddles the
    mask's shape alone leaves shallow. The seeds' height and smoothing are `DISTANCE_SCALE` times
    `h` and `smoothing`. A part of the mask with no seed is no nucleus (GoNuclear's ovules: walls as
    bright as nuclei, whose distance output stays near 0).

    Measured on `benchmarks/accuracy.py`'s dense synthetic set (touching ellipsoids with no seam
    between them, radius 4-7 voxels; the defaults, seed 0, F1@0.5): the watershed of the mask 0.782
    (49 merged objects); this rule 0.954 (13 merged, 2 split); at the watershed's own height and
    smoothing 0.811; seeds at the h-maxima of the distance output alone 0.65-0.93 with their height
    and smoothing, and split or merged nuclei by the dozen at the ends of that range.

    Objects smaller than `min_size` or larger than `max_size` voxels are removed (debris, clumps)
    and the rest renumbered 1..N in the order of their old ids.
    """
    mask = np.asarray(mask) != 0
    spacing = _check_spacing(spacing, mask.ndim)
    if method not in METHODS:
        raise ValueError(f"unknown instance method {method!r}; choose one of {', '.join(METHODS)}")
    if min_size < 0 or (max_size is not None and max_size < min_size):
        raise ValueError(f"need 0 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
    if probability is not None and np.shape(probability) != mask.shape:
        raise ValueError(f"probability shape {np.shape(probability)} differs from mask shape {mask.shape}")
    if method == "connected":
        labels = label(mask, connectivity=mask.ndim)
    elif method == "distance":
        if distance is None or np.shape(distance) != mask.shape:
            raise ValueError(f"method 'distance' needs the distance map of the mask's shape {mask.shape}")
        labels = _watershed(mask, distance, spacing, h * DISTANCE_SCALE, smoothing * DISTANCE_SCALE, False)
    else:
        labels = _watershed(mask, probability, spacing, h, smoothing)
    return _filter_sizes(labels, min_size, max_size)


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(s > 0 for s in values):
        raise ValueError(f"spacing must be {ndim} positive numbers, got {spacing!r}")
    return values


def _watershed(
    mask: np.ndarray,
    weight: np.ndarray | None,
    spacing: tuple[float, ...],
    h: float,
    smoothing: float,
    unseeded: bool = True,
) -> np.ndarray:
    """The seeded watershed of the mask's distance transform times `weight` (0..1); parts of the mask
    with no seed become objects of their own when `unseeded`, else stay background."""
    distance = ndi.distance_transform_edt(mask, sampling=spacing).astype(np.float32)
    if weight is not None:
        distance *= np.clip(np.asarray(weight, dtype=np.float32), 0.0, 1.0)
    if smoothing > 0:
        distance = ndi.gaussian_filter(distance, sigma=[smoothing / s for s in spacing])
    # peaks of the smoothed map can only be inside the mask, but make sure no seed lies outside it
    markers = label(h_maxima(distance, h).astype(bool) & mask, connectivity=mask.ndim)
    if not unseeded:
        return watershed(-distance, markers, mask=mask)
    components = label(mask, connectivity=mask.ndim)
    seeded = np.zeros(int(components.max()) + 1, dtype=bool)
    seeded[components[markers > 0]] = True
    unseeded = mask & ~seeded[components]
    markers[unseeded] = components[unseeded] + markers.max()
    return watershed(-distance, markers, mask=mask)


def _filter_sizes(labels: np.ndarray, min_size: int, max_size: int | None) -> np.ndarray:
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    if max_size is not None:
        keep &= sizes <= max_size
    keep[0] = False
    kept = np.where(keep[labels], labels, 0)
    return relabel_sequential(kept)[0].astype(np.uint32, copy=False)


def drop_debris(sizes: np.ndarray, fraction: float, cut: np.ndarray | None = None) -> np.ndarray:
    """Lookup table (old id -> new id, 0 dropped) that removes objects smaller than `fraction` of a
    typical object's voxels and renumbers the rest 1..N in order. `sizes[i]` is object i's voxel count
    (index 0, the background, is ignored; ids with no voxels are dropped). Objects marked in `cut`
    (those the volume's edge cuts) are kept whatever their size: what is left of a nucleus at the
    edge is small for want of the rest (cells3d's held-out quadrant: a 3100-voxel nucleus among
    nuclei of 14000-47000).

    A thresholded probability leaves specks where noise crosses the threshold and slivers where a
    nucleus's rim was split off; both are far below a real nucleus's size, which the volume's objects
    give without the user knowing the magnification. A fixed voxel count (`--min-size`) cannot follow
    the magnification. The typical object is the voxel-weighted median (the size of the object that
    half the object voxels lie in), not the median object: specks can outnumber the nuclei (QCANet
    16→08 with `--resample isotropic`, seed 1: 26 fragments of 1-134 voxels beside 8 nuclei of
    1500-2900 made the median object 3 voxels, and every speck stayed). Measured with
    benchmarks/accuracy.py (F1@0.5, watershed): QCANet 16→08 dropped its one 161-voxel object beside
    eight of 1300-2900 voxels; see the README for every set.
    """
    sizes = np.asarray(sizes)
    present = np.flatnonzero(sizes[1:]) + 1
    keep = np.zeros(len(sizes), dtype=bool)
    if len(present):
        keep[present] = sizes[present] >= fraction * voxel_weighted_median(sizes[present])
        if cut is not None:
            keep[present] |= np.asarray(cut, dtype=bool)[present]
    table = np.zeros(len(sizes), dtype=np.int64)
    table[keep] = np.arange(1, int(keep.sum()) + 1)
    return table


def measure_objects(labels: np.ndarray, probability: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per object of a (Z, Y, X) label image, in the order of the ids: `id`, `voxels`,
    `centroid_<axis>_px`, `bbox_<axis>_start`/`_stop` and `mean_probability` (None without a
    probability), unrounded, so rows of the slabs of one volume can be merged (`block_instances`)."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a (Z, Y, X) volume, got shape {labels.shape}")
    properties = ["label", "area", "centroid", "bbox"]
    intensity = None
    if probability is not None:
        intensity = np.asarray(probability, dtype=np.float32)
        if intensity.shape != labels.shape:
            raise ValueError(f"probability shape {intensity.shape} differs from labels shape {labels.shape}")
        properties.append("intensity_mean")
    table = regionprops_table(labels, intensity_image=intensity, properties=properties)
    rows = []
    for i, object_id in enumerate(table["label"]):
        row: dict[str, Any] = {"id": int(object_id), "voxels": int(table["area"][i])}
        for axis, name in enumerate(AXES):
            row[f"centroid_{name}_px"] = float(table[f"centroid-{axis}"][i])
            row[f"bbox_{name}_start"] = int(table[f"bbox-{axis}"][i])
            row[f"bbox_{name}_stop"] = int(table[f"bbox-{axis + 3}"][i])
        row["mean_probability"] = None if intensity is None else float(table["intensity_mean"][i])
        rows.append(row)
    return rows


def _rounded(value: float, unit: float) -> float:
    """`value` to the decimals that resolve a thousandth of `unit` (a voxel's side or volume): no
    false precision, and no binary noise (1276.8, not 1276.8000000000002)."""
    return round(value, max(0, 3 - math.floor(math.log10(unit))))


def table_row(measured: dict[str, Any], spacing: Sequence[float] | None) -> dict[str, Any]:
    """A row of `measure_objects` as the table has it: keyed as `COLUMNS`, with the µm values of a
    known voxel size (positions from the centre of voxel 0), and every float rounded."""
    row = {**measured, "volume_um3": None}
    for name in AXES:
        row[f"centroid_{name}_px"] = _rounded(measured[f"centroid_{name}_px"], 1.0)
        row[f"centroid_{name}_um"] = None
    if spacing is not None:
        sides = _check_spacing(spacing, 3)
        volume = math.prod(sides)
        row["volume_um3"] = _rounded(measured["voxels"] * volume, volume)
        for name, side in zip(AXES, sides, strict=True):
            row[f"centroid_{name}_um"] = _rounded(measured[f"centroid_{name}_px"] * side, side)
    if measured["mean_probability"] is not None:
        row["mean_probability"] = round(measured["mean_probability"], PROBABILITY_DECIMALS)
    return {key: row[key] for key in COLUMNS}


def object_table(
    labels: np.ndarray,
    probability: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """One row per object of a (Z, Y, X) label image, keyed as `COLUMNS`, in the order of the ids.

    Centroids are in voxels (they index the array) and, with the voxel size `spacing`, in µm; the
    bounding box is [z_start, z_stop) × [y_start, y_stop) × [x_start, x_stop), as a slice. The µm
    values are None when the spacing is unknown, and `mean_probability` None without a probability,
    so tables of different volumes always have the same columns. Values are plain Python numbers
    (csv, json), rounded to a thousandth of a voxel (`table_row`).
    """
    return [table_row(row, spacing) for row in measure_objects(labels, probability)]


def write_object_csv(
    path: str | os.PathLike[str], rows: Sequence[dict[str, Any]], stamp: Mapping[str, str] | None = None
) -> Path:
    """Write `rows` (from `object_table`) as CSV, atomically: a reader, or a crash, sees the old file or
    the complete new one, never half a table. None is written as an empty field. A prediction's `stamp`
    (`provenance`) is the first line, a `#` comment."""
    path = Path(path)
    fields = list(dict.fromkeys(key for row in rows for key in row)) if rows else list(COLUMNS)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            if stamp is not None:
                handle.write(csv_stamp_line(stamp))
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)
    return path
