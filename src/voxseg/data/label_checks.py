"""Labels whose values look like another convention than the one they will be read with.

Without `--label-map` every value above 0 is foreground, so sparse annotations in TRAILMAP's
convention (0 not annotated, 1 background, 2 foreground, on a few planes reviewed in napari) train
whole reviewed planes as foreground: validation Dice near 0, without a word. Such labels are
refused (DataError, exit 2 before the run folder exists) rather than warned about: the run they give
is worthless, a warning scrolls by in a long log, and the answer is one option away, which the
message names. The rule is narrow, so that no real mask or instance label trips it: values 0, 1 and 2
only, and along some axis the 1s and 2s sit on at most half of the planes and fill at least half of
those planes' voxels (objects never fill whole planes). Labels of only 0, 1 and 2 that do not look so
are ambiguous (two objects' ids, three classes, or sparse strokes) and get a warning. A `--label-map`
says what the values mean, so neither check runs then; spelling out the map as read silences both.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxseg.data.checks import Reading, open_pair, slabs
from voxseg.data.discovery import Pair
from voxseg.data.labels import FOREGROUND
from voxseg.errors import DataError

SPARSE_MAP = "0:ignore,1:background,2:foreground"
#: sparse-looking: the planes that hold a 1 or a 2 are at most this share of an axis's planes ...
SPARSE_PLANES = 0.5
#: ... and the 1s and 2s fill at least this share of those planes' voxels
FILLED_SHARE = 0.5


@dataclass(frozen=True)
class LowValues:
    """A label volume of the values 0, 1 and 2 only: how many 1s and 2s, and per axis (Z, Y, X)
    which planes hold one."""

    shape: tuple[int, int, int]
    ones: int
    twos: int
    occupied: tuple[np.ndarray, np.ndarray, np.ndarray]

    def sparse_planes(self) -> tuple[str, int, int] | None:
        """(axis, planes holding a 1 or 2, planes) of the first axis along which the 1s and 2s look
        like a few reviewed planes; None when along none."""
        for axis, planes in enumerate(self.occupied):
            used = int(np.count_nonzero(planes))
            plane_voxels = math.prod(self.shape) // self.shape[axis]
            few = used <= SPARSE_PLANES * len(planes)
            if used and few and self.ones + self.twos >= FILLED_SHARE * used * plane_voxels:
                return "ZYX"[axis], used, len(planes)
        return None


def low_values(pair: Pair, reading: Reading) -> LowValues | None:
    """The label's counts, read slab by slab; None (and the rest of the file left unread) as soon as
    a value other than 0, 1 and 2 turns up, as in any instance label or 0/255 mask. The pair is opened
    as loading opens it, so a file it cannot read is named as loading would name it."""
    _, volume = open_pair(pair, reading)
    if volume.dtype == bool:
        return None
    shape = tuple(volume.shape)
    ones = twos = 0
    z_planes, y_planes, x_planes = [], np.zeros(shape[1], bool), np.zeros(shape[2], bool)
    for zs in slabs(shape):
        slab = np.asarray(volume[zs])
        above = slab != 0
        slab_ones, slab_twos = int(np.count_nonzero(slab == 1)), int(np.count_nonzero(slab == 2))
        if slab_ones + slab_twos != np.count_nonzero(above):
            return None
        ones, twos = ones + slab_ones, twos + slab_twos
        z_planes.append(above.any(axis=(1, 2)))
        y_planes |= above.any(axis=(0, 2))
        x_planes |= above.any(axis=(0, 1))
    return LowValues(shape, ones, twos, (np.concatenate(z_planes), y_planes, x_planes))


def judge_label(pair: Pair, reading: Reading) -> str | None:
    """Refuse a label that looks sparse while 1 and 2 are both read as foreground; a warning for one
    of only 0, 1 and 2 that does not (None: nothing to say, or no label)."""
    label_map, path = reading.label_map, pair.label
    if path is None or not label_map.class_of(1) == label_map.class_of(2) == FOREGROUND:
        return None
    found = _low_values_cached(pair, reading, _stamp(path))
    # without a 0 nothing is sparse: `checks.class_warnings` names a label with no background
    if found is None or not (found.ones and found.twos) or found.ones + found.twos == math.prod(found.shape):
        return None
    as_read = f"--label-map {label_map}"
    sparse = found.sparse_planes()
    if sparse is not None:
        axis, used, planes = sparse
        raise DataError(
            f"{path}: looks like sparse annotations (values 0, 1 and 2 only, the 1s and 2s on {used} of "
            f"{planes} {axis} planes, the rest 0), but without --label-map it is read as {label_map}: 1 "
            "and 2 both foreground, so whole reviewed planes would train as foreground. If 0 is not "
            f"annotated, 1 background and 2 foreground, give --label-map {SPARSE_MAP}; to train it as "
            f"read anyway (1 and 2 two objects' ids), give {as_read}"
        )
    return (
        f"{path}: holds only the values 0, 1 and 2, read as {label_map} (1 and 2 both foreground, as "
        f"two objects' ids). If 0 is not annotated, 1 background and 2 foreground, give --label-map "
        f"{SPARSE_MAP}; if 1 and 2 are classes, --label-map picks the foreground one (e.g. "
        f"0:background,1:foreground,2:background); {as_read} keeps this reading without this warning"
    )


def label_warnings(pairs: Sequence[Pair], reading: Reading) -> list[str]:
    """`judge_label` over every pair's label file (the first refusal raises)."""
    judged = (judge_label(pair, reading) for pair in pairs)
    return [warning for warning in judged if warning is not None]


def _stamp(path: Path) -> tuple[int, int]:
    status = Path(path).stat()
    return status.st_mtime_ns, status.st_size


@functools.lru_cache(maxsize=256)
def _low_values_cached(pair: Pair, reading: Reading, stamp: tuple[int, int]) -> LowValues | None:
    """`low_values`, read once per label version: the command line checks before importing torch and
    the run checks again (`stamp`, the label's time and size, reads a rewritten file anew)."""
    return low_values(pair, reading)
