"""Does post-processing WNet3D's foreground probability help? Dice and instance F1@0.5 of a trained
WNet3D run's prediction as it is, and after each candidate refinement, scored against the set's labels
(which only this script reads).

    .venv/bin/python benchmarks/wnet_postprocess.py --keep DIR [--sets qcanet synthetic cells3d]
        [--seeds 0] [--peer-python /tmp/voxseg-peer/venv/bin/python]

`--keep DIR` is `benchmarks/self_supervised.py`'s: a set whose run DIR/<set>/r/WNet3D<seed> exists is
reused, else the set is made and WNet3D trained on it with its defaults first. The candidates, each
cut at the run's threshold and split into instances by the run's own watershed (as `voxseg predict
--instances watershed` does):

- `none`: the probability as `voxseg predict` gives it;
- `gaussian`: the probability blurred by a Gaussian of sigma 1 voxel (the cheapest edge-aware-free
  smoothing, a floor for the others);
- `crf`: napari-cellseg3d 0.2.4's dense CRF (`code_models/crf.py`, pydensecrf, its CRFConfig defaults:
  sa 10, sb 5, sg 1, w1 10, w2 5, 5 iterations) on the two classes (1 - p, p) and the raw image, as
  its inference worker passes them; run in the peer environment (`../shared/peer/run_peer.sh` makes it),
  as voxseg does not depend on pydensecrf. Skipped when that environment is missing.

One JSON line per (set, seed, candidate): pooled Dice and IoU, mean F1, and the seconds the
refinement took over the set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from self_supervised import _pairs, make_set, scores, wnet  # noqa: E402

PEER_PYTHON = Path("/tmp/voxseg-peer/venv/bin/python")

#: run in the peer environment: napari-cellseg3d's own CRF on (image, probability) .npy pairs
CRF_SCRIPT = """
import sys, numpy as np
from napari_cellseg3d.code_models.crf import crf_with_config
for stem in sys.argv[1:]:
    image, p = np.load(stem + "_image.npy"), np.load(stem + "_prob.npy")
    refined = crf_with_config(image[None], np.stack([1 - p, p]), log=None)
    np.save(stem + "_crf.npy", refined[1].astype(np.float32))
"""


def gaussian(probabilities: list[np.ndarray], images: list[np.ndarray]) -> list[np.ndarray]:
    from scipy import ndimage

    return [ndimage.gaussian_filter(p, 1.0) for p in probabilities]


def crf(probabilities: list[np.ndarray], images: list[np.ndarray], peer: Path) -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as scratch:
        stems = []
        for index, (p, image) in enumerate(zip(probabilities, images, strict=True)):
            stem = f"{scratch}/{index}"
            np.save(stem + "_image.npy", image.astype(np.float32))  # raw, as its inference worker passes it
            np.save(stem + "_prob.npy", p.astype(np.float32))
            stems.append(stem)
        subprocess.run([str(peer), "-c", CRF_SCRIPT, *stems], check=True, capture_output=True, text=True)
        return [np.load(stem + "_crf.npy") for stem in stems]


def scored(name: str, seed: int, candidate: str, predictor, refined, spacings, truths, seconds) -> dict:
    masks, instances = [], []
    for probability, spacing in zip(refined, spacings, strict=True):
        mask = (probability >= predictor.threshold).astype(np.uint8)
        instances.append(predictor._instances(mask, probability, spacing))
        masks.append(instances[-1] > 0)
    return {
        "benchmark": "wnet_postprocess",
        "set": name,
        "seed": seed,
        "candidate": candidate,
        **scores(masks, instances, truths),
        "seconds": round(seconds, 2),
    }


def measure(name: str, folder: Path, seed: int, args: argparse.Namespace) -> None:
    import voxseg
    from voxseg.io.formats import open_volume

    run = folder / "r" / f"WNet3D{seed}"
    if not (run / "summary.json").is_file():
        print(json.dumps(wnet(name, folder, seed, argparse.Namespace(train_args=""))), flush=True)
    predictor = voxseg.Predictor(run, instances="watershed")
    images, spacings, truths, probabilities = [], [], [], []
    for image_path, label_path in _pairs(folder):
        volume = open_volume(image_path)
        images.append(volume[:].astype(np.float32))
        spacings.append(volume.voxel_size)
        truths.append(tifffile.imread(label_path))
        probabilities.append(predictor(images[-1], spacing=volume.voxel_size).probability)
    candidates = {"none": lambda: probabilities, "gaussian": lambda: gaussian(probabilities, images)}
    if args.peer_python.is_file():
        candidates["crf"] = lambda: crf(probabilities, images, args.peer_python)
    for candidate, refine in candidates.items():
        if candidate not in args.candidates:
            continue
        started = time.perf_counter()
        refined = refine()
        seconds = time.perf_counter() - started
        record = scored(name, seed, candidate, predictor, refined, spacings, truths, seconds)
        print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, required=True, help="self_supervised.py's --keep folder")
    parser.add_argument("--sets", nargs="+", default=["qcanet", "synthetic", "cells3d"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--candidates", nargs="+", default=["none", "gaussian", "crf"])
    args = parser.parse_args()
    for name in args.sets:
        folder = args.keep / name
        if not (folder / "images").is_dir() and make_set(name, folder, 0) is None:
            continue
        for seed in args.seeds:
            measure(name, folder, seed, args)


if __name__ == "__main__":
    main()
