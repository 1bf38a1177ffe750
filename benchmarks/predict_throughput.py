"""Prediction throughput: voxseg predict against a bare MONAI sliding-window call, one JSON line each.

    .venv/bin/python benchmarks/predict_throughput.py [--model SegResNet] [--size 64 256 256] [--window 64]

The same network (random weights: speed does not depend on them), volume, window (64³), overlap
(0.25), Gaussian blending and windows per batch (4). `bare_monai` is the floor: the whole volume
normalised in memory and one `monai.inferers.sliding_window_inference` call with PyTorch's own
kernels. `voxseg` is `voxseg.inference.job.files.predict_files` from a TIFF file to a mask file,
also with `--tta` (8 flips). Each run is its own process, so `peak_rss_mb` is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile


def _volume(path: Path, size: list[int]) -> None:
    rng = np.random.default_rng(0)
    tifffile.imwrite(path, rng.integers(100, 4000, size=size, dtype=np.uint16))


def _run(kind: str, args: argparse.Namespace, scratch: Path) -> dict:
    import torch

    from voxseg.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(args.model).eval()
    weights = scratch / "weights.pth"
    torch.save(model.state_dict(), weights)
    image = scratch / "volume.tif"
    window = (args.window,) * 3
    started = time.perf_counter()
    if kind == "bare_monai":
        from monai.inferers import sliding_window_inference

        from voxseg.data.normalise import normalise

        volume = torch.from_numpy(normalise(tifffile.imread(image)))[None, None]
        with torch.no_grad():
            probability = torch.sigmoid(
                sliding_window_inference(volume, window, 4, model, overlap=0.25, mode="gaussian")
            )
        tifffile.imwrite(scratch / "bare_mask.tif", (probability[0, 0] > 0.5).numpy().astype(np.uint8))
    else:
        from voxseg.config import PredictConfig
        from voxseg.inference.job.files import predict_files

        config = PredictConfig(
            source=weights,
            model=args.model,
            input=[image],
            output=scratch / kind,
            window=window,
            tta=kind == "voxseg_tta",
            overwrite=True,
            device="cpu",
        ).resolved()
        predict_files(config)
    seconds = time.perf_counter() - started
    voxels = int(np.prod(args.size))
    return {
        "benchmark": "predict",
        "run": kind,
        "model": args.model,
        "volume": "x".join(map(str, args.size)),
        "window": args.window,
        "seconds": round(seconds, 2),
        "voxels_per_second": round(voxels / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SegResNet")
    parser.add_argument("--size", type=int, nargs=3, default=[64, 256, 256])
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--runs", nargs="+", default=["bare_monai", "voxseg", "voxseg_tta"])
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(_run(args.single, args, args.scratch)), flush=True)
        return
    with tempfile.TemporaryDirectory() as scratch:
        _volume(Path(scratch) / "volume.tif", args.size)
        for kind in args.runs:  # each in its own process: its own peak memory
            argv = [a for a in sys.argv[1:] if a != "--runs" and a not in args.runs]
            subprocess.run(
                [sys.executable, __file__, *argv, "--single", kind, "--scratch", scratch], check=True
            )


if __name__ == "__main__":
    main()
