"""Training's memory over many short epochs: alone, beside a busy process, and on one thread; one JSON
line per condition (and, with --trace, one per epoch).

    .venv/bin/python benchmarks/memory_soak.py [--conditions alone busy one] [--epochs 200] [--trace]

The run: SegResNet, 32³ patches, batch 2, four 64³ synthetic volumes, validation every 20 epochs,
trained in this process (the Python API) so its resident memory (RSS, psutil) and glibc's heap
(`mallinfo2`: bytes in use and bytes kept free) are read at every epoch's end. `growth` is the RSS
at the end over the RSS after the first validation (when every buffer of the run has been made
once). Conditions: `alone` (threads follow the load), `busy` (the same beside a single-thread busy
loop: the thread count drops to 1 at the start), `one` (`threads=1`). Run it on an otherwise idle
machine; the busy loop is this benchmark's own.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
from train_throughput import make_dataset  # benchmarks/ is on the path when a benchmark runs

CONDITIONS = ("alone", "busy", "one")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")
    ]  # fmt: skip


def _heap() -> dict[str, float]:
    """glibc's heap in MB: in use (small and mmapped blocks) and kept free; empty off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return {}
    info = libc.mallinfo2()
    return {"heap_in_use_mb": (info.uordblks + info.hblkhd) / 1e6, "heap_free_mb": info.fordblks / 1e6}


def soak(
    condition: str, data: tuple[Path, Path], results: Path, epochs: int, trace: bool, keep_all: bool
) -> dict:
    from voxseg.config import TrainConfig
    from voxseg.training.events import EpochEnd, RunEnd
    from voxseg.training.session import TrainingSession

    config = TrainConfig(
        images=data[0], labels=data[1], results=results, run_name=condition, model="SegResNet",
        patch_size=32, batch_size=2, samples_per_image=2, epochs=epochs, val_interval=20, seed=0,
        tensorboard=False, threads=1 if condition == "one" else None,
    )  # fmt: skip
    process, samples, speed = psutil.Process(), [], None
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition == "busy" else None
    try:
        for event in TrainingSession(config).events():
            if isinstance(event, EpochEnd):
                sample = {"epoch": event.epoch, "rss_mb": process.memory_info().rss / 1e6, **_heap()}
                samples.append(sample)
                if trace:
                    print(
                        json.dumps({"benchmark": "memory_soak", "condition": condition, **sample}), flush=True
                    )
            elif isinstance(event, RunEnd):
                speed = event.summary.get("patches_per_second")
    finally:
        if hog is not None:
            hog.kill()
    settled = samples[min(config.val_interval, len(samples)) - 1]  # after the first validation
    last = samples[-1]
    return {
        "benchmark": "memory_soak",
        "condition": condition,
        "epochs": epochs,
        "rss_first_epoch_mb": round(samples[0]["rss_mb"], 1),
        "rss_after_first_validation_mb": round(settled["rss_mb"], 1),
        "rss_end_mb": round(last["rss_mb"], 1),
        "rss_peak_mb": round(max(s["rss_mb"] for s in samples), 1),
        "growth": round(last["rss_mb"] / settled["rss_mb"] - 1, 4),
        **{f"end_{k}": round(v, 1) for k, v in last.items() if k.startswith("heap")},
        "patches_per_second": speed,
        "heap": "kept whole" if keep_all else "bounded",
        "cores": psutil.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--trace", action="store_true", help="also one line per epoch")
    parser.add_argument(
        "--keep-all",
        action="store_true",
        help="never trim the heap (voxseg before the bound), for comparison",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data = make_dataset(root / "data", 4, 64, 0)  # four 64³ volumes of balls
        for condition in args.conditions:  # each in its own process: one run's heap is not the next's
            if len(args.conditions) > 1:
                command = [sys.executable, __file__, "--conditions", condition, "--epochs", str(args.epochs)]
                flags = ["--trace"] * args.trace + ["--keep-all"] * args.keep_all
                subprocess.run(command + flags, check=True)
                continue
            if args.keep_all:
                from voxseg.accel import heap

                heap.TRIM_FLOOR_BYTES = 1 << 62
            print(
                json.dumps(soak(condition, data, root / "results", args.epochs, args.trace, args.keep_all)),
                flush=True,
            )


if __name__ == "__main__":
    main()
