"""Training throughput: trains, then prints one JSON line per run (machine-readable, for tables).

    .venv/bin/python benchmarks/train_throughput.py --model SegResNet --patch 64 --batch 1 --epochs 3
    .venv/bin/python benchmarks/train_throughput.py --peer-data /tmp/voxseg-peer/data --model SegResNet VNet

`--peer-data` uses the folder `../shared/peer/run_peer.sh` made, with the reference's settings (loss
Dice, lr 1e-3, batch 1, patch 64, 2 samples per image, augmentation on, validation every epoch) and
its split (sorted names, the first 80% train, the rest validate), so the Dice is measured on the
same validation volume as the reference's `eval_weights.py`.

Each run is a fresh subprocess, so its peak memory is its own. Fields: `patches_per_second`
(training patches over the training-loop time, data loading included, validation excluded; the
first epoch, which pays one-off start-up costs, is left out when there are several),
`train_seconds_per_epoch`, `data_wait_share` (share of the training loop spent waiting for
patches), `peak_rss_tree_mb` and `peak_pss_tree_mb` (this process and its children; see
PeakMemory), `best_val_dice` and `final_val_dice` (probability > 0.5 on the whole validation volumes,
validated after every epoch), and `seconds_to_target_dice`: wall time from the start of training
(set-up included, imports not) to the first validation reaching `--target-dice` (null if none did).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TypeVar

import numpy as np
import tifffile


def make_dataset(root: Path, n: int, size: int, seed: int) -> tuple[Path, Path]:
    """Bright balls on a noisy background; labels are instance ids (1..k). Each ball is drawn in its
    own bounding box, so a 160³ volume takes a second, not minutes."""
    rng = np.random.default_rng(seed)
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(n):
        label = np.zeros((size,) * 3, np.uint16)
        image = rng.normal(0.2, 0.15, (size,) * 3).astype(np.float32)
        for cell in range(1, max(4, size**3 // 6000) + 1):
            radius = rng.uniform(3, 6)
            centre = rng.uniform(radius, size - radius, 3)
            low = np.maximum(np.floor(centre - radius - 1), 0).astype(int)
            high = np.minimum(np.ceil(centre + radius + 2), size).astype(int)
            box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
            grid = np.stack(np.mgrid[box], axis=-1).astype(np.float32)
            distance = np.linalg.norm(grid - centre, axis=-1)
            label[box][distance <= radius] = cell
            image[box] += rng.uniform(0.6, 1.0) * np.clip(radius + 1 - distance, 0, 1)
        tifffile.imwrite(images / f"vol_{i:02d}.tif", (image * 1000).astype(np.float32))
        tifffile.imwrite(labels / f"vol_{i:02d}_label.tif", label)
    return images, labels


def split_like_the_reference(data: Path, root: Path, train_fraction: float = 0.8) -> dict[str, Path]:
    """Sorted pairs, the first int(N * fraction) train, the rest validate (napari-cellseg3d's rule)."""
    images = sorted(p for p in (data / "images").iterdir() if p.suffix in (".tif", ".tiff"))
    labels = sorted(p for p in (data / "labels").iterdir() if p.suffix in (".tif", ".tiff"))
    cut = int(len(images) * train_fraction)
    folders = {}
    for part, index in (("train", slice(0, cut)), ("val", slice(cut, None))):
        for kind, files in (("images", images), ("labels", labels)):
            folder = root / part / kind
            folder.mkdir(parents=True)
            for position, path in enumerate(files[index]):  # paired by sorted position, like the reference
                (folder / f"vol_{position:02d}{path.suffix}").symlink_to(path.resolve())
            folders[f"{part}_{kind}"] = folder
    return folders


SamplerT = TypeVar("SamplerT", bound="_Sampler")


class _Sampler:
    """Calls `sample()` every `interval` seconds in a daemon thread while the `with` block runs."""

    interval: float  # each sampler sets its own

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self: SamplerT) -> SamplerT:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class PeakMemory(_Sampler):
    """Peak memory of this process plus all its descendants (DataLoader workers).

    `peak`: this process's own peak RSS from the kernel (`ru_maxrss`: exact, and free to read) plus
    the peak sum of its descendants' RSS, sampled every 0.5 s. Finding the descendants scans /proc
    (~2.5 ms); at the reference's 0.1 s that sampling slowed a 2-core training by a few percent.
    Forked workers share most of their pages with the parent, which RSS counts once per process, so
    `peak_pss` (each shared page split among its sharers; Linux; ~20 ms a reading, so once a second)
    is the fairer total when there are workers; without any it is `peak`.
    """

    interval = 0.5

    def __init__(self) -> None:
        import psutil

        super().__init__()
        self.process = psutil.Process()
        self.peak_children = 0
        self._peak_pss = 0
        self._readings = 0

    def sample(self) -> None:
        import psutil

        self._readings += 1
        children = self.process.children(recursive=True)
        if not children:
            return
        with_pss = self._readings % 2 == 0  # the costly reading, once a second
        rss = pss = 0
        for process in [*children, self.process] if with_pss else children:
            with contextlib.suppress(psutil.Error):  # a worker that just exited
                info = process.memory_full_info() if with_pss else process.memory_info()
                rss += info.rss if process is not self.process else 0
                pss += getattr(info, "pss", info.rss)
        self.peak_children = max(self.peak_children, rss)
        if with_pss:
            self._peak_pss = max(self._peak_pss, pss)

    @property
    def peak(self) -> int:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return own * (1 if sys.platform == "darwin" else 1024) + self.peak_children

    @property
    def peak_pss(self) -> int:
        return self._peak_pss or self.peak


