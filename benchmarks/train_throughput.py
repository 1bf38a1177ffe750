"""Training throughput on a generated dataset: prints one JSON line per run.

    .venv/bin/python benchmarks/train_throughput.py --model SegResNet --patch 64 --batch 1 --epochs 3

Numbers come from the run's own summary.json (patches_per_second counts training steps including
data loading, excluding validation) plus the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

import voxseg


def make_dataset(root: Path, n: int, size: int, seed: int) -> tuple[Path, Path]:
    """Bright balls on a noisy background; labels are instance ids (1..k)."""
    rng = np.random.default_rng(seed)
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    grid = np.stack(np.mgrid[0:size, 0:size, 0:size], axis=-1).astype(np.float32)
    for i in range(n):
        label = np.zeros((size,) * 3, np.uint16)
        image = rng.normal(0.2, 0.15, (size,) * 3).astype(np.float32)
        for cell in range(1, max(4, size**3 // 6000) + 1):
            radius = rng.uniform(3, 6)
            centre = rng.uniform(radius, size - radius, 3)
            distance = np.linalg.norm(grid - centre, axis=-1)
            label[distance <= radius] = cell
            image += rng.uniform(0.6, 1.0) * np.clip(radius + 1 - distance, 0, 1)
        tifffile.imwrite(images / f"vol_{i:02d}.tif", (image * 1000).astype(np.float32))
        tifffile.imwrite(labels / f"vol_{i:02d}_label.tif", label)
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SegResNet")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples-per-image", type=int, default=4)
    parser.add_argument("--volumes", type=int, default=5)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", type=Path, default=None, help="existing folder with images/ and labels/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.data is None:
            images, labels = make_dataset(root / "data", args.volumes, args.size, seed=0)
        else:
            images, labels = args.data / "images", args.data / "labels"
        config = voxseg.TrainConfig(
            images=images,
            labels=labels,
            results=root / "results",
            model=args.model,
            loss="dice",
            patch_size=args.patch,
            batch_size=args.batch,
            epochs=args.epochs,
            val_interval=args.epochs,
            samples_per_image=args.samples_per_image,
            device=args.device,
        )
        started = time.perf_counter()
        result = voxseg.train(config, progress=False)
        wall = time.perf_counter() - started
        s = result.summary
        rss_kb = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        )
        print(
            json.dumps(
                {
                    "model": args.model,
                    "patch": args.patch,
                    "batch": args.batch,
                    "device": s["device"],
                    "precision": "fp32",
                    "epochs": s["epochs_completed"],
                    "patches_per_second": s["patches_per_second"],
                    "seconds_per_epoch": round(wall / max(s["epochs_completed"], 1), 3),
                    "peak_rss_mb": round(rss_kb / 1024, 1),
                    "final_val_dice": s["best_val_dice"],
                    "torch_threads": __import__("torch").get_num_threads(),
                    "python": sys.version.split()[0],
                }
            )
        )


if __name__ == "__main__":
    main()
