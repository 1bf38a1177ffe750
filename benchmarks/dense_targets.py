"""Which target separates densely packed nuclei, and which normalisation keeps a mask's share honest?

    .venv/bin/python benchmarks/dense_targets.py TRAIN_IMAGE TRAIN_LABELS TEST_IMAGE TEST_LABELS
        --target foreground|distance [--norm zscore|percentile] [--seed 0] [--steps 256]

The screen behind issue 38's choices (docs/accuracy.md, "Fourth round"). One MONAI SegResNetDS,
shaped by the voxel size as voxseg's default, is trained on one volume with the same patches, flips
and brightness/contrast changes, and scored on a volume it never saw:

- `foreground`: one output, Dice + cross-entropy (voxseg's default before issue 38).
- `distance`: a second output trained beside it with binary cross-entropy on each nucleus's
  Euclidean distance to its own boundary (in µm), divided by that nucleus's largest: StarDist's
  object probability, 1 at a centre and 0 at the boundary it shares with a neighbour; voxseg's own
  target (`voxseg.data.distance`: nuclei cut by a face continue past it, which the screen of
  docs/accuracy.md did not yet do).

Normalisation: `zscore` (clip at the 1 and 99.8 percentiles, then z-score; voxseg's before issue 38)
or `percentile` (the same clip mapped to 0..1, CSBDeep's). One JSON line: mask Dice, the predicted
foreground share against the truth's, and instance F1@0.5 of voxseg's scaled watershed of the mask
and, for `distance`, of seeds found in the predicted distance.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import tifffile
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import SegResNetDS
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from voxseg.data.distance import normalised_distance
from voxseg.inference.model.instances import label_instances, watershed_scale
from voxseg.inference.scoring.metrics import dice, match_instances

MIN_SIZE = 30


def normalised(path: str, norm: str) -> np.ndarray:
    image = tifffile.imread(path).astype(np.float32)
    low, high = np.percentile(image, (1, 99.8))
    clipped = np.clip(image, low, high)
    if norm == "percentile":
        return ((clipped - low) / (high - low)).astype(np.float32)
    return ((clipped - clipped.mean()) / clipped.std()).astype(np.float32)


def patches(image, targets, patch, batch, rng):
    foreground = np.argwhere(targets[0] > 0)
    images, labels = [], []
    for _ in range(batch):
        if rng.random() < 0.33:
            centre = foreground[rng.integers(len(foreground))]
            sides = zip(centre, patch, image.shape, strict=True)
            origin = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in sides]
        else:
            origin = [int(rng.integers(0, s - p + 1)) for p, s in zip(patch, image.shape, strict=True)]
        box = tuple(slice(o, o + p) for o, p in zip(origin, patch, strict=True))
        x, y = image[box], targets[(slice(None), *box)]
        for axis in range(3):
            if rng.random() < 0.5:
                x, y = np.flip(x, axis), np.flip(y, axis + 1)
        scale, shift = rng.uniform(0.75, 1.25), rng.uniform(-0.1, 0.1) * (x.max() - x.min())
        images.append(x[None] * scale + shift)
        labels.append(y)
    return torch.from_numpy(np.stack(images).astype(np.float32)), torch.from_numpy(np.stack(labels))


def distance_instances(mask, distance, spacing, radius, how):
    """Instances seeded in the predicted distance, flooded down it inside the mask."""
    smooth = ndi.gaussian_filter(distance, sigma=[0.25 * radius / s for s in spacing])
    if how.startswith("core"):
        seeds = label((smooth > float(how[4:])) & mask)
    else:
        seeds = label(h_maxima(smooth, float(how[1:])) & mask)
    labels = watershed(-smooth, seeds, mask=mask)
    sizes = np.bincount(labels.ravel())
    small = sizes < MIN_SIZE
    small[0] = False
    labels[small[labels]] = 0
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("train_image", "train_labels", "test_image", "test_labels"):
        parser.add_argument(name)
    parser.add_argument("--target", choices=("foreground", "distance"), default="distance")
    parser.add_argument("--norm", choices=("zscore", "percentile"), default="percentile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--patch", default="32,64,64")
    parser.add_argument("--spacing", default="0.284,0.127,0.127", help="Z,Y,X µm (GoNuclear's)")
    parser.add_argument("--object-radius", type=float, default=2.09, help="µm, as the run measures it")
    parser.add_argument("--keep", help="save the probabilities (C, Z, Y, X) to this .npy file")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    patch = tuple(int(v) for v in args.patch.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))

    image = normalised(args.train_image, args.norm)
    instances = tifffile.imread(args.train_labels).astype(np.int32)
    targets = [instances > 0]
    if args.target == "distance":
        targets.append(normalised_distance(instances, spacing, args.object_radius))
    targets = np.stack(targets).astype(np.float32)
    channels = len(targets)

    net = SegResNetDS(
        spatial_dims=3,
        in_channels=1,
        out_channels=channels,
        init_filters=8,
        resolution=spacing,
        norm=("group", {"num_groups": 8}),
    )
    optimiser = torch.optim.Adam(net.parameters(), 3e-3)
    dice_ce = DiceCELoss(sigmoid=True)
    bce = torch.nn.BCEWithLogitsLoss()
    started = time.perf_counter()
    for _ in range(args.steps):
        x, y = patches(image, targets, patch, 2, rng)
        out = net(x)
        out = out[0] if isinstance(out, list) else out
        loss = dice_ce(out[:, :1], y[:, :1])
        if channels == 2:
            loss = loss + bce(out[:, 1:], y[:, 1:])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    trained = time.perf_counter() - started

    net.eval()
    test = torch.from_numpy(normalised(args.test_image, args.norm))[None, None]
    truth = tifffile.imread(args.test_labels)
    with torch.no_grad():
        logits = sliding_window_inference(test, patch, 4, net, overlap=0.5, mode="gaussian")
    probability = torch.sigmoid(logits)[0].numpy()
    if args.keep:
        np.save(args.keep, probability)
    mask = probability[0] > 0.5
    h, smoothing = watershed_scale(args.object_radius)

    def f1(labels: np.ndarray) -> float:
        return round(match_instances(labels, truth, 0.5).f1, 4)

    record = {"target": args.target, "norm": args.norm, "seed": args.seed, "steps": args.steps}
    record["train_seconds"] = round(trained, 1)
    record["dice"] = round(dice(mask, truth > 0), 4)
    record["share"] = round(float(mask.mean()), 3)
    record["true_share"] = round(float((truth > 0).mean()), 3)
    common = {"spacing": spacing, "min_size": MIN_SIZE, "h": h, "smoothing": smoothing}
    record["f1_watershed"] = f1(label_instances(mask, "watershed", probability[0], **common))
    if channels == 2:
        for how in ("core0.4", "core0.5", "core0.6", "h0.1", "h0.2"):
            seeded = distance_instances(mask, probability[1], spacing, args.object_radius, how)
            record[f"f1_{how}"] = f1(seeded)
        dmask = probability[1] > 0.15
        record["dice_dist0.15"] = round(dice(dmask, truth > 0), 4)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