class GpuUtilisation(_Sampler):
    """GPU utilisation (%) from `nvidia-smi`, sampled every 0.5 s while training.

    `report` gives the mean and peak over the whole `train()` call (start-up, compilation and
    validation included) and the mean over the measured epochs' training loops alone.
    """

    interval = 0.5
    _QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[tuple[float, float]] = []  # (perf_counter, percent)

    def sample(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
            percent = float(subprocess.run(self._QUERY, capture_output=True, text=True).stdout)
            self.samples.append((time.perf_counter(), percent))

    def report(self, window: tuple[float, float] | None) -> dict:
        if not self.samples:
            return {}
        percents = [p for _, p in self.samples]
        inside = [p for t, p in self.samples if window and window[0] <= t <= window[1]]
        return {
            "gpu_util_mean": round(sum(percents) / len(percents), 1),
            "gpu_util_max": max(percents),
            "gpu_util_training_mean": round(sum(inside) / len(inside), 1) if inside else None,
        }


class TrainingWindow:
    """Callback: when the measured epochs' batches ran (the first epoch is left out if there are more)."""

    def __init__(self, epochs: int) -> None:
        self.first_epoch = 2 if epochs > 1 else 1
        self.start: float | None = None
        self.end: float | None = None
        self._epoch_started = time.perf_counter()

    def __call__(self, event: object) -> None:
        from voxseg.training.events import BatchEnd, EpochEnd

        now = time.perf_counter()
        if isinstance(event, BatchEnd) and event.epoch >= self.first_epoch:
            if self.start is None:
                self.start = self._epoch_started
            self.end = now
        elif isinstance(event, EpochEnd):
            self._epoch_started = now

    @property
    def span(self) -> tuple[float, float] | None:
        return (self.start, self.end) if self.start is not None and self.end is not None else None


class DiceClock:
    """Callback: seconds from its creation until a validation Dice first reaches `target`."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.started = time.perf_counter()
        self.seconds: float | None = None

    def __call__(self, event: object) -> None:
        from voxseg.training.events import ValidationEnd

        if self.seconds is None and isinstance(event, ValidationEnd) and event.dice >= self.target:
            self.seconds = round(time.perf_counter() - self.started, 2)


def run_one(args: argparse.Namespace, model: str) -> dict:
    import torch

    import voxseg

    if args.no_prefetch:
        from voxseg.training import loader

        loader.prepared_ahead = lambda batches, side: batches
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        options: dict = dict(
            model=model,
            loss="dice",
            lr=1e-3,
            patch_size=args.patch,
            batch_size=args.batch,
            epochs=args.epochs,
            samples_per_image=args.samples_per_image,
            device=args.device,
            precision=args.precision,
            compile=not args.no_compile,
            fast_kernels=args.kernels == "fast",
            augment=not args.no_augment,
            seed=args.seed,
            run_name="bench",
            val_interval=1,
        )
        if args.workers is not None:
            options["workers"] = args.workers
        if args.peer_data:
            folders = split_like_the_reference(args.peer_data, root / "split")
            options.update(
                images=folders["train_images"],
                labels=folders["train_labels"],
                val_images=folders["val_images"],
                val_labels=folders["val_labels"],
            )
        else:
            options["images"], options["labels"] = make_dataset(
                root / "data", args.volumes, args.size, seed=0
            )
        config = voxseg.TrainConfig(results=root / "results", **options)
        on_gpu = (
            torch.cuda.is_available() and args.device in ("auto", "cuda") or args.device.startswith("cuda")
        )
        gpu = GpuUtilisation() if on_gpu else contextlib.nullcontext()
        window = TrainingWindow(args.epochs)
        with PeakMemory() as memory, gpu:
            clock = DiceClock(args.target_dice)
            result = voxseg.train(config, progress=False, listeners=[window, clock])
        summary = result.summary
        rows = list(csv.DictReader((result.run_dir / "metrics.csv").read_text().splitlines()))
        steady = rows[1:] if len(rows) > 1 else rows
        train_s = sum(float(r["train_seconds"]) for r in steady)
        data_s = sum(float(r["data_seconds"]) for r in steady)
        patches_per_epoch = summary["patches_seen"] / max(len(rows), 1)
        dices = [float(r["val_dice"]) for r in rows if r["val_dice"]]
        return {
            "model": model,
            "patch": args.patch,
            "batch": args.batch,
            "precision": summary["precision"],
            "device": summary["device"],
            "epochs": summary["epochs_completed"],
            "patches_per_second": round(patches_per_epoch * len(steady) / train_s, 4),
            "train_seconds_per_epoch": round(train_s / len(steady), 3),
            "data_wait_share": round(data_s / train_s, 4),
            "peak_rss_tree_mb": round(memory.peak / 2**20, 1),
            "peak_pss_tree_mb": round(memory.peak_pss / 2**20, 1),
            "best_val_dice": summary["best_val_dice"],
            "final_val_dice": dices[-1] if dices else None,
            "target_dice": args.target_dice,
            "seconds_to_target_dice": clock.seconds,
            "data": str(args.peer_data) if args.peer_data else f"generated {args.volumes}x{args.size}^3",
            "compile": not args.no_compile,
            "fast_kernels": args.kernels == "fast",
            "augment": not args.no_augment,
            "prefetch": on_gpu and not args.no_prefetch,
            "workers": result.summary.get("workers"),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            **(gpu.report(window.span) if on_gpu else {}),
            **(
                {"gpu_peak_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
                if on_gpu
                else {}
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["SegResNet"], help="one run per model")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples-per-image", type=int, default=2)
    parser.add_argument("--volumes", type=int, default=4, help="generated volumes (without --peer-data)")
    parser.add_argument("--size", type=int, default=64, help="generated volume side")
    parser.add_argument(
        "--peer-data", type=Path, default=None, help="folder made by ../shared/peer/run_peer.sh"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--no-prefetch",
        action="store_true",
        help="prepare batches in the training thread (what the background thread gains, on a GPU)",
    )
    parser.add_argument(
        "--kernels",
        choices=("fast", "pytorch", "both"),
        default="fast",
        help="voxseg's own CPU kernels, PyTorch's (--no-fast-kernels), or one run with each",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--target-dice", type=float, default=0.8, help="report the seconds until validation reaches it"
    )
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one run, in this process
    args = parser.parse_args()
    if args.single:
        print(json.dumps(run_one(args, args.model[0])), flush=True)
        return
    kernels = ("fast", "pytorch") if args.kernels == "both" else (args.kernels,)
    argv = _without(_without(sys.argv[1:], "--model"), "--kernels")
    for model in args.model:  # each in its own process, so peak memory is per run
        for kind in kernels:
            started = time.perf_counter()
            run = [sys.executable, __file__, *argv, "--model", model, "--kernels", kind, "--single"]
            subprocess.run(run, check=True)
            print(f"# {model}, {kind} kernels: {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _without(argv: list[str], option: str) -> list[str]:
    """`argv` without `option` and the values that follow it."""
    if option not in argv:
        return argv
    start = argv.index(option)
    end = start + 1
    while end < len(argv) and not argv[end].startswith("--"):
        end += 1
    return argv[:start] + argv[end:]


if __name__ == "__main__":
    main()
