"""WNet3D without labels: Dice, IoU and instance F1@0.5 of `voxseg train --model WNet3D` (images only,
its defaults) then `voxseg predict --instances watershed`, beside thresholds of the image.

    .venv/bin/python benchmarks/self_supervised.py [--sets synthetic qcanet gonuclear cells3d]
        [--seeds 0 1] [--train-args "..."] [--keep DIR]

Each set trains on all its images (no label is given to voxseg) and is scored on the same images
against the labels, which only this script reads: there is no held-out volume to keep, as no label
trains. Baselines, per set: Otsu's threshold of the image, Otsu after a Gaussian blur of sigma 1 voxel,
and the partition each volume gives itself (voxseg.data.self_labels: the cut of the blurred image with
the lowest soft N-cut), which WNet3D starts from. One JSON line per (set, seed), plus one per set for
the baselines. Dice is pooled over the set's volumes (as acceptance 14 counts it), IoU too; F1 is the
mean over volumes. The supervised figures to compare with are benchmarks/accuracy.py's.

`--distill`: then the README's recipe: WNet3D's masks (`voxseg predict` without instances) are the
labels of a supervised `voxseg train` with its defaults (SegResNetDS), which then predicts the same
images with instances; a second JSON line per (set, seed) scores it the same way.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import GONUCLEAR, QCANET, Failed, _balls, _run, _write  # noqa: E402

SETS = ("synthetic", "qcanet", "gonuclear", "cells3d")
Volumes = list[np.ndarray]


def make_set(name: str, root: Path, seed: int) -> Path | None:
    """`root` with images/ and labels/ (labels named as the images); None when the data is missing."""
    if name in ("qcanet", "gonuclear"):
        source = QCANET if name == "qcanet" else GONUCLEAR
        if not (source / "images").is_dir():
            return None
        for kind in ("images", "labels"):  # copied: their ImageJ metadata holds the voxel size
            shutil.copytree(source / kind, root / kind)
        return root
    if name == "cells3d":
        from voxseg.demo import write_demo_dataset

        images, labels = write_demo_dataset(root / "demo")
        for path in sorted(images.iterdir()):
            _write(root, path.stem, tifffile.imread(path), tifffile.imread(labels / f"{path.stem}_label.tif"))
        return root
    rng = np.random.default_rng(seed)
    for index in range(3):
        _write(root, f"volume_{index}", *_balls((48, 96, 96), rng, (5.0, 8.0)))
    return root


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    return [(image, folder / "labels" / image.name) for image in sorted((folder / "images").glob("*.tif"))]


def pooled(masks: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, float]:
    """Dice and IoU over every voxel of the set at once."""
    both = sum(int((m & t).sum()) for m, t in zip(masks, truths, strict=True))
    predicted, true = sum(int(m.sum()) for m in masks), sum(int(t.sum()) for t in truths)
    return {
        "dice": round(2 * both / max(1, predicted + true), 4),
        "iou": round(both / max(1, predicted + true - both), 4),
    }


def scores(masks: Volumes, instances: Volumes, truths: Volumes) -> dict[str, float]:
    """Pooled Dice and IoU of the masks, and the mean over volumes of the instances' F1 at IoU 0.5
    against the truths' objects (the benchmarks of WNet3D all score this way)."""
    from voxseg.inference.scoring.metrics import match_instances

    f1s = [match_instances(found, truth, 0.5).f1 for found, truth in zip(instances, truths, strict=True)]
    return {**pooled(masks, [truth > 0 for truth in truths]), "f1": round(float(np.mean(f1s)), 4)}


def baselines(name: str, folder: Path) -> dict:
    """Thresholds of the image, and the partition WNet3D starts from, scored like the network."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    from voxseg.data.normalise import normalise
    from voxseg.data.self_labels import ncut_partition
    from voxseg.io.formats import open_volume

    cuts: dict[str, list[np.ndarray]] = {"otsu": [], "otsu_blur": [], "partition": []}
    truths = []
    for image_path, label_path in _pairs(folder):
        volume = open_volume(image_path)
        image = volume[:].astype(np.float32)
        truths.append(tifffile.imread(label_path) > 0)
        blurred = ndimage.gaussian_filter(image, 1.0)
        cuts["otsu"].append(image > threshold_otsu(image))
        cuts["otsu_blur"].append(blurred > threshold_otsu(blurred))
        cuts["partition"].append(ncut_partition(normalise(image), volume.voxel_size)[0] > 0)
    return {
        "benchmark": "self_supervised",
        "set": name,
        "baselines": {k: pooled(v, truths) for k, v in cuts.items()},
    }


VOXSEG = str(Path(sys.executable).with_name("voxseg"))


def wnet(name: str, folder: Path, seed: int, args: argparse.Namespace) -> dict:
    train = [VOXSEG, "train", "--model", "WNet3D", "--images", str(folder / "images")]
    return trained_and_scored(name, folder, seed, "WNet3D", train + shlex.split(args.train_args))


def distilled(name: str, folder: Path, seed: int) -> dict:
    """SegResNetDS trained on WNet3D's masks of the same images (no label of the set is used)."""
    masks = folder / f"wnet-masks{seed}"
    _run([VOXSEG, "predict", str(folder / "r" / f"WNet3D{seed}"), "--input", str(folder / "images"),
          "--output", str(masks)])  # fmt: skip
    train = [VOXSEG, "train", "--images", str(folder / "images"), "--labels", str(masks)]
    return trained_and_scored(name, folder, seed, "SegResNetDS on WNet3D's masks", train)


def trained_and_scored(name: str, folder: Path, seed: int, what: str, train: list[str]) -> dict:
    """Train, predict the set's images with watershed instances, score against the set's labels."""
    run = folder / "r" / f"{what.split()[0]}{seed}"
    train = [*train, "--results", str(run.parent), "--run-name", run.name, "--seed", str(seed)]
    started = time.perf_counter()
    _run([*train, "--no-tensorboard"])
    trained = time.perf_counter() - started
    output = folder / f"p-{run.name}"
    _run([VOXSEG, "predict", str(run), "--input", str(folder / "images"), "--output", str(output),
          "--instances", "watershed"])  # fmt: skip
    pairs = _pairs(folder)
    masks = [tifffile.imread(output / f"{image.stem}_mask.tif") > 0 for image, _ in pairs]
    instances = [tifffile.imread(output / f"{image.stem}_labels.tif") for image, _ in pairs]
    truths = [tifffile.imread(label) for _, label in pairs]
    summary = json.loads((run / "summary.json").read_text())
    return {
        "benchmark": "self_supervised",
        "set": name,
        "seed": seed,
        "model": what,
        **scores(masks, instances, truths),
        "train_seconds": round(trained, 1),
        "patches_per_second": summary.get("patches_per_second"),
        "train_args": " ".join(train[2:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--train-args", default="", help="extra `voxseg train` options, one string")
    parser.add_argument("--distill", action="store_true", help="also train SegResNetDS on WNet3D's masks")
    parser.add_argument("--keep", type=Path, help="keep each set, run and prediction: KEEP/<set>")
    args = parser.parse_args()
    for name in args.sets:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) if args.keep is None else args.keep / name
            if make_set(name, folder, 0) is None:
                continue
            print(json.dumps(baselines(name, folder)), flush=True)
            for seed in args.seeds:
                steps = [functools.partial(wnet, name, folder, seed, args)]
                if args.distill:
                    steps.append(functools.partial(distilled, name, folder, seed))
                for step in steps:
                    try:
                        record = step()
                    except Failed as failure:
                        record = {"set": name, "seed": seed, "error": str(failure)}
                    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
