"""Does a boundary channel trained beside the foreground separate densely packed nuclei better?

    .venv/bin/python benchmarks/boundary_channel.py TRAIN_IMAGE TRAIN_LABELS TEST_IMAGE TEST_LABELS
        --channels 1|2 [--seed 0] [--steps 128] [--object-radius 2.09]

The experiment behind "Tried, not kept: a boundary channel" in docs/accuracy.md. PlantSeg and
GoNuclear's own U-Nets predict the nuclei and their boundaries as two channels and seed the watershed
from foreground minus boundary. Here one MONAI SegResNetDS is trained both ways with the same patches,
flips and brightness augmentation, Dice + cross-entropy per channel and a budget like voxseg's defaults
(128 steps of 2 patches of 32×64×64). The scored volume is never seen in training. One JSON line:
mask Dice, and instance F1@0.5 of voxseg's scaled watershed on the foreground, of boundary-seeded
watersheds (seeds: foreground and boundary below 0.3, 0.5, 0.7) and of the watershed of the
foreground times (1 − boundary). It trains outside voxseg's engine on purpose: a second output would
need the data, loss, inference and export paths changed, so this measures first whether it pays.
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
from skimage.measure import label
from skimage.segmentation import find_boundaries, watershed

from voxseg.inference.model.instances import label_instances, watershed_scale
from voxseg.inference.scoring.metrics import dice, match_instances

MIN_SIZE = 30  # voxels; debris below it is dropped, as predict's default


def normalised(path: str) -> np.ndarray:
    image = tifffile.imread(path).astype(np.float32)
    low, high = np.percentile(image, (1, 99.8))
    return (image - low) / (high - low)


def patches(image, targets, patch, batch, rng):
    """A batch of patches, a third centred on a foreground voxel, flipped and brightened at random."""
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
        images.append(x[None] * rng.uniform(0.75, 1.25))
        labels.append(y)
    return torch.from_numpy(np.stack(images).astype(np.float32)), torch.from_numpy(np.stack(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("train_image", "train_labels", "test_image", "test_labels"):
        parser.add_argument(name)
    parser.add_argument("--channels", type=int, choices=(1, 2), default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--patch", default="32,64,64")
    parser.add_argument("--spacing", default="0.284,0.127,0.127", help="Z,Y,X µm (GoNuclear's)")
    parser.add_argument("--object-radius", type=float, default=2.09, help="µm, as the run measures it")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    patch = tuple(int(v) for v in args.patch.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))

    image = normalised(args.train_image)
    instances = tifffile.imread(args.train_labels)
    boundary = find_boundaries(instances, mode="inner") & (instances > 0)
    targets = np.stack([instances > 0, boundary])[: args.channels].astype(np.float32)

    net = SegResNetDS(spatial_dims=3, in_channels=1, out_channels=args.channels, init_filters=32)
    optimiser = torch.optim.Adam(net.parameters(), 3e-3)
    loss_of = DiceCELoss(sigmoid=True)
    started = time.perf_counter()
    for _ in range(args.steps):
        x, y = patches(image, targets, patch, 2, rng)
        out = net(x)
        out = out[0] if isinstance(out, list) else out
        loss = sum(loss_of(out[:, c : c + 1], y[:, c : c + 1]) for c in range(args.channels))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    trained = time.perf_counter() - started

    net.eval()
    test = torch.from_numpy(normalised(args.test_image))[None, None]
    truth = tifffile.imread(args.test_labels)
    with torch.no_grad():
        logits = sliding_window_inference(test, patch, 4, net, overlap=0.5, mode="gaussian")
    probability = torch.sigmoid(logits)[0].numpy()
    mask = probability[0] > 0.5
    h, smoothing = watershed_scale(args.object_radius)

    def f1(labels: np.ndarray) -> float:
        return round(match_instances(labels, truth, 0.5).f1, 4)

    record = {"channels": args.channels, "seed": args.seed, "steps": args.steps}
    record["train_seconds"] = round(trained, 1)
    record["dice"] = round(dice(mask, truth > 0), 4)
    common = {"spacing": spacing, "min_size": MIN_SIZE, "h": h, "smoothing": smoothing}
    record["f1_watershed"] = f1(label_instances(mask, "watershed", probability[0], **common))
    if args.channels == 2:
        for cut in (0.3, 0.5, 0.7):
            seeds = label(mask & (probability[1] < cut))
            small = np.bincount(seeds.ravel()) < MIN_SIZE
            small[0] = False
            seeds[small[seeds]] = 0
            record[f"f1_boundary_seeds_{cut}"] = f1(watershed(probability[1], seeds, mask=mask))
        core = probability[0] * (1 - probability[1])
        record["f1_watershed_of_core"] = f1(label_instances(mask, "watershed", core, **common))
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
