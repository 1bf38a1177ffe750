"""Accuracy on volumes the model has not seen: held-out Dice, IoU and instance F1@0.5 per set.

    .venv/bin/python benchmarks/accuracy.py [--sets qcanet-08-16 gonuclear-1135-1136 cells3d ...]
        [--seeds 0 1] [--budget] [--validate-on-test] [--train-args "--threads 1"]
        [--instances auto] [--keep DIR]

As a user meets it: every set trains on its training volumes only, with voxseg's defaults (its own
split of those volumes validates, picks the checkpoint and the threshold), then
`voxseg predict --instances auto` (the method the run trained for) segments the volume the run has
never seen, scored against its labels with voxseg's metrics (Dice and IoU of the masks; F1 of
one-to-one object matching at IoU ≥ 0.5; which error the wrong objects are).

* `--budget`: the hand-set budget of earlier rounds (acceptance 12's: 60 epochs × 8 patches of 32×64×64
  per training volume, validation every 3 epochs) instead of the defaults;
* `--validate-on-test`: the scored volume also validates (picks the checkpoint, tunes the threshold):
  optimistic, kept only to compare with numbers measured that way before; the JSON says so;
* `--train-args` passes options to every `voxseg train`, so a change is compared on the same sets and
  seeds.

Sets:

* `qcanet-08-16`, `qcanet-16-08`: the real confocal nuclei of `../shared/data/qcanet`, trained on one
  embryo and scored on the other (`--qcanet DIR` points elsewhere; skipped when absent);
* `gonuclear-1135-1136`, `gonuclear-1136-1135`: real, densely packed Arabidopsis ovule nuclei
  (`data/gonuclear`, 100³, 54 and 32 nuclei), trained on one crop and scored on the other;
* `cells3d`: the demo's nuclei (scikit-image's cells3d), three quadrants train, the fourth is scored;
* `dense-synthetic`: packed ellipsoids of varied size and brightness, most touching a neighbour with
  no seam between them (benchmarks/synthetic_nuclei.py): separating touching nuclei without real
  data; three 48×96×96 volumes train, a fourth of another seed is scored;
* `shift-contrast`, `shift-noise`, `shift-blur`, `shift-size`: synthetic balls, the held-out volume
  with another contrast (dimmer, less background difference), more noise, a blur, or smaller objects
  than the training ones.

One JSON line per (set, seed): dice, iou, f1, objects predicted and true, the threshold used, and
the seconds of training and prediction. `--keep DIR` keeps each set's data, run folder and prediction
(for a look at the curves or a post-processing tried on the saved run). What was measured with it,
and what was kept: docs/accuracy.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
QCANET = ROOT.parent / "shared" / "data" / "qcanet"
GONUCLEAR = ROOT / "data" / "gonuclear"
SHIFTS = ("shift-contrast", "shift-noise", "shift-blur", "shift-size")
BUDGET = [
    "--epochs", "60", "--val-interval", "3", "--samples-per-image", "8", "--patch-size", "32,64,64",
]  # fmt: skip


def _balls(shape: tuple[int, int, int], rng: np.random.Generator, radius: tuple[float, float], **look: float):
    """Touching nuclei-like balls: intensity image and instance labels."""
    from scipy import ndimage

    label = np.zeros(shape, np.uint16)
    grid = np.indices(shape, dtype=np.float32)
    placed = 0
    for _ in range(400):
        r = rng.uniform(*radius)
        centre = rng.uniform(r, np.array(shape) - r)
        distance = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
        ball = distance <= r
        if (label[ball] > 0).mean() > 0.05:
            continue
        placed += 1
        label[ball & (label == 0)] = placed
        if placed >= look.get("objects", 24):
            break
    image = look.get("background", 0.2) + look.get("contrast", 0.8) * (label > 0)
    image = ndimage.gaussian_filter(image.astype(np.float32), look.get("blur", 1.0))
    image += rng.normal(0, look.get("noise", 0.08), shape)
    return (image * 1000).astype(np.float32), label


def _write(folder: Path, name: str, image: np.ndarray, label: np.ndarray) -> None:
    for kind, array in (("images", image), ("labels", label)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / kind / f"{name}.tif", array)


def make_set(name: str, root: Path, seed: int, qcanet: Path) -> tuple[Path, Path] | None:
    """`root/train` and `root/test`, each with images/ and labels/; None when the data is missing."""
    train, test = root / "train", root / "test"
    if name.startswith(("qcanet-", "gonuclear-")):
        first, second = name.split("-")[1:]
        gonuclear = name.startswith("gonuclear")
        source, stem = (GONUCLEAR, "ovule_{}.tif") if gonuclear else (qcanet, "{}_cell_stage.tif")
        if not (source / "images").is_dir():
            return None
        for folder, which in ((train, first), (test, second)):
            for kind in ("images", "labels"):  # copied: their ImageJ metadata holds the voxel size
                (folder / kind).mkdir(parents=True)
                shutil.copy(source / kind / stem.format(which), folder / kind)
        return train, test
    if name == "cells3d":
        from voxseg.demo import write_demo_dataset

        images, labels = write_demo_dataset(root / "all")
        for path in sorted(images.iterdir()):
            label = labels / f"{path.stem}_label.tif"
            folder = test if path.stem.endswith("q11") else train
            _write(folder, path.stem, tifffile.imread(path), tifffile.imread(label))
        return train, test
    if name == "dense-synthetic":
        from synthetic_nuclei import dense_nuclei, write_volume  # benchmarks/ is on sys.path

        spacing = (1.0, 1.0, 1.0)  # written with the volumes: the voxel size travels as in real sets
        for index in range(3):
            write_volume(train, f"train_{index}", *dense_nuclei(seed=4 * seed + index), spacing)
        write_volume(test, "test", *dense_nuclei(seed=4 * seed + 3), spacing)
        return train, test
    rng = np.random.default_rng(seed)
    shape = (48, 96, 96)
    for index in range(3):
        _write(train, f"train_{index}", *_balls(shape, rng, (5.0, 8.0)))
    shifted = {
        "shift-contrast": dict(background=0.4, contrast=0.35),
        "shift-noise": dict(noise=0.25),
        "shift-blur": dict(blur=2.5),
        "shift-size": dict(objects=60),
    }[name]
    radius = (3.5, 5.0) if name == "shift-size" else (5.0, 8.0)
    _write(test, "test", *_balls(shape, rng, radius, **shifted))
    return train, test


def score(prediction: Path, truth: Path) -> dict[str, float | int]:
    from voxseg.inference.scoring.metrics import dice, iou, match_instances

    true_labels = tifffile.imread(truth)
    mask = tifffile.imread(next(prediction.glob("*_mask.tif"))) > 0
    labels = tifffile.imread(next(prediction.glob("*_labels.tif")))
    matching = match_instances(labels, true_labels, 0.5)
    return {
        "dice": round(dice(mask, true_labels > 0), 4),
        "iou": round(iou(mask, true_labels > 0), 4),
        "f1": round(matching.f1, 4),
        "objects_predicted": matching.n_pred,
        "objects_true": matching.n_true,
        "split/merged/missed/spurious": "/".join(
            str(getattr(matching, kind)) for kind in ("split", "merged", "missed", "spurious")
        ),
    }


class Failed(Exception):
    """A `voxseg` command of a set failed: the set's record says so, the other sets still run."""


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines() or ["?"]
        raise Failed(f"{' '.join(Path(command[0]).name.split() + command[1:2])} failed: {lines[-1][-300:]}")


