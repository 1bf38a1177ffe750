"""Sliding-window prediction streamed along Z, for volumes larger than memory.

MONAI's `sliding_window_inference` needs the whole input and output in memory (a 1024×1024×128
uint16 stack is 0.5 GB as float32, twice that with its output). This streams the same computation:
the windows are MONAI's own grid for the whole volume (`dense_patch_slices`, Gaussian importance
map), taken one row of Z positions at a time; once no later window covers a Z plane, that plane's
blended value is final and is handed out. The result is the untiled one up to float summation
order, and memory holds only the window in hand and the accumulators of a window's depth of planes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from voxseg.data.normalise import Normalisation
from voxseg.data.normalise import Readable as Volume  # an array, or a volume read by regions

Predict = Callable[[torch.Tensor], torch.Tensor]  # (B, 1, Z, Y, X) normalised -> probabilities, same shape


def streamed_probabilities(
    volume: Volume,
    normalisation: Normalisation,
    window: tuple[int, int, int],
    overlap: float,
    predict: Predict,
    batch_size: int,
    on_windows: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (z, planes): the blended foreground probability of Z planes z.., in order, float32.

    `volume` is read one window at a time. A volume smaller than the window is padded as
    training pads (with its normalised minimum) and the padding is cut away. The blended sums live
    in a ring of a window's depth of planes, reused as the windows move down.
    `on_windows(done, total)` reports progress.
    """
    shape = tuple(int(s) for s in volume.shape)
    padded = tuple(max(s, w) for s, w in zip(shape, window, strict=True))
    before = [(p - s) // 2 for p, s in zip(padded, shape, strict=True)]
    interval = _get_scan_interval(padded, window, 3, (overlap,) * 3)
    rows: dict[int, list[tuple[slice, slice]]] = {}
    for z, y, x in dense_patch_slices(padded, window, interval):
        rows.setdefault(int(z.start), []).append(
            (slice(int(y.start), int(y.stop)), slice(int(x.start), int(x.stop)))
        )
    starts = sorted(rows)
    total, done = sum(len(r) for r in rows.values()), 0
    importance = compute_importance_map(window, mode="gaussian", sigma_scale=0.125).numpy().astype(np.float32)
    # planes z.. stay open only while a window covers them: a window's depth of planes at a time
    ring = _Ring(window[0], padded)
    flushed = 0  # padded Z up to which the planes were handed out
    for index, start in enumerate(starts):
        zs = slice(start, start + window[0])
        for batch_start in range(0, len(rows[start]), batch_size):
            batch = rows[start][batch_start : batch_start + batch_size]
            tiles = torch.from_numpy(
                np.stack([_read(volume, normalisation, (zs, ys, xs), before) for ys, xs in batch])[:, None]
            )
            probabilities = predict(tiles).float().cpu().numpy()[:, 0]
            for (ys, xs), probability in zip(batch, probabilities, strict=True):
                ring.add(start, ys, xs, probability * importance, importance)
            done += len(batch)
            if on_windows is not None:
                on_windows(done, total)
        final_until = starts[index + 1] if index + 1 < len(starts) else padded[0]
        for z, planes in ring.take(flushed, final_until):
            yield from _crop_planes(planes, z, shape, before)
        flushed = final_until


class _Ring:
    """Weighted sums of probabilities for `depth` consecutive padded Z planes, stored modulo `depth`."""

    def __init__(self, depth: int, padded: tuple[int, ...]) -> None:
        self.depth = depth
        self.values = np.zeros((depth, padded[1], padded[2]), np.float32)
        self.weights = np.zeros_like(self.values)

    def _parts(self, z0: int, z1: int) -> Iterator[tuple[int, slice, slice]]:
        """(first Z, ring slice, slice of a z0..z1 array) for each unwrapped piece of planes z0..z1."""
        z = z0
        while z < z1:
            at = z % self.depth
            n = min(z1 - z, self.depth - at)
            yield z, slice(at, at + n), slice(z - z0, z - z0 + n)
            z += n

    def add(self, z0: int, ys: slice, xs: slice, weighted: np.ndarray, weight: np.ndarray) -> None:
        for _, ring, part in self._parts(z0, z0 + weighted.shape[0]):
            self.values[ring, ys, xs] += weighted[part]
            self.weights[ring, ys, xs] += weight[part]

    def take(self, z0: int, z1: int) -> Iterator[tuple[int, np.ndarray]]:
        """The blended planes z0..z1 (every window covering them added), divided in place: each is a
        view of the ring, valid until the next one is asked for; then its slots are cleared."""
        for z, ring, _ in self._parts(z0, z1):
            planes = self.values[ring]
            planes /= self.weights[ring]
            yield z, planes
            self.values[ring] = 0
            self.weights[ring] = 0


def _read(
    volume: Volume, normalisation: Normalisation, window: tuple[slice, ...], before: list[int]
) -> np.ndarray:
    """One window of the padded volume, normalised (the padding with training's value).

    Windows are read one by one, so only the window in hand is in memory, not a row of them.
    """
    out = np.full([s.stop - s.start for s in window], normalisation.padding, np.float32)
    source, target = [], []
    for axis, wanted in enumerate(window):
        lo, hi = max(wanted.start - before[axis], 0), min(wanted.stop - before[axis], volume.shape[axis])
        if hi <= lo:
            return out
        source.append(slice(lo, hi))
        target.append(slice(lo + before[axis] - wanted.start, hi + before[axis] - wanted.start))
    region = out[tuple(target)]
    region[...] = volume[tuple(source)]
    normalisation.apply_in_place(region)
    return out


def _crop_planes(
    planes: np.ndarray, base: int, shape: tuple[int, ...], before: list[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """The planes that belong to the volume, without padding, in volume coordinates."""
    z0, z1 = max(base, before[0]), min(base + planes.shape[0], before[0] + shape[0])
    if z1 > z0:
        yield (
            z0 - before[0],
            planes[z0 - base : z1 - base, before[1] : before[1] + shape[1], before[2] : before[2] + shape[2]],
        )
