"""Sliding-window inference: MONAI's window grid and Gaussian blending, streamed along Z.

One implementation serves validation during training (`blended_probability`, a volume in memory) and
`voxseg predict` (`streamed_probabilities`, planes handed out as they become final), so the validation
Dice and the threshold tuned on it are what prediction gets, by construction.

MONAI's `sliding_window_inference` needs the whole input and output in memory (a 1024×1024×128
uint16 stack is 0.5 GB as float32, twice that with its output). This streams the same computation:
the windows are MONAI's own grid for the whole volume (`dense_patch_slices`, Gaussian importance
map), taken one row of Z positions at a time; once no later window covers a Z plane, that plane's
blended value is final and is handed out. The result is MONAI's up to float summation order (tested
against it), and memory holds only the window in hand and the accumulators of a window's depth of planes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from torch import nn

from voxseg.accel.cuda import heuristic_kernels
from voxseg.data.normalise import Normalisation, Readable
from voxseg.errors import Stopped

#: overlap between neighbouring windows; with Gaussian weights, 0.25 hides seams at modest cost
OVERLAP = 0.25
#: normalised (B, 1, Z, Y, X) windows -> (B, C, Z, Y, X) probabilities: the foreground, then any
#: other output the network learned (the distance to each nucleus's boundary: `data.distance`)
Predict = Callable[[torch.Tensor], torch.Tensor]
#: the 8 flips over Z, Y and X of test-time augmentation (nnU-Net's mirroring)
TTA_FLIPS = ((), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4))


def window_predictor(
    model: nn.Module,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    tta: bool = False,
) -> Predict:
    """The model as a `Predict`: windows moved to `device`, sigmoid of every output channel in
    float32, with test-time augmentation (the mean of the 8 flips) if asked."""
    flips = TTA_FLIPS if tta else ((),)

    @torch.no_grad()
    def predict(tiles: torch.Tensor) -> torch.Tensor:
        tiles = tiles.to(device)
        total = None
        with autocast():
            for axes in flips:
                logits = model(tiles.flip(axes) if axes else tiles).float()
                probability = torch.sigmoid(logits.flip(axes) if axes else logits)
                total = probability if total is None else total + probability
        assert total is not None
        return total / len(flips)

    return predict


def foreground_only(predict: Predict) -> Predict:
    """`predict` keeping only the foreground channel: a job that uses no other output blends, holds
    and writes one (the distance output's ring is 134 MB more at 1024² planes and a 32-deep window)."""
    return lambda tiles: predict(tiles)[:, :1]


def scan_interval(shape: tuple[int, ...], window: tuple[int, ...], overlap: float) -> tuple[int, ...]:
    """The step between windows, by MONAI's rule (`sliding_window_inference`): a window as large as
    the volume takes one step; otherwise `int(window × (1 − overlap))`, at least 1."""
    return tuple(w if w == s else max(int(w * (1 - overlap)), 1) for s, w in zip(shape, window, strict=True))


def window_rows(
    shape: tuple[int, ...], window: tuple[int, int, int], overlap: float
) -> tuple[tuple[int, ...], list[int], dict[int, list[tuple[slice, slice]]]]:
    """(padded shape, padding before each axis, the windows of MONAI's grid by their padded Z start,
    each as its Y and X slices in grid order)."""
    padded = tuple(max(s, w) for s, w in zip(shape, window, strict=True))
    before = [(p - s) // 2 for p, s in zip(padded, shape, strict=True)]
    rows: dict[int, list[tuple[slice, slice]]] = {}
    for z, y, x in dense_patch_slices(padded, window, scan_interval(padded, window, overlap)):
        rows.setdefault(int(z.start), []).append(
            (slice(int(y.start), int(y.stop)), slice(int(x.start), int(x.stop)))
        )
    return padded, before, dict(sorted(rows.items()))


def window_outputs(
    volume: Readable,
    normalisation: Normalisation,
    window: tuple[int, int, int],
    overlap: float,
    predict: Predict,
    batch_size: int,
    wanted: list[tuple[int, int]],
) -> dict[tuple[int, int], np.ndarray]:
    """The model's probabilities of some windows of the grid, by (row start, index in the row): a row
    that two ranks' regions need is computed once, in parts, and its parts are exchanged."""
    _, before, rows = window_rows(tuple(int(s) for s in volume.shape), window, overlap)
    outputs = {}
    for batch_start in range(0, len(wanted), batch_size):
        batch = wanted[batch_start : batch_start + batch_size]
        tiles = [
            _read(volume, normalisation, (slice(z, z + window[0]), *rows[z][i]), before) for z, i in batch
        ]
        probabilities = predict(torch.from_numpy(np.stack(tiles)[:, None])).float().cpu().numpy()
        outputs.update(zip(batch, probabilities, strict=True))
    return outputs


def streamed_probabilities(
    volume: Readable,
    normalisation: Normalisation,
    window: tuple[int, int, int],
    overlap: float,
    predict: Predict,
    batch_size: int,
    on_windows: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    region: tuple[int, int] | None = None,
    computed: Mapping[tuple[int, int], np.ndarray] | None = None,
    resume_from: RingState | None = None,
    on_row: Callable[[RingState], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (z, planes): the blended probabilities of Z planes z.., in order, float32, shaped
    (C, planes, Y, X) for the network's C outputs (the foreground first).

    `volume` is read one window at a time. A volume smaller than the window is padded as
    training pads (with its normalised minimum) and the padding is cut away. The blended sums live
    in a ring of a window's depth of planes, reused as the windows move down.
    `on_windows(done, total)` reports progress; once `stop` is set, `Stopped` is raised before the
    next batch of windows.

    `region` (first Z, end Z) yields only those planes, from the windows of the volume's own grid that
    touch them: every plane gets the same additions in the same order as from the whole volume, so
    regions streamed apart (by other processes, or after a restart) equal it bit for bit. A local grid
    over the region and a margin would place the windows elsewhere and change the result. Windows in
    `computed` (`window_outputs`) are taken from there instead of the model.

    After each row of windows, `on_row` gets the stream's state (`RingState`): where the next row
    starts and the sums the rows so far added to the planes not yet final. A stream given that state
    as `resume_from` continues with the next row and yields, bit for bit, what the first would have.
    """
    shape = tuple(int(s) for s in volume.shape)
    padded, before, rows = window_rows(shape, window, overlap)
    every = list(rows)
    first, end = (0, shape[0]) if region is None else region
    wanted = (first + before[0], end + before[0])  # in padded Z
    starts = [z for z in rows if z < wanted[1] and z + window[0] > wanted[0]]  # the windows touching it
    following = dict(zip(every, [*every[1:], padded[0]], strict=True))  # planes before it are final
    computed = computed or {}
    total, done = sum(len(rows[z]) for z in starts), 0
    importance = compute_importance_map(window, mode="gaussian", sigma_scale=0.125).numpy().astype(np.float32)
    # planes z.. stay open only while a window covers them: a window's depth of planes at a time
    ring: _Ring | None = None  # made when the first windows say how many outputs the network has
    flushed = starts[0] if starts else 0  # padded Z up to which the planes were handed out
    if resume_from is not None:
        starts = [z for z in starts if z >= resume_from.next_row]
        total = sum(len(rows[z]) for z in starts)
        flushed = resume_from.next_row
        if resume_from.values:
            ring = _Ring(window[0], padded, len(resume_from.values[0]))
            ring.load(flushed, resume_from.values, resume_from.weights)
    for start in starts:
        zs = slice(start, start + window[0])
        for batch_start in range(0, len(rows[start]), batch_size):
            if stop is not None and stop.is_set():
                raise Stopped(f"stopped after {done} of {total} windows")
            batch = rows[start][batch_start : batch_start + batch_size]
            indices = range(batch_start, batch_start + len(batch))
            if all((start, i) in computed for i in indices):
                probabilities = np.stack([computed[start, i] for i in indices])
            else:
                tiles = np.stack([_read(volume, normalisation, (zs, ys, xs), before) for ys, xs in batch])
                probabilities = predict(torch.from_numpy(tiles[:, None])).float().cpu().numpy()
            if ring is None:
                ring = _Ring(window[0], padded, probabilities.shape[1])
            for (ys, xs), probability in zip(batch, probabilities, strict=True):
                ring.add(start, ys, xs, probability * importance, importance)
            done += len(batch)
            if on_windows is not None:
                on_windows(done, total)
        final_until = following[start]
        assert ring is not None
        for z, planes in ring.take(flushed, final_until):
            inside = slice(max(z, wanted[0]) - z, min(z + planes.shape[1], wanted[1]) - z)
            if inside.stop > inside.start:  # planes of the region; the others were only cleared
                yield from _crop_planes(planes[:, inside], z + inside.start, shape, before)
        flushed = final_until
        if on_row is not None:
            values, weights = ring.partial(final_until, max(final_until, start + window[0]))
            final = min(max(final_until - before[0], 0), shape[0])
            on_row(RingState(final_until, final, values, weights))


def assembled(planes: Iterable[tuple[int, np.ndarray]], shape: tuple[int, ...]) -> np.ndarray:
    """The (z, planes) of `streamed_probabilities` as one (C, Z, Y, X) float32 volume."""
    volume = None
    for z, part in planes:
        if volume is None:
            volume = np.empty((part.shape[0], *shape), np.float32)
        volume[:, z : z + part.shape[1]] = part
    assert volume is not None, "a stream yields every plane"
    return volume


def blended_probability(
    image: np.ndarray, window: tuple[int, int, int], predict: Predict, batch_size: int
) -> np.ndarray:
    """The probabilities (C, Z, Y, X) of an already normalised volume in memory, blended exactly as
    `voxseg predict` blends them (its default overlap; padded with the volume's minimum). cuDNN picks
    its kernels by heuristics meanwhile: validation's shapes are not training's."""
    with heuristic_kernels():
        planes = streamed_probabilities(
            image, Normalisation.already_done(image), window, OVERLAP, predict, batch_size
        )
        return assembled(planes, image.shape)


@dataclass(frozen=True)
class RingState:
    """A stream stopped after a row: the padded Z of the next row, the volume's Z up to which the
    planes are final, and the weighted sums (and weights) of the padded planes from `next_row` on that
    earlier rows added to, in consecutive parts (values (C, planes, Y, X), weights (planes, Y, X)).
    `on_row` gets views of the stream's own buffers,
    valid during the call: saving them copies nothing (a copy was 128 MB for 1024² planes)."""

    next_row: int
    final: int
    values: list[np.ndarray]
    weights: list[np.ndarray]


class _Ring:
    """Weighted sums of the C outputs' probabilities for `depth` consecutive padded Z planes, stored
    modulo `depth` (one weight per voxel: every output has the window's)."""

    def __init__(self, depth: int, padded: tuple[int, ...], channels: int) -> None:
        self.depth = depth
        self.values = np.zeros((channels, depth, padded[1], padded[2]), np.float32)
        self.weights = np.zeros((depth, padded[1], padded[2]), np.float32)

    def _parts(self, z0: int, z1: int) -> Iterator[tuple[int, slice, slice]]:
        """(first Z, ring slice, slice of a z0..z1 array) for each unwrapped piece of planes z0..z1."""
        z = z0
        while z < z1:
            at = z % self.depth
            n = min(z1 - z, self.depth - at)
            yield z, slice(at, at + n), slice(z - z0, z - z0 + n)
            z += n

    def add(self, z0: int, ys: slice, xs: slice, weighted: np.ndarray, weight: np.ndarray) -> None:
        for _, ring, part in self._parts(z0, z0 + weighted.shape[1]):
            self.values[:, ring, ys, xs] += weighted[:, part]
            self.weights[ring, ys, xs] += weight[part]

    def partial(self, z0: int, z1: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Views of the sums and weights of planes z0..z1, in consecutive parts."""
        parts = [ring for _, ring, _ in self._parts(z0, z1)]
        return [self.values[:, ring] for ring in parts], [self.weights[ring] for ring in parts]

    def load(self, z0: int, values: list[np.ndarray], weights: list[np.ndarray]) -> None:
        """Planes z0.. as `partial` gave them (into a new ring)."""
        empty = np.zeros((0, *self.weights.shape[1:]), np.float32)
        values_ = np.concatenate([empty[None].repeat(len(self.values), 0), *values], axis=1)
        weights_ = np.concatenate([empty, *weights])
        for _, ring, part in self._parts(z0, z0 + len(weights_)):
            self.values[:, ring] = values_[:, part]
            self.weights[ring] = weights_[part]

    def take(self, z0: int, z1: int) -> Iterator[tuple[int, np.ndarray]]:
        """The blended planes z0..z1 (every window covering them added), divided in place: each is a
        view of the ring, valid until the next one is asked for; then its slots are cleared."""
        for z, ring, _ in self._parts(z0, z1):
            planes = self.values[:, ring]
            planes /= self.weights[ring]
            yield z, planes
            self.values[:, ring] = 0
            self.weights[ring] = 0


def _read(
    volume: Readable, normalisation: Normalisation, window: tuple[slice, ...], before: list[int]
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
    """The planes (C, n, Y, X) that belong to the volume, without padding, in volume coordinates."""
    z0, z1 = max(base, before[0]), min(base + planes.shape[1], before[0] + shape[0])
    if z1 > z0:
        ys, xs = slice(before[1], before[1] + shape[1]), slice(before[2], before[2] + shape[2])
        yield z0 - before[0], planes[:, z0 - base : z1 - base, ys, xs]
