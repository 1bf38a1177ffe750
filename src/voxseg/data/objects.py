"""The typical object (nucleus) size of a data set, measured on its labels.

Instance separation depends on scale: the watershed's seeds are distance peaks that must rise `h`
above their saddles after a Gaussian smoothing, and constants that suit 8 µm nuclei (QCANet) smooth
away the saddles between 1.5 µm ones (GoNuclear's ovule nuclei: F1 0.95 and 0.88 on the true masks,
1.0 with both scaled to the radius). A run measures the radius here, from its training labels, and
prediction scales the watershed by it (`inference.instances.watershed_scale`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from voxseg.data.checks import Reading, open_pair
from voxseg.data.discovery import Pair
from voxseg.data.labels import FOREGROUND

#: label files measured at most (the first ones): a typical size needs few, and reading costs
MEASURED_FILES = 4
#: larger label volumes are measured on a central box of this many voxels (bounded memory)
MAX_MEASURED_VOXELS = 2**22


def voxel_weighted_median(sizes: np.ndarray) -> float:
    """The size of the object that the middle object voxel belongs to: specks, however many, do not
    move it (inference.instances drops debris by it)."""
    ordered = np.sort(sizes)
    cumulative = np.cumsum(ordered)
    return float(ordered[np.searchsorted(cumulative, cumulative[-1] / 2)])


def object_radius(
    raw: np.ndarray,
    classes: np.ndarray,
    spacing: Sequence[float] | None,
    instances: bool,
    debris: float = 0.0,
) -> float | None:
    """The radius (µm, or voxels without a voxel size) of a sphere of the median object's volume.

    Objects are the label's instance ids when `instances` (values other than 0 and 1 mean ids),
    else the connected components of the foreground class. Objects cut by the volume's faces are
    left out when at least three are whole (a cut object is smaller than it is), and so are objects
    under `debris` times the voxel-weighted median: a partition cut from the image (WNet3D's) holds
    specks of noise that outnumber its nuclei (cells3d: a median object of 1.8 voxels)."""
    from scipy import ndimage

    foreground = classes == FOREGROUND
    if instances:
        ids = np.where(foreground, raw, 0).astype(np.int32)
    else:
        ids = ndimage.label(foreground, np.ones((3, 3, 3), bool))[0]
    sizes = np.bincount(ids.ravel())
    present = np.flatnonzero(sizes)
    present = present[present > 0]
    if debris and len(present):
        present = present[sizes[present] >= debris * voxel_weighted_median(sizes[present])]
    if not len(present):
        return None
    faces = np.concatenate([np.unique(np.take(ids, [0, -1], axis=axis)) for axis in range(3)])
    whole = np.setdiff1d(present, faces)
    kept = whole if len(whole) >= 3 else present
    voxel = math.prod(spacing) if spacing else 1.0
    return float((3 * np.median(sizes[kept]) * voxel / (4 * math.pi)) ** (1 / 3))


def holds_instance_ids(pairs: Sequence[Pair], reading: Reading) -> bool:
    """Whether the labels give each nucleus its own id (more than one value above 0, read as the
    default map reads them), on the first few label files' middles as `typical_object_radius`: a
    binary mask (0/1, 0/255) says where nuclei are, not where touching ones part."""
    if not reading.label_map.is_default:
        return False
    for pair in pairs[:MEASURED_FILES]:
        _, label_file = open_pair(pair, reading)
        values = np.unique(np.asarray(label_file[central_box(label_file.shape, MAX_MEASURED_VOXELS)]))
        if np.count_nonzero(values > 0) > 1:
            return True
    return False


#: nuclei count as packed when this share of them come within PACKED_GAP radii of another
PACKED_SHARE = 0.1
#: ... the gap, as a share of the typical nucleus radius
PACKED_GAP = 0.25


def packed_share(ids: np.ndarray, spacing: Sequence[float] | None, radius: float) -> float:
    """The share of labelled nuclei that come within `PACKED_GAP` × `radius` (µm, or voxels without a
    voxel size) of another nucleus: whether a mask's connected components would part them. Each
    nucleus grows by half the gap into the background (scikit-image's `expand_labels`, in µm), and
    those that then touch another are packed.

    QCANet's embryos 0 and 0 (apart: each nucleus is its own component of the mask, F1 1.0 with the
    watershed; within half a radius, 0.5 and 0.12); GoNuclear's ovule crops 0.5 and 0.19 (packed:
    annotators leave a voxel or two between neighbours)."""
    from skimage.segmentation import expand_labels

    ids = np.asarray(ids)
    count = len(np.unique(ids[ids > 0]))
    if not count:
        return 0.0
    grown = expand_labels(ids, PACKED_GAP * radius / 2, spacing=spacing or 1)
    touching: list[np.ndarray] = []
    for axis in range(grown.ndim):
        a, b = np.moveaxis(grown, axis, 0)[:-1], np.moveaxis(grown, axis, 0)[1:]
        contact = (a > 0) & (b > 0) & (a != b)
        touching += [a[contact], b[contact]]
    return float(len(np.unique(np.concatenate(touching))) / count)


def packed_nuclei(pairs: Sequence[Pair], reading: Reading, radius: float | None) -> float:
    """The largest `packed_share` over the first few label files' middles (0 without a radius)."""
    if radius is None:
        return 0.0
    shares = [0.0]
    for pair in pairs[:MEASURED_FILES]:
        image_file, label_file = open_pair(pair, reading)
        raw = np.asarray(label_file[central_box(label_file.shape, MAX_MEASURED_VOXELS)])
        spacing = reading.spacing or image_file.voxel_size or label_file.voxel_size
        shares.append(packed_share(raw, spacing, radius))
    return max(shares)


def central_box(shape: Sequence[int], voxels: int) -> tuple[slice, ...]:
    """The middle of a volume, its longest side halved until it holds at most `voxels`."""
    sides = list(shape)
    while math.prod(sides) > voxels:
        longest = int(np.argmax(sides))
        sides[longest] = max(1, sides[longest] // 2)
    return tuple(
        slice((full - side) // 2, (full - side) // 2 + side) for full, side in zip(shape, sides, strict=True)
    )


def typical_object_radius(pairs: Sequence[Pair], reading: Reading) -> float | None:
    """The median object radius over the first few label files (None: no object); a large file is
    measured on its middle (`central_box`), where its cut objects are left out as at any face."""
    radii = []
    for pair in pairs[:MEASURED_FILES]:
        image_file, label_file = open_pair(pair, reading)
        raw = np.asarray(label_file[central_box(label_file.shape, MAX_MEASURED_VOXELS)])
        classes = reading.label_map.classes(raw, pair.label)
        instances = reading.label_map.is_default and int(raw.max()) > 1
        spacing = reading.spacing or image_file.voxel_size or label_file.voxel_size
        radius = object_radius(raw, classes, spacing, instances)
        if radius is not None:
            radii.append(radius)
    return float(np.median(radii)) if radii else None
