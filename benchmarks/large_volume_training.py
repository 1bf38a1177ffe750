"""Memory of training from a Zarr (or HDF5) volume larger than the memory voxseg holds.

    .venv/bin/python benchmarks/large_volume_training.py [--shape 512,1024,1024] [--format zarr]
        [--budget-mb 256]

Writes a mostly empty uint8 volume with bright blocks (and its labels) chunk by chunk, so the
benchmark itself never holds it, then trains on it for one epoch of 64³ patches in a fresh process
and prints one JSON line: the volume's size stored and as float32 (what holding it takes), the
training process's peak resident memory, its wall time, and whether the log says it was read patch
by patch. voxseg holds volumes up to half the free memory; `--budget-mb` lowers that limit in the
child (as a machine with less memory would), `--budget-mb 0` keeps voxseg's own.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _write(path: Path, shape: tuple[int, int, int], label: bool, fmt: str) -> None:
    """Blocks of 64³ (value 200 over noise 0-40 in the image, 1 in the labels), slab by slab."""
    depth = 32
    if fmt == "zarr":
        import zarr

        out = zarr.open_array(path, mode="w", shape=shape, dtype=np.uint8, chunks=(32, 256, 256))
    elif fmt == "h5":
        import h5py

        handle = h5py.File(path, "w")
        out = handle.create_dataset(
            "data", shape=shape, dtype=np.uint8, chunks=(32, 256, 256), compression="gzip"
        )
    else:
        import tifffile

        out = tifffile.memmap(path, shape=shape, dtype=np.uint8, photometric="minisblack")
    rng = np.random.default_rng(0)
    for z in range(0, shape[0], depth):
        slab = np.zeros((min(depth, shape[0] - z), *shape[1:]), np.uint8)
        if not label:
            slab[:] = rng.integers(0, 40, slab.shape, dtype=np.uint8)
        for y in range(64, shape[1] - 64, 256):
            for x in range(64, shape[2] - 64, 256):
                if (z // 128 + y // 256 + x // 256) % 2 == 0:
                    slab[:, y : y + 64, x : x + 64] = 1 if label else 200
        out[z : z + slab.shape[0]] = slab
    if fmt == "h5":
        handle.close()
    elif fmt == "tif":
        out.flush()
        del out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="512,1024,1024")
    parser.add_argument("--format", choices=("zarr", "h5", "tif"), default="zarr")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--budget-mb", type=int, default=256)
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    suffix = {"zarr": ".zarr", "h5": ".h5", "tif": ".tif"}[args.format]
    with tempfile.TemporaryDirectory(dir=".") as scratch:
        root = Path(scratch)
        for kind in ("images", "labels", "val/images", "val/labels"):
            (root / kind).mkdir(parents=True)
        _write(root / "images" / f"big{suffix}", shape, False, args.format)
        _write(root / "labels" / f"big{suffix}", shape, True, args.format)
        _write(root / "val/images" / "v.tif", (64, 256, 256), False, "tif")
        _write(root / "val/labels" / "v.tif", (64, 256, 256), True, "tif")
        options = dict(
            images=f"{root}/images", labels=f"{root}/labels", val_images=f"{root}/val/images",
            val_labels=f"{root}/val/labels", results=f"{root}/r", run_name="big", epochs=1, patch_size=64,
            samples_per_image=args.samples, batch_size=2, tensorboard=False, loss="dice",
        )  # fmt: skip
        budget = f"lambda: {args.budget_mb * 2**20}" if args.budget_mb else "setup.memory_budget"
        child = (
            "import voxseg; from voxseg.config import TrainConfig; from voxseg.training import setup; "
            f"setup.memory_budget = {budget}; "
            f"voxseg.train(TrainConfig(**{options!r}), progress=False)"
        )
        command = [sys.executable, "-c", child]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(result.stderr.strip()[-500:])
        log = (root / "r" / "big" / "train.log").read_text()
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    voxels = int(np.prod(shape))
    print(
        json.dumps(
            {
                "benchmark": "large_volume_training",
                "format": args.format,
                "shape": list(shape),
                "stored_mb": round(voxels / 2**20),
                "float32_mb": round(voxels * 4 / 2**20),
                "peak_rss_mb": round(peak_kb / 1024),
                "seconds": round(seconds, 1),
                "budget_mb": args.budget_mb or None,
                "read_from_disk": bool(re.search(r"read patch by patch from disk", log)),
            }
        )
    )


if __name__ == "__main__":
    main()
