"""`torchrun -m voxseg predict`: 2 CPU ranks (gloo) share one volume and write what one process
writes, bit for bit; a killed rank ends the job, and `--resume` finishes it to the same result."""

from __future__ import annotations

import filecmp
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tifffile
import zarr
from conftest import synthetic_volume, train_small_run

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside python")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_small_run(tmp_path_factory.mktemp("trained"))[0]


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> Path:
    """96 planes: 3 units of 32, shared 2 + 1 (or 1 + 2) by two ranks."""
    image, _ = synthetic_volume((96, 48, 48), cells=40, seed=5)
    path = tmp_path_factory.mktemp("in") / "vol.zarr"
    zarr.open_array(str(path), mode="w", shape=image.shape, chunks=(32, 48, 48), dtype=image.dtype)[:] = image
    return path


def _predict(trained: Path, volume: Path, output: Path, ranks: int, *extra: str, wait: bool = True):
    command = ["-m", "voxseg", "predict", str(trained), "--input", str(volume), "--output", str(output)]
    # the run trained on instance ids: `auto` seeds from its distance output, written as vol_distance
    command += ["--instances", "auto", "--save-probabilities", *extra]
    if ranks > 1:
        command = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(ranks), *command]
    else:
        command = [sys.executable, *command, "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _read(path: Path) -> np.ndarray:
    return tifffile.imread(path) if path.suffix == ".tif" else zarr.open(str(path))["0"][:]


def _same(a: Path, b: Path) -> None:
    for kind in ("mask", "labels", "prob", "distance"):
        np.testing.assert_array_equal(_read(a / f"vol_{kind}.zarr"), _read(b / f"vol_{kind}.zarr"))
    assert filecmp.cmp(a / "vol_objects.csv", b / "vol_objects.csv", shallow=False)


@pytest.fixture(scope="module")
def one_process(trained, volume, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("one")
    done = _predict(trained, volume, output, 1)
    assert done.returncode == 0, done.stdout + done.stderr
    return output


def test_two_ranks_write_what_one_process_writes(trained, volume, one_process, tmp_path) -> None:
    done = _predict(trained, volume, tmp_path, 2)
    assert done.returncode == 0, done.stdout + done.stderr
    _same(one_process, tmp_path)
    assert sorted(int(n) for n in re.findall(r"rank \d: (\d+) units", done.stderr)) == [1, 2]
    assert done.stdout.count("voxseg: predicted 1 volume(s)") == 1  # rank 0 reports
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_two_ranks_on_one_machine_share_a_tiff_output(trained, volume, one_process, tmp_path) -> None:
    done = _predict(trained, volume, tmp_path, 2, "--output-format", "tiff")
    assert done.returncode == 0, done.stdout + done.stderr
    for kind in ("mask", "labels", "prob", "distance"):  # the same values as one process's OME-Zarr
        np.testing.assert_array_equal(
            _read(one_process / f"vol_{kind}.zarr"), _read(tmp_path / f"vol_{kind}.tif")
        )


def test_two_ranks_deal_two_volumes_whole_so_hdf5_is_allowed(trained, volume, one_process, tmp_path) -> None:
    import h5py

    image, _ = synthetic_volume((40, 32, 32), cells=6, seed=6)
    second = tmp_path / "in" / "small.zarr"
    zarr.open_array(str(second), mode="w", shape=image.shape, dtype=image.dtype)[:] = image
    command = [
        str(TORCHRUN),
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "voxseg",
        "predict",
        str(trained),
    ]
    command += [
        "--input",
        str(volume),
        str(second),
        "--output",
        str(tmp_path / "out"),
        "--output-format",
        "hdf5",
    ]
    command += ["--instances", "auto", "--save-probabilities"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "predicted 2 volume(s)" in done.stdout
    assert sorted(int(n) for n in re.findall(r"rank \d: (\d+) units", done.stderr)) == [2, 3]  # a volume each
    for kind in ("mask", "labels", "prob", "distance"):
        with h5py.File(tmp_path / "out" / f"vol_{kind}.h5") as written:
            np.testing.assert_array_equal(written["data"][...], _read(one_process / f"vol_{kind}.zarr"))


def test_an_hdf5_output_shared_by_two_ranks_is_refused_before_the_model_loads(
    trained, volume, tmp_path
) -> None:
    done = _predict(trained, volume, tmp_path / "out", 2, "--output-format", "hdf5")
    assert done.returncode != 0
    assert "2 processes cannot write one HDF5 output together; give --output-format zarr" in done.stderr
    assert "tensors from" not in done.stderr and not (tmp_path / "out").exists()


def test_a_killed_rank_ends_the_job_and_resume_finishes_it(trained, volume, one_process, tmp_path) -> None:
    job = _predict(trained, volume, tmp_path, 2, "--tta", wait=False)
    units = tmp_path / ".voxseg-partial-vol" / "units"
    deadline = time.monotonic() + 120
    while not list(units.glob("*.json")) and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    ranks = psutil.Process(job.pid).children()
    assert job.poll() is None and len(ranks) == 2, "the job ended before a unit was recorded"
    os.kill(ranks[-1].pid, signal.SIGKILL)
    started = time.monotonic()
    output, _ = job.communicate(timeout=90)
    assert time.monotonic() - started < 60 and job.returncode != 0, output
    assert list(units.glob("*.json")), "the finished units are kept"
    done = _predict(trained, volume, tmp_path, 2, "--tta", "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stderr
    whole = tmp_path / "whole"
    assert _predict(trained, volume, whole, 1, "--tta").returncode == 0
    _same(whole, tmp_path)
