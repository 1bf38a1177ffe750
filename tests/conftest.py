"""Shared fixtures: synthetic 3D TIFF datasets written to tmp_path, and a fast training config.

The synthetic volumes are bright soft-edged balls on a dim background with Gaussian noise, so a
network can learn them in a few steps; labels are instance ids (1..k), as microscopy labels are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from voxseg.config import TrainConfig

Size = int | Sequence[int]


def _shape(size: Size) -> tuple[int, int, int]:
    if isinstance(size, int):
        return (size, size, size)
    z, y, x = (int(s) for s in size)
    return (z, y, x)


def synthetic_volume(
    size: Size, seed: int = 0, cells: int = 3, label_dtype: type = np.uint16
) -> tuple[np.ndarray, np.ndarray]:
    """Image (float32) and instance labels (ids 1..cells) of `cells` bright balls.

    A ball's intensity falls from 1 to 0 over one voxel at its radius (clip(r + 0.5 - d, 0, 1)),
    then the image is scaled to background 100, cells 200, noise sigma 10: a clear contrast.
    """
    shape = _shape(size)
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij")
    brightness = np.zeros(shape, np.float32)
    label = np.zeros(shape, label_dtype)
    smallest = min(shape)
    for instance in range(1, cells + 1):
        radius = max(2.0, rng.uniform(0.12, 0.2) * smallest)
        centre = [rng.uniform(radius, side - radius) for side in shape]
        distance = np.sqrt(sum((axis - c) ** 2 for axis, c in zip(grid, centre, strict=True)))
        brightness = np.maximum(brightness, np.clip(radius + 0.5 - distance, 0.0, 1.0))
        label[distance <= radius] = instance
    image = 100.0 + 100.0 * brightness + rng.normal(0.0, 10.0, shape)
    return image.astype(np.float32), label


def write_dataset(
    root: Path,
    n: int = 3,
    size: Size = 32,
    seed: int = 0,
    label_suffix: str = "_label",
    cells: int = 3,
    label_dtype: type = np.uint16,
    ext: str = ".tif",
) -> tuple[Path, Path]:
    """Write `root/images/vol_XX<ext>` and `root/labels/vol_XX<label_suffix><ext>`; return both folders."""
    images, labels = Path(root) / "images", Path(root) / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for index in range(n):
        image, label = synthetic_volume(size, seed=seed * 1000 + index, cells=cells, label_dtype=label_dtype)
        tifffile.imwrite(images / f"vol_{index:02d}{ext}", image)
        tifffile.imwrite(labels / f"vol_{index:02d}{label_suffix}{ext}", label)
    return images, labels


@pytest.fixture
def make_dataset() -> Callable[..., tuple[Path, Path]]:
    """Factory: `make_dataset(root, n=3, size=32, seed=0, label_suffix="_label", cells=3)`."""
    return write_dataset


#: options that make a run take about a second on 2 CPU cores
FAST: dict[str, Any] = dict(
    model="SegResNet",
    loss="dice",
    patch_size=16,
    samples_per_image=1,
    batch_size=1,
    epochs=1,
    val_interval=1,
    workers=0,
    device="cpu",
    augment=False,
    seed=0,
    threads=2,  # fixed: threads that follow the machine's load may change float rounding between runs
)


@pytest.fixture
def fast_config(tmp_path: Path) -> Callable[..., TrainConfig]:
    """Factory: a TrainConfig for tiny data, results in tmp_path/results, run folder `run`."""

    def build(images: Path, labels: Path, **overrides: Any) -> TrainConfig:
        options = {**FAST, "results": tmp_path / "results", "run_name": "run", **overrides}
        return TrainConfig(images=images, labels=labels, **options)

    return build


@pytest.fixture
def fast_args() -> Callable[..., list[str]]:
    """Factory: CLI flags equivalent to FAST (plus the data and results folders)."""

    def build(images: Path, labels: Path, results: Path, **overrides: Any) -> list[str]:
        options = {key: value for key, value in {**FAST, **overrides}.items() if key != "augment"}
        args = ["train", "--images", str(images), "--labels", str(labels), "--results", str(results)]
        for key, value in options.items():
            args += ["--" + key.replace("_", "-"), str(value)]
        if not {**FAST, **overrides}["augment"]:
            args.append("--no-augment")
        return args

    return build


def signalled_training(
    argv: Sequence[Any], run_dir: Path, logs: Path, signum: int, timeout: float = 180
) -> int:
    """`python -m voxseg` run with `argv` (stdout and stderr into `logs`/stdout.txt, stderr.txt), sent
    `signum` once its training has started (metrics.csv exists); its exit code."""
    import subprocess
    import sys
    import time

    with open(logs / "stdout.txt", "w") as out, open(logs / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "voxseg", *map(str, argv)], stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + timeout
            while not (run_dir / "metrics.csv").exists():  # written when training starts
                assert proc.poll() is None, (logs / "stderr.txt").read_text()
                assert time.monotonic() < deadline, f"training did not start within {timeout:g} s"
                time.sleep(0.1)
            proc.send_signal(signum)
            return proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run_cli(argv: Sequence[Any]) -> int:
    """Exit code of `voxseg argv` (paths as they are), whether main returns it or argparse exits."""
    from voxseg.cli import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0)


def train_small_run(root: Path) -> tuple[Path, Path, Path]:
    """A SegResNet trained for 3 epochs on three 24³ volumes: (run folder, images, labels)."""
    import voxseg

    images, labels = write_dataset(root / "data", n=3, size=24, cells=3)
    options = {**FAST, "epochs": 3, "samples_per_image": 4, "batch_size": 2, "lr": 3e-3, "precision": "fp32"}
    config = TrainConfig(images=images, labels=labels, results=root / "results", run_name="m", **options)
    return voxseg.train(config, progress=False).run_dir, images, labels


#: how long a napari widget's worker may run in a test (a small training or prediction on 2 cores)
RUN_TIMEOUT_MS = 120_000


def wait_until_idle(qtbot: Any, widget: Any) -> None:
    """Until a dock widget's worker thread has ended."""
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)


def stop_if_running(qtbot: Any, widget: Any) -> None:
    """A fixture's teardown: never leave a worker thread behind a failed test."""
    if widget.running:
        widget.stop()
        wait_until_idle(qtbot, widget)
