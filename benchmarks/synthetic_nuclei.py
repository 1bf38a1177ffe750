"""A dense synthetic nuclei set: touching ellipsoids of varied size, shape and brightness.

Why: separating nuclei that touch is what real tissue asks of a model, and the synthetic balls of
the other sets are mostly apart. This set packs ellipsoids so that most touch a neighbour, with no
darker seam between them (real packed nuclei often have none: the boundary must come from shape),
so the instance path is tested and benchmarked without real data.

    .venv/bin/python benchmarks/synthetic_nuclei.py --out DIR [--n 3] [--seed 0]

writes DIR/images/dense_<seed>.tif and DIR/labels/dense_<seed>.tif (ImageJ TIFFs with the voxel size).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

ATTEMPTS = 4000  # candidate nuclei tried before a volume is given up as full
MAX_OVERLAP = 0.15  # share of a candidate already taken above which it is rejected
NEW_CLUSTER = 0.05  # chance that a candidate starts a cluster anywhere: the clusters spread over the volume


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A random rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _reach(axes: np.ndarray, rotation: np.ndarray, direction: np.ndarray) -> float:
    """Distance from an ellipsoid's centre to its surface along a unit `direction`."""
    return float(1.0 / np.linalg.norm(rotation.T @ direction / axes))


def dense_nuclei(
    shape: tuple[int, int, int] = (48, 96, 96),
    seed: int = 0,
    radius: tuple[float, float] = (4.0, 7.0),
    fill: float = 0.35,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    noise: float = 0.08,
    blur: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, instance labels uint16, ids 1..N) of packed nuclei; radii in µm, Z×Y×X `spacing`.

    Each nucleus (semi-axes ±25 % around a radius, randomly turned) is grown against a placed one
    (centre at 0.9–1.0 of the sum of their reaches along a random direction), so most touch, or now
    and then starts a cluster anywhere; where two overlap the earlier keeps the voxels, which gives
    the flat shared faces of packed nuclei. Nuclei may be cut by the faces, as in real crops.
    Placement stops at `fill` of the volume or after ATTEMPTS candidates.
    """
    rng = np.random.default_rng(seed)
    size = np.asarray(spacing, float)
    extent = np.asarray(shape) * size
    labels = np.zeros(shape, np.uint16)
    nuclei: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # centre (µm), semi-axes, rotation
    target, filled = fill * labels.size, 0
    for _ in range(ATTEMPTS):
        if filled >= target:
            break
        axes = rng.uniform(*radius) * rng.uniform(0.75, 1.25, 3)
        rotation = _rotation(rng)
        if nuclei and rng.random() > NEW_CLUSTER:
            centre, parent_axes, parent_rotation = nuclei[rng.integers(len(nuclei))]
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            reach = _reach(parent_axes, parent_rotation, direction) + _reach(axes, rotation, direction)
            centre = centre + direction * reach * rng.uniform(0.9, 1.0)
            if np.any(centre < 0) or np.any(centre >= extent):
                continue
        else:
            centre = rng.uniform(0, extent)
        low = np.maximum(np.floor((centre - axes.max()) / size).astype(int), 0)
        high = np.minimum(np.ceil((centre + axes.max()) / size).astype(int) + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        offset = np.mgrid[box] * size[:, None, None, None] - centre[:, None, None, None]
        local = np.tensordot(rotation.T, offset, axes=1) / axes[:, None, None, None]
        inside = (local**2).sum(0) <= 1.0
        free = inside & (labels[box] == 0)
        if free.sum() < (1 - MAX_OVERLAP) * inside.sum() or ndimage.label(free)[1] != 1:
            continue  # heavily overlapped, or cut in pieces by its neighbours
        nuclei.append((centre, axes, rotation))
        labels[box][free] = len(nuclei)
        filled += int(free.sum())
    brightness = np.concatenate([[0.0], rng.uniform(0.5, 1.5, len(nuclei))]).astype(np.float32)
    image = 0.2 + 0.8 * brightness[labels]
    image = ndimage.gaussian_filter(image, blur) + rng.normal(0, noise, shape).astype(np.float32)
    return image.astype(np.float32), labels


def touching_share(labels: np.ndarray) -> float:
    """Share of nuclei with a 6-connected neighbour of another id (0 with no nuclei)."""
    ids = np.unique(labels[labels > 0])
    if ids.size == 0:
        return 0.0
    touching: set[int] = set()
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)[:-1].ravel()
        b = np.moveaxis(labels, axis, 0)[1:].ravel()
        contact = (a > 0) & (b > 0) & (a != b)
        touching.update(np.unique(a[contact]).tolist(), np.unique(b[contact]).tolist())
    return len(touching) / ids.size


def write_volume(
    folder: Path, name: str, image: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float]
) -> None:
    """`folder/images/name.tif` and `folder/labels/name.tif`, ImageJ TIFFs carrying the voxel size (µm)."""
    z, y, x = spacing
    for kind, array in (("images", image), ("labels", labels)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(
            folder / kind / f"{name}.tif",
            array,
            imagej=True,
            resolution=(1 / x, 1 / y),
            metadata={"spacing": z, "unit": "um", "axes": "ZYX"},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=3, help="volumes, seeds SEED..SEED+N-1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for seed in range(args.seed, args.seed + args.n):
        image, labels = dense_nuclei(seed=seed)
        write_volume(args.out, f"dense_{seed}", image, labels, (1.0, 1.0, 1.0))
        share, fill = touching_share(labels), (labels > 0).mean()
        print(f"dense_{seed}: {labels.max()} nuclei, {share:.0%} touching, fill {fill:.2f}")


if __name__ == "__main__":
    main()
