"""Prediction of one Zarr volume by 1 process and by N torchrun ranks: voxels/s, windows per rank,
peak memory per rank, and whether the outputs are the same bytes. One JSON line per run.

    .venv/bin/python benchmarks/distributed_predict.py [--size 256 512 512] [--ranks 2] [--model SegResNet]
        [--window 32 64 64] [--instances none] [--device cpu]

The network has random weights (speed does not depend on them; the mask of random weights is still a
mask to compare). The single process gets every core (`--threads` = cores), each of the N ranks
cores / N (torchrun's one OpenMP thread each on a 2-core machine), so the comparison is the same
machine used two ways. Each run is its own process (or torchrun job); `peak_rss_mb` is read from the
rank lines voxseg prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VOXSEG = [sys.executable, "-m", "voxseg"]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _volume(path: Path, size: list[int]) -> None:
    """Nuclei-like blobs on noise, written in 64-plane chunks (as a light-sheet Zarr is)."""
    import zarr
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    array = zarr.open_array(str(path), mode="w", shape=size, chunks=(64, 128, 128), dtype="float32")
    for z in range(0, size[0], 64):
        depth = min(64, size[0] - z)
        seeds = rng.random((depth, *size[1:])) > 0.9995
        blobs = ndi.gaussian_filter(seeds.astype(np.float32), 3) * 4000
        array[z : z + depth] = blobs + rng.normal(100, 10, blobs.shape).astype(np.float32)


def _weights(path: Path, model: str) -> None:
    import torch

    from voxseg.models.registry import build_model

    torch.manual_seed(0)
    torch.save(build_model(model).eval().state_dict(), path)


def _predict(args: argparse.Namespace, scratch: Path, ranks: int) -> dict:
    output = scratch / f"out{ranks}"
    command = [
        "predict",
        str(scratch / "weights.pth"),
        "--model",
        args.model,
        "--window",
        ",".join(map(str, args.window)),
        "--input",
        str(scratch / "volume.zarr"),
        "--output",
        str(output),
        "--instances",
        args.instances,
        "--device",
        args.device,
    ]
    cores = len(os.sched_getaffinity(0))
    if ranks == 1:
        command = [*VOXSEG, *command, "--threads", str(cores)]
        env = dict(os.environ)
    else:
        command = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(ranks), "-m", "voxseg", *command]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // ranks))}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    voxels = int(np.prod(args.size))
    ranks_seen = re.findall(r"rank (\d+): (\d+) units, (\d+) windows.*?peak memory ([\d,]+) MB", done.stderr)
    return {
        "benchmark": "distributed_predict",
        "ranks": ranks,
        "seconds": round(seconds, 2),
        "voxels_per_s": round(voxels / seconds),
        "windows_per_rank": [int(w) for _, _, w, _ in ranks_seen] or None,
        "peak_rss_mb_per_rank": [int(m.replace(",", "")) for *_, m in ranks_seen] or None,
        "output": str(output),
    }


def _same(a: str, b: str, instances: bool) -> bool:
    import filecmp

    import zarr

    kinds = ("mask", "labels") if instances else ("mask",)
    same = all(
        np.array_equal(zarr.open(f"{a}/volume_{k}.zarr")["0"][:], zarr.open(f"{b}/volume_{k}.zarr")["0"][:])
        for k in kinds
    )
    return same and (
        not instances or filecmp.cmp(f"{a}/volume_objects.csv", f"{b}/volume_objects.csv", shallow=False)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=[256, 512, 512])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2])
    parser.add_argument("--model", default="SegResNet")
    parser.add_argument("--window", type=int, nargs=3, default=[32, 64, 64])
    # random weights make a speckled mask: instances of it measure labelling millions of specks
    parser.add_argument("--instances", default="none", choices=("none", "connected", "watershed"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        _volume(scratch / "volume.zarr", args.size)
        _weights(scratch / "weights.pth", args.model)
        one = _predict(args, scratch, 1)
        print(json.dumps({**one, "output": None}), flush=True)
        for ranks in args.ranks:
            result = _predict(args, scratch, ranks)
            result["same_as_one_process"] = _same(one["output"], result["output"], args.instances != "none")
            result["speedup"] = round(one["seconds"] / result["seconds"], 3)
            print(json.dumps({**result, "output": None}), flush=True)


if __name__ == "__main__":
    main()
