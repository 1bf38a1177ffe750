"""Probe for issue 27: a standalone WNet3D (two MONAI BasicUNets) trained on images alone with a
soft N-cut and a reconstruction loss, scored against labels it never sees. One JSON line per run.

Not voxseg's engine: it answers which N-cut, scaling and sampling make the encoder's classes follow
the nuclei before any of it goes into voxseg (docs/self_supervised.md holds the results).

    .venv/bin/python benchmarks/wnet_probe.py --steps 150 --ncut mean --sigma-i 1 --scale patch
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.networks.nets import BasicUNet
from skimage.filters import threshold_li

from voxseg.data.normalise import normalise

QCANET = Path(__file__).resolve().parents[2] / "shared" / "data" / "qcanet"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=QCANET, help="folder with images/ and labels/")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--features", default="8,8,16,32,64,8", help="BasicUNet's six feature counts")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--ncut", choices=("mean", "pairwise"), default="mean")
    parser.add_argument("--sigma-i", type=float, default=1.0)
    parser.add_argument("--power", type=int, choices=(2, 4), default=4, help="of the intensity difference")
    parser.add_argument("--sigma-x", type=float, default=4.0)
    parser.add_argument("--radius", type=int, default=2)
    parser.add_argument("--rec", type=float, default=0.5, help="weight of the reconstruction loss")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--patch", default="32,64,64")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument(
        "--scale",
        choices=("clip", "patch"),
        default="patch",
        help="clip: 1-99.8 percentiles to [0, 1]; patch: min-max of each patch, the "
        "N-cut on [0, 100] as napari-cellseg3d",
    )
    parser.add_argument(
        "--bright",
        type=float,
        default=0.0,
        help="share of patches centred on a voxel among the brightest 2 percent",
    )
    parser.add_argument(
        "--prior", type=float, default=0.0, help="start the last class at this share (0: plain)"
    )
    parser.add_argument(
        "--warm", type=float, default=0.0, help="weight of a BCE to the N-cut's best threshold partition"
    )
    parser.add_argument("--warm-steps", type=int, default=0, help="steps the warm term lasts (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def clipped(image: np.ndarray) -> np.ndarray:
    z = normalise(image.astype(np.float32))
    low, high = np.percentile(z, (1, 99.8))
    return np.clip((z - low) / (high - low), 0, 1).astype(np.float32)


def per_patch(x: torch.Tensor) -> torch.Tensor:
    low, high = x.amin((1, 2, 3, 4), keepdim=True), x.amax((1, 2, 3, 4), keepdim=True)
    return (x - low) / (high - low + 1e-6)


class SoftNCut:
    """K minus the summed normalised association of each class (W-Net, Xia & Kulis 2017)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, r = args, args.radius
        side = torch.arange(-r, r + 1, dtype=torch.float32)
        squared = side[:, None, None] ** 2 + side[None, :, None] ** 2 + side[None, None, :] ** 2
        self.kernel = torch.exp(-squared / (2 * args.sigma_x**2))[None, None]
        self.offsets = [
            (dz, dy, dx)
            for dz in range(-r, r + 1)
            for dy in range(-r, r + 1)
            for dx in range(-r, r + 1)
            if 0 < dz * dz + dy * dy + dx * dx <= r * r and (dz, dy, dx) > (0, 0, 0)
        ]

    def __call__(self, prob: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.class_mean(prob, x) if self.args.ncut == "mean" else self.pairwise(prob, x)

    def class_mean(self, prob: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """napari-cellseg3d's approximation: each voxel weighed by its distance to the class mean."""
        a, total = self.args, 0.0
        for k in range(prob.shape[1]):
            p = prob[:, k : k + 1]
            mean = (x * p).mean((2, 3, 4), keepdim=True) / (p.mean((2, 3, 4), keepdim=True) + 1e-5)
            w = torch.exp(-(((x - mean) ** 2) ** (a.power // 2)) / a.sigma_i**2)
            numerator = (p * F.conv3d(p * w, self.kernel, padding=a.radius)).sum((1, 2, 3, 4))
            denominator = (p * F.conv3d(w, self.kernel, padding=a.radius)).sum((1, 2, 3, 4))
            total = total + (numerator / (denominator + 1e-6)).mean()
        return prob.shape[1] - total

    def pairwise(self, prob: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Pairwise affinities to the neighbours within the radius, each pair once."""
        a = self.args
        assoc = degree = torch.zeros(x.shape[0], prob.shape[1])
        for offset in self.offsets:
            (xa, xb), (pa, pb) = _overlap(x, offset), _overlap(prob, offset)
            distance = sum(v * v for v in offset) / a.sigma_x**2
            w = torch.exp(-((xa - xb) ** 2) / a.sigma_i**2 - distance)
            assoc = assoc + 2 * (pa * pb * w).sum((2, 3, 4))
            degree = degree + (pa * w).sum((2, 3, 4)) + (pb * w).sum((2, 3, 4))
        return prob.shape[1] - (assoc / (degree + 1e-6)).sum(1).mean()


def _overlap(t: torch.Tensor, offset: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """`t` and `t` moved by `offset`, both cropped to where they overlap."""
    here, there = [slice(None)] * 2, [slice(None)] * 2
    for axis, d in enumerate(offset, start=2):
        here.append(slice(max(0, -d), t.shape[axis] - max(0, d)))
        there.append(slice(max(0, d), t.shape[axis] - max(0, -d)))
    return t[tuple(here)], t[tuple(there)]


def best_partition(image: np.ndarray, ncut: SoftNCut, samples: int = 16) -> np.ndarray:
    """The threshold of the blurred image whose partition has the lowest N-cut on random patches."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    blurred = ndimage.gaussian_filter(image, (0.5, 1, 1))
    patch = tuple(min(p, s) for p, s in zip((32, 64, 64), image.shape, strict=True))
    regions = []
    for _ in range(samples):
        start = [rng.integers(0, s - p + 1) for s, p in zip(image.shape, patch, strict=True)]
        regions.append(tuple(slice(b, b + p) for b, p in zip(start, patch, strict=True)))
    x = torch.stack([torch.from_numpy(image[r]) for r in regions])[:, None]
    best = (np.inf, 0.0)
    for q in np.linspace(0.5, 0.995, 100):
        cut = np.quantile(blurred, q)
        m = torch.stack([torch.from_numpy((blurred[r] > cut).astype(np.float32)) for r in regions])[:, None]
        best = min(best, (float(ncut(torch.cat([1 - m, m], 1), x)), cut))
    return (blurred > best[1]).astype(np.float32)


def main() -> None:
    a = arguments()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    torch.set_num_threads(2)
    names = sorted(p.name for p in (a.data / "images").glob("*.tif"))
    images = [clipped(tifffile.imread(a.data / "images" / n)) for n in names]
    truths = [tifffile.imread(a.data / "labels" / n) > 0 for n in names]
    features = tuple(int(v) for v in a.features.split(","))
    encoder, decoder = BasicUNet(3, 1, a.classes, features), BasicUNet(3, a.classes, 1, features)
    if a.prior:
        last = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv3d)][-1]
        torch.nn.init.zeros_(last.bias)
        last.bias.data[-1] = float(np.log(a.prior * (a.classes - 1) / (1 - a.prior)))
    parameters = [*encoder.parameters(), *decoder.parameters()]
    optimiser = torch.optim.Adam(parameters, lr=a.lr)
    ncut, patch = SoftNCut(a), tuple(int(v) for v in a.patch.split(","))
    partitions = [best_partition(image, ncut) for image in images]
    brightest = [np.argwhere(image > np.percentile(image, 98)) for image in images]
    scaled = per_patch if a.scale == "patch" else (lambda t: t)
    to_ncut = 100.0 if a.scale == "patch" else 1.0

    def patches() -> torch.Tensor:
        batch = []
        for _ in range(a.batch):
            index = rng.integers(len(images))
            image = images[index]
            if rng.random() < a.bright:
                centre = brightest[index][rng.integers(len(brightest[index]))]
                start = [
                    int(np.clip(c - p // 2, 0, max(0, s - p)))
                    for c, s, p in zip(centre, image.shape, patch, strict=True)
                ]
            else:
                start = [rng.integers(0, max(1, s - p + 1)) for s, p in zip(image.shape, patch, strict=True)]
            region = tuple(slice(b, b + p) for b, p in zip(start, patch, strict=True))
            pair = np.stack([image[region], partitions[index][region]])
            pair = np.pad(
                pair,
                [(0, 0)] + [(0, p - s) for s, p in zip(pair.shape[1:], patch, strict=True)],
                mode="reflect",
            )
            for axis in (2, 3):
                if rng.random() < 0.5:
                    pair = np.flip(pair, axis)
            batch.append(pair.copy())
        both = torch.from_numpy(np.stack(batch))
        return both[:, :1], both[:, 1:]

    started, history = time.perf_counter(), []
    for step in range(a.steps):
        x, target = patches()
        x = scaled(x)
        logits = encoder(x)
        prob = torch.softmax(logits, 1)
        cut, reconstruction = ncut(prob, x * to_ncut), F.mse_loss(decoder(prob), x)
        loss = cut + a.rec * reconstruction
        if a.warm and (not a.warm_steps or step < a.warm_steps):
            loss = loss + a.warm * F.binary_cross_entropy(prob[:, -1:].clamp(1e-6, 1 - 1e-6), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 25 == 0:
            history.append([step, round(cut.item(), 4), round(reconstruction.item(), 4)])
    seconds = time.perf_counter() - started
    encoder.eval()
    scores = []
    with torch.no_grad():
        for image, truth in zip(images, truths, strict=True):
            x = torch.from_numpy(image)[None, None]
            prob = sliding_window_inference(
                x, patch, 2, lambda t: torch.softmax(encoder(scaled(t)), 1), overlap=0.25, mode="gaussian"
            )[0].numpy()
            foreground = prob[int(np.argmax([(image * p).sum() / p.sum() for p in prob]))]

            def dice(mask: np.ndarray, truth: np.ndarray = truth) -> float:
                return round(float(2 * (mask & truth).sum() / (mask.sum() + truth.sum())), 3)

            cuts = np.linspace(0.05, 0.95, 19)
            scores.append(
                {
                    "dice": dice(foreground > 0.5),
                    "dice_li": dice(foreground > threshold_li(foreground)),
                    "dice_best_cut": max(dice(foreground > c) for c in cuts),
                    "share": round(float((foreground > 0.5).mean()), 4),
                    "true_share": round(float(truth.mean()), 4),
                }
            )
    print(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(a).items()},
                "train_s": round(seconds, 1),
                "volumes": dict(zip(names, scores, strict=True)),
                "history": history,
            }
        )
    )


if __name__ == "__main__":
    main()