def run(name: str, seed: int, args: argparse.Namespace) -> dict | None:
    voxseg = str(Path(sys.executable).with_name("voxseg"))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) if args.keep is None else args.keep / f"{name}-{seed}"
        made = make_set(name, root, seed, args.qcanet)
        if made is None:
            return None
        train, test = made
        command = [
            voxseg, "train", "--images", str(train / "images"), "--labels", str(train / "labels"),
            "--results", str(root / "r"), "--run-name", "m", "--seed", str(seed), "--no-tensorboard",
        ]  # fmt: skip
        if args.validate_on_test:
            command += ["--val-images", str(test / "images"), "--val-labels", str(test / "labels")]
        command += (BUDGET if args.budget else []) + shlex.split(args.train_args)
        started = time.perf_counter()
        _run(command)
        trained = time.perf_counter() - started
        predict = [voxseg, "predict", str(root / "r" / "m"), "--input", str(test / "images")]
        predict += [
            "--output",
            str(root / "p"),
            "--instances",
            args.instances,
            *shlex.split(args.predict_args),
        ]
        _run(predict)
        predicted = time.perf_counter() - started - trained
        summary = json.loads((root / "r" / "m" / "summary.json").read_text())
        truth = next((test / "labels").iterdir())
        return {
            "benchmark": "accuracy",
            "set": name,
            "seed": seed,
            "budget": "hand-set" if args.budget else "defaults",
            "validation": "scored volume (optimistic)" if args.validate_on_test else "own split",
            **score(root / "p", truth),
            "threshold": summary.get("threshold"),
            "train_seconds": round(trained, 1),
            "predict_seconds": round(predicted, 1),
            "train_args": args.train_args,
            "predict_args": args.predict_args,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sets = ["qcanet-08-16", "qcanet-16-08", "gonuclear-1135-1136", "gonuclear-1136-1135", "cells3d"]
    sets += ["dense-synthetic", *SHIFTS]
    parser.add_argument("--sets", nargs="+", default=sets)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budget", action="store_true", help="acceptance 12's hand-set budget")
    parser.add_argument(
        "--validate-on-test", action="store_true", help="the scored volume validates too (optimistic)"
    )
    parser.add_argument("--instances", default="auto", choices=("auto", "connected", "watershed", "distance"))
    parser.add_argument("--train-args", default="", help="extra `voxseg train` options, one string")
    parser.add_argument("--predict-args", default="", help="extra `voxseg predict` options, one string")
    parser.add_argument("--qcanet", type=Path, default=QCANET)
    parser.add_argument("--keep", type=Path, help="keep each set, run and prediction: KEEP/<set>-<seed>")
    args = parser.parse_args()
    for seed in args.seeds:
        for name in args.sets:
            try:
                record = run(name, seed, args)
            except Failed as failure:
                record = {"benchmark": "accuracy", "set": name, "seed": seed, "error": str(failure)}
            if record is not None:
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
