"""The review-and-fine-tune loop, simulated: how much k corrected planes teach a model about a volume it
has not seen, and how long a round takes.

    .venv/bin/python benchmarks/finetune.py [--sets qcanet-16-08 shift-contrast ...] [--planes 1 3 5]
        [--seeds 0] [--base-args "..."] [--finetune-args "..."] [--keep DIR]

Per set (benchmarks/accuracy.py's: real embryos trained on one and corrected on the other, or synthetic
balls whose held-out volume has another contrast, noise, blur or size), a base model trains on the
training volumes (voxseg's defaults unless `--base-args`; acceptance 15's base is
`--base-args "--epochs 60 --val-interval 3 --samples-per-image 8 --patch-size 32,64,64"`) and predicts
the other volume. Then, for each k, k Z planes spread evenly through the volume are "reviewed"
with their true labels (1 background, 2 nucleus, 0 not reviewed), `voxseg train --from BASE` fine-tunes
with its defaults, and the fine-tuned run predicts the volume again. Scored as acceptance 15 scores:
Dice on the planes NOT reviewed, and F1@0.5 of the objects of the whole volume, before and after.
One JSON line per (set, seed, k), with the fine-tune's wall seconds (the whole command).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import QCANET, Failed, _run, make_set  # noqa: E402

SETS = ("qcanet-16-08", "qcanet-08-16", "shift-contrast", "shift-blur")
SPARSE = "0:ignore,1:background,2:foreground"
VOXSEG = str(Path(sys.executable).with_name("voxseg"))


def spread_planes(depth: int, k: int) -> list[int]:
    """k Z planes evenly spread through the volume (3 of 51: 12, 25, 38, acceptance 15's)."""
    return [depth * (i + 1) // (k + 1) for i in range(k)]


def sparse_labels(truth: np.ndarray, planes: list[int]) -> np.ndarray:
    out = np.zeros(truth.shape, np.uint8)
    for z in planes:
        out[z] = np.where(truth[z] > 0, 2, 1)
    return out


def score(prediction: Path, truth: np.ndarray, planes: list[int]) -> dict[str, float]:
    """Dice on the planes not reviewed; F1@0.5 of the objects of the whole volume."""
    from voxseg.inference.scoring.metrics import dice, match_instances

    mask = tifffile.imread(next(prediction.glob("*_mask.tif"))) > 0
    labels = tifffile.imread(next(prediction.glob("*_labels.tif")))
    unreviewed = np.ones(truth.shape[0], bool)
    unreviewed[planes] = False
    return {
        "dice": round(dice(mask[unreviewed], truth[unreviewed] > 0), 4),
        "f1": round(match_instances(labels, truth, 0.5).f1, 4),
    }


def predict(run: Path, images: Path, out: Path) -> None:
    _run(
        [
            VOXSEG,
            "predict",
            str(run),
            "--input",
            str(images),
            "--output",
            str(out),
            "--instances",
            "watershed",
        ]
    )


def rounds(name: str, seed: int, args: argparse.Namespace, root: Path) -> list[dict]:
    """The base model, then one fine-tune round per k: their JSON records."""
    made = make_set(name, root, seed, args.qcanet)
    if made is None:
        return [{"set": name, "skipped": "data not found"}]
    train, test = made
    truth_path = next((test / "labels").glob("*.tif"))
    truth = tifffile.imread(truth_path)
    base = root / "runs" / "base"
    _run([VOXSEG, "train", "--images", str(train / "images"), "--labels", str(train / "labels"),
          "--results", str(base.parent), "--run-name", "base", "--seed", str(seed),
          *shlex.split(args.base_args)])  # fmt: skip
    predict(base, test / "images", root / "p-base")
    records = []
    for k in args.planes:
        planes = spread_planes(truth.shape[0], k)
        reviewed = root / f"sparse-{k}"
        reviewed.mkdir()
        tifffile.imwrite(reviewed / truth_path.name, sparse_labels(truth, planes))
        started = time.perf_counter()
        _run([VOXSEG, "train", "--from", str(base), "--images", str(test / "images"),
              "--labels", str(reviewed), "--label-map", SPARSE, "--results", str(base.parent),
              "--run-name", f"ft{k}", "--seed", str(seed), *shlex.split(args.finetune_args)])  # fmt: skip
        seconds = time.perf_counter() - started
        predict(base.parent / f"ft{k}", test / "images", root / f"p-ft{k}")
        before, after = score(root / "p-base", truth, planes), score(root / f"p-ft{k}", truth, planes)
        records.append(
            {
                "set": name,
                "seed": seed,
                "k": k,
                "planes": planes,
                "dice_before": before["dice"],
                "dice_after": after["dice"],
                "f1_before": before["f1"],
                "f1_after": after["f1"],
                "finetune_s": round(seconds, 1),
                "finetune_args": args.finetune_args,
                "base_args": args.base_args,
                "machine": platform.processor() or platform.machine(),
            }
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--planes", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--base-args", default="", help="options of the base model's `voxseg train`")
    parser.add_argument("--finetune-args", default="", help="options of every `voxseg train --from`")
    parser.add_argument("--qcanet", type=Path, default=QCANET)
    parser.add_argument("--keep", type=Path, help="keep the data, runs and predictions here")
    args = parser.parse_args()
    for name in args.sets:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as scratch:
                root = args.keep / f"{name}-{seed}" if args.keep else Path(scratch)
                root.mkdir(parents=True, exist_ok=True)
                try:
                    records = rounds(name, seed, args, root)
                except Failed as failure:
                    records = [{"set": name, "seed": seed, "failed": str(failure)}]
                for record in records:
                    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
