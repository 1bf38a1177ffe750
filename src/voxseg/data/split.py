"""Which voxels validate a run when no `--val-images` are given.

Three volumes or more (or volumes too small for blocks): whole volumes are held out (seeded
shuffle), as nnU-Net's folds do. One volume, or two: whole-volume validation would take half the
data away or leave nothing to train on, and a single slab cut from one end (what voxseg did before)
can hold no object at all (QCANet's 8-cell embryo: the last 24 columns are empty) or be thinner than
one object along a coarse axis. So each volume is divided into a grid of blocks of about equal
physical size (about ten per volume, never thinner than `MIN_BLOCK_SIDE` voxels), and a few blocks
spread through it, holding foreground in about the volume's own share (never none), validate.
Training sees the whole image but not the labels of those blocks, nor of a margin around them (so a
nucleus cut by a block's face does not teach its own validation half); validation scores the blocks
only, each predicted with the volume around it, as `voxseg predict` will see it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voxseg.data.labels import FOREGROUND, IGNORED
from voxseg.data.volumes import OnDisk, Volume
from voxseg.errors import DataError

Box = tuple[slice, slice, slice]

#: with fewer volumes than this, blocks of every volume validate instead of whole volumes
WHOLE_VOLUME_SPLIT_MIN = 3
#: blocks a volume is divided into, about (each about cubic in µm)
BLOCKS_PER_VOLUME = 10
MIN_BLOCK_SIDE = 8
#: the margin around held-out blocks that neither trains nor validates, as a share of a block's side
MARGIN_SHARE = 0.1
#: voxels of image around the blocks that validation predicts with them (half a default patch)
CONTEXT = 32
#: block combinations scored at most (all of them when there are fewer)
MAX_COMBINATIONS = 4000


@dataclass(frozen=True)
class Split:
    """Training and validation volumes, and the sentence the log says about them."""

    train: list[Volume]
    val: list[Volume]
    description: str
    blocks_held_out: bool = False  # training labels then hold IGNORED voxels (the loss masks them)


def split_volumes(volumes: list[Volume], train_fraction: float, seed: int) -> Split:
    """Whole volumes for many, blocks of every volume for few (see the module's docstring)."""
    grids = [BlockGrid.of(volume.shape, volume.voxel_size) for volume in volumes]
    too_small = [volume for volume, grid in zip(volumes, grids, strict=True) if grid.count < 2]
    if len(volumes) >= WHOLE_VOLUME_SPLIT_MIN or (too_small and len(volumes) > 1):
        return _whole_volumes(volumes, train_fraction, seed)
    if too_small:
        raise DataError(
            f"{volumes[0].name}: the volume ({volumes[0].shape}) is too small to hold out validation "
            f"blocks of at least {MIN_BLOCK_SIDE} voxels; give --val-images/--val-labels"
        )
    rng = np.random.default_rng(seed)
    train, val, lines = [], [], []
    for volume, grid in zip(volumes, grids, strict=True):
        counts = np.array([_class_counts(volume.label, grid.box(b)) for b in range(grid.count)])
        held = _choose_blocks(volume.name, grid, counts, 1 - train_fraction, rng)
        margin = grid.margin()
        train.append(_without(volume, [grid.grown(b, margin) for b in held]))
        val.append(_only(volume, [grid.box(b) for b in held]))
        lines.append(_describe(volume, grid, counts, held, margin))
    how = "few volumes, so blocks of each validate: " if len(volumes) > 1 else "only one volume: "
    how += "; ".join(lines)
    how += " (training never sees the labels of the blocks or of the margin around them)"
    return Split(train, val, how, blocks_held_out=True)


def _whole_volumes(volumes: list[Volume], train_fraction: float, seed: int) -> Split:
    order = np.random.default_rng(seed).permutation(len(volumes))
    n_train = min(max(round(len(volumes) * train_fraction), 1), len(volumes) - 1)
    train = [volumes[i] for i in order[:n_train]]
    val = [volumes[i] for i in order[n_train:]]
    how = (
        f"{len(train)} volume(s) for training, {len(val)} for validation "
        f"(train fraction {train_fraction:g}, shuffled with seed {seed}): validation = "
        + ", ".join(v.name for v in val)
    )
    return Split(train, val, how)


@dataclass(frozen=True)
class BlockGrid:
    """A volume cut into `parts[axis]` blocks along each axis (edges rounded to whole voxels)."""

    shape: tuple[int, int, int]
    parts: tuple[int, int, int]

    @classmethod
    def of(cls, shape: tuple[int, int, int], voxel_size: Sequence[float] | None) -> BlockGrid:
        """About `BLOCKS_PER_VOLUME` blocks, each about as long in µm along every axis."""
        spacing = voxel_size or (1.0, 1.0, 1.0)
        extents = [side * step for side, step in zip(shape, spacing, strict=True)]
        block = (math.prod(extents) / BLOCKS_PER_VOLUME) ** (1 / 3)
        parts = tuple(
            max(1, min(round(extent / block), side // MIN_BLOCK_SIDE))
            for extent, side in zip(extents, shape, strict=True)
        )
        return cls(shape, parts)  # type: ignore[arg-type]

    @property
    def count(self) -> int:
        return math.prod(self.parts)

    def edges(self, axis: int) -> np.ndarray:
        return np.linspace(0, self.shape[axis], self.parts[axis] + 1).round().astype(int)

    def index(self, block: int) -> tuple[int, int, int]:
        return tuple(int(i) for i in np.unravel_index(block, self.parts))  # type: ignore[return-value]

    def box(self, block: int) -> Box:
        return tuple(  # type: ignore[return-value]
            slice(int(self.edges(axis)[i]), int(self.edges(axis)[i + 1]))
            for axis, i in enumerate(self.index(block))
        )

    def margin(self) -> tuple[int, int, int]:
        """Voxels held out around a block on each axis: `MARGIN_SHARE` of its side, at least one."""
        sides = zip(self.shape, self.parts, strict=True)
        return tuple(max(1, round(MARGIN_SHARE * side / parts)) for side, parts in sides)  # type: ignore[return-value]

    def grown(self, block: int, margin: tuple[int, int, int]) -> Box:
        return tuple(  # type: ignore[return-value]
            slice(max(0, s.start - m), min(side, s.stop + m))
            for s, m, side in zip(self.box(block), margin, self.shape, strict=True)
        )

    def adjacent(self, first: int, second: int) -> bool:
        """Whether two blocks share a face."""
        a, b = self.index(first), self.index(second)
        return sum(abs(i - j) for i, j in zip(a, b, strict=True)) == 1


def _choose_blocks(
    name: str, grid: BlockGrid, counts: np.ndarray, share: float, rng: np.random.Generator
) -> list[int]:
    """`share` of the blocks (at least one, never all), annotated, together holding foreground in
    about the volume's share (never none) and, where possible, no two sharing a face. `counts`:
    (foreground, annotated) voxels of every block."""
    foreground, annotated = counts[:, 0], counts[:, 1]
    if not foreground.any():
        raise DataError(f"{name}: no foreground voxel; labels must mark the cells with values > 0")
    candidates = [b for b in range(grid.count) if annotated[b] > 0]
    wanted = min(max(1, round(share * grid.count)), grid.count - 1, len(candidates))
    target = foreground.sum() / max(1, annotated.sum())
    combinations = list(itertools.combinations(candidates, wanted))
    if len(combinations) > MAX_COMBINATIONS:
        picked = rng.choice(len(combinations), MAX_COMBINATIONS, replace=False)
        combinations = [combinations[i] for i in picked]
    else:
        combinations = [combinations[i] for i in rng.permutation(len(combinations))]

    def cost(blocks: tuple[int, ...]) -> float:
        held = list(blocks)
        if not foreground[held].any():
            return math.inf
        fg_share = foreground[held].sum() / annotated[held].sum()
        touching = sum(grid.adjacent(a, b) for a, b in itertools.combinations(blocks, 2))
        return abs(fg_share - target) / target + 0.25 * touching

    return sorted(min(combinations, key=cost))


def _class_counts(label: np.ndarray | OnDisk, box: Box) -> tuple[int, int]:
    """(foreground, annotated) voxels of a box."""
    part = np.asarray(label[box])
    return int((part == FOREGROUND).sum()), int((part != IGNORED).sum())


def _without(volume: Volume, boxes: list[Box]) -> Volume:
    """The volume with the labels of `boxes` marked not annotated."""
    if isinstance(volume.label, OnDisk):
        label: np.ndarray | OnDisk = volume.label.held_out(boxes)
    else:
        label = volume.label.copy()
        for box in boxes:
            label[box] = IGNORED
    return dataclasses.replace(volume, label=label)  # the distance target is masked by the label


def _only(volume: Volume, boxes: list[Box]) -> Volume:
    """The blocks `boxes` with `CONTEXT` voxels of image around them, in memory, the labels of
    everything but the blocks marked not annotated."""
    crop = tuple(
        slice(
            max(0, min(box[axis].start for box in boxes) - CONTEXT),
            min(side, max(box[axis].stop for box in boxes) + CONTEXT),
        )
        for axis, side in enumerate(volume.shape)
    )
    label = np.full([s.stop - s.start for s in crop], IGNORED, np.uint8)
    for box in boxes:
        inner = tuple(slice(b.start - c.start, b.stop - c.start) for b, c in zip(box, crop, strict=True))
        label[inner] = np.asarray(volume.label[box])
    origin = tuple(o + c.start for o, c in zip(volume.origin, crop, strict=True))
    image = np.asarray(volume.image[crop], np.float32)
    name = f"{volume.name}[{len(boxes)} block{'s' if len(boxes) > 1 else ''}]"
    return Volume(name, image, label, origin, volume.voxel_size)  # type: ignore[arg-type]


def _describe(
    volume: Volume, grid: BlockGrid, counts: np.ndarray, held: list[int], margin: tuple[int, int, int]
) -> str:
    def box_text(box: Box) -> str:
        return " ".join(f"{'ZYX'[a]} {s.start}-{s.stop}" for a, s in enumerate(box))

    fg = counts[held, 0].sum() / max(1, counts[held, 1].sum())
    whole = counts.sum(axis=0)
    voxels = sum(math.prod(s.stop - s.start for s in grid.box(b)) for b in held)
    return (
        f"{volume.name}: {len(held)} of its {'×'.join(map(str, grid.parts))} blocks ("
        + "; ".join(box_text(grid.box(b)) for b in held)
        + f"), {voxels / math.prod(volume.shape):.0%} of its voxels, {fg:.1%} foreground "
        f"(the volume: {whole[0] / max(1, whole[1]):.1%}), margin {'×'.join(map(str, margin))} voxels"
    )
