"""Data-parallel training through torchrun (2 CPU processes, gloo): the same first steps as one
process with the global batch, one run folder written by rank 0, resume under torchrun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voxseg.data.sampling import EpochOrder
from voxseg.runtime.distributed import Parallel, from_environment

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside python")


def _train(
    data: tuple[Path, Path | None], results: Path, processes: int, batch: int, *extra: str
) -> subprocess.CompletedProcess:
    images, labels = data
    common = [
        "-m",
        "voxseg",
        "train",
        "--images",
        str(images),
        *(["--labels", str(labels)] if labels is not None else []),
        "--results",
        str(results),
        "--patch-size",
        "16",
        "--samples-per-image",
        "4",
        "--batch-size",
        str(batch),
        "--seed",
        "0",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        *extra,
    ]
    launcher = (
        [str(TORCHRUN), "--standalone", "--nproc-per-node", str(processes)]
        if processes > 1
        else [sys.executable]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, *common], capture_output=True, text=True, timeout=300, env=env)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def data(tmp_path: Path, make_dataset) -> tuple[Path, Path]:
    return make_dataset(tmp_path / "data", n=4, size=16, cells=2)


def test_two_processes_train_as_one_with_the_global_batch(data, tmp_path: Path) -> None:
    options = ("--run-name", "r", "--epochs", "2", "--lr", "0.01")  # a large step: differences would show
    single = _train(data, tmp_path / "one", 1, 4, *options)
    double = _train(data, tmp_path / "two", 2, 2, *options)
    assert single.returncode == 0, single.stderr[-2000:]
    assert double.returncode == 0, double.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["r"]  # written once, by rank 0
    one, two = _rows(tmp_path / "one" / "r"), _rows(tmp_path / "two" / "r")
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):  # measured: equal to 1e-6 (float rounding of batch 2 vs 4)
        assert float(b["train_loss"]) == pytest.approx(float(a["train_loss"]), rel=1e-4)
        assert float(b["val_dice"]) == pytest.approx(float(a["val_dice"]), abs=2e-3)
    log = (tmp_path / "two" / "r" / "train.log").read_text()
    assert "2 processes (gloo, torchrun), batch 2 per process: global batch 4" in log


def test_resume_under_torchrun_continues_the_same_run_folder(data, tmp_path: Path) -> None:
    first = _train(data, tmp_path / "r", 2, 2, "--run-name", "a", "--epochs", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / "r" / "a"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    again = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "voxseg",
            "train",
            "--resume",
            str(run_dir),
            "--epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert [row["epoch"] for row in _rows(run_dir)] == ["1", "2"]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["a"]


def test_wnet3d_trains_under_torchrun_with_each_loss_term_averaged_over_the_ranks(
    data, tmp_path: Path
) -> None:
    images, _ = data
    options = ("--run-name", "w", "--epochs", "1", "--model", "WNet3D")
    single = _train((images, None), tmp_path / "one", 1, 4, *options)
    double = _train((images, None), tmp_path / "two", 2, 2, *options)
    assert single.returncode == 0, single.stderr[-2000:]
    assert double.returncode == 0, double.stderr[-2000:]
    (one,), (two,) = _rows(tmp_path / "one" / "w"), _rows(tmp_path / "two" / "w")
    for column in ("train_loss", "ncut_loss", "reconstruction_loss", "partition_loss"):
        assert float(two[column]) == pytest.approx(float(one[column]), rel=1e-3), column


def test_each_rank_takes_its_slice_of_every_global_batch() -> None:
    single = [i for _, i in EpochOrder(10, 0)]
    ranks = [[i for _, i in EpochOrder(10, 0, rank, 2, 2)] for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 6  # padded to whole global batches of 4
    steps = [ranks[0][k : k + 2] + ranks[1][k : k + 2] for k in range(0, 6, 2)]
    assert sum(steps, [])[:10] == single  # step by step, the single process's batches of 4


def test_one_process_is_a_world_of_one(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    parallel = from_environment()
    assert parallel == Parallel() and not parallel.active and parallel.is_main
    assert parallel.mean(2.5) == 2.5 and parallel.any(True) and parallel.shard([1, 2, 3]) == [1, 2, 3]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ranked = from_environment()
    assert (ranked.rank, ranked.world, ranked.local_rank, ranked.is_main) == (3, 4, 1, False)
    assert ranked.shard(list(range(10))) == [3, 7]


def test_sync_batchnorm_on_the_cpu_is_refused_before_anything_is_written(data, tmp_path: Path) -> None:
    result = _train(data, tmp_path / "r", 2, 2, "--run-name", "a", "--epochs", "1", "--sync-batchnorm")
    assert result.returncode != 0
    assert "error: --sync-batchnorm needs GPUs" in result.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
