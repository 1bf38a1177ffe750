"""Exact resume after a crash, extending a finished run, LR schedules and early stopping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import voxseg
from voxseg.cli import main
from voxseg.training.schedule import LRSchedule


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "voxseg", "train", *args]


def _rows(run: Path) -> list[str]:
    return (run / "metrics.csv").read_text().strip().splitlines()[1:]


def _max_difference(a: Path, b: Path) -> float:
    first, second = (torch.load(p, weights_only=True) for p in (a, b))
    assert first.keys() == second.keys()
    return max((first[k].double() - second[k].double()).abs().max().item() for k in first)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path: Path, make_dataset) -> None:
    """SIGKILL during epoch 3 of 6, `--resume`: 6 consecutive rows and the same final weights."""
    images, labels = make_dataset(tmp_path / "data", n=3, size=32, cells=4)
    common = [
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--results",
        str(tmp_path / "r"),
        "--epochs",
        "6",
        "--patch-size",
        "32",
        "--samples-per-image",
        "1",
        "--batch-size",
        "1",
        "--model",
        "SegResNet",
        "--seed",
        "5",
        "--threads",  # fixed: threads that follow the machine's load may change float rounding
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    subprocess.run(_cli(*common, "--run-name", "full"), check=True, capture_output=True, env=env)
    cut = tmp_path / "r" / "cut"
    process = subprocess.Popen(
        _cli(*common, "--run-name", "cut"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.monotonic() + 120
    while not ((cut / "checkpoint.pt").exists() and len(_rows(cut)) >= 2):
        assert process.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(_rows(cut)) < 6
    resumed = subprocess.run(_cli("--resume", str(cut)), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert [row.split(",")[0] for row in _rows(cut)] == [str(e) for e in range(1, 7)]
    assert _max_difference(tmp_path / "r" / "full" / "last.pth", cut / "last.pth") < 1e-6
    full_losses = [row.split(",")[1] for row in _rows(tmp_path / "r" / "full")]
    assert [row.split(",")[1] for row in _rows(cut)] == full_losses
    assert "resumed after epoch" in (cut / "train.log").read_text()


def test_extending_a_completed_run_equals_training_longer(tmp_path: Path, make_dataset, fast_config) -> None:
    """VNet has dropout, so this also shows that the torch RNG is restored with the checkpoint."""
    images, labels = make_dataset(tmp_path / "data", n=2, size=32)
    short = fast_config(images, labels, epochs=2, run_name="short", model="VNet", patch_size=32)
    done = voxseg.train(short, progress=False)
    longer = voxseg.TrainConfig.from_yaml(done.run_dir / "config.yaml")
    longer.epochs = 3
    extended = voxseg.train(longer, progress=False, resume=done.run_dir)
    assert extended.status == "completed" and extended.summary["epochs_completed"] == 3
    assert len(_rows(done.run_dir)) == 3
    straight = voxseg.train(
        fast_config(images, labels, epochs=3, run_name="straight", model="VNet", patch_size=32),
        progress=False,
    )
    assert _max_difference(straight.run_dir / "last.pth", done.run_dir / "last.pth") < 1e-6


def test_resume_refusals_exit_2(tmp_path: Path, make_dataset, fast_config, capsys) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    run = voxseg.train(fast_config(images, labels, epochs=2, run_name="a"), progress=False)
    capsys.readouterr()
    for argv, expected in (
        (["--resume", str(run.run_dir), "--epochs", "2"], "--epochs"),
        (["--resume", str(run.run_dir), "--epochs", "3", "--model", "VNet"], "--model"),
        (["--resume", str(tmp_path / "nowhere")], "--resume"),
    ):
        assert main(["train", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
    (run.run_dir / "checkpoint.pt").unlink()
    assert main(["train", "--resume", str(run.run_dir), "--epochs", "3"]) == 2
    assert "checkpoint.pt" in capsys.readouterr().err


def test_lr_schedules() -> None:
    optimizer = torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    warm = LRSchedule(optimizer, "none", 1.0, epochs=10, warmup=3)
    assert [warm.lr_for(e) for e in (1, 2, 3, 4, 10)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    cosine = LRSchedule(optimizer, "cosine", 1.0, epochs=10, warmup=0)
    curve = [cosine.lr_for(e) for e in range(1, 11)]
    assert curve[0] == pytest.approx(1.0) and curve[5] == pytest.approx(0.5, abs=1e-3)
    assert all(a > b for a, b in zip(curve, curve[1:], strict=False)) and curve[-1] < 0.03
    poly = LRSchedule(optimizer, "poly", 1.0, epochs=10, warmup=0)
    assert poly.lr_for(1) == 1.0 and 0 < poly.lr_for(10) < poly.lr_for(5) < 1.0
    plateau = LRSchedule(optimizer, "plateau", 1.0, epochs=50, warmup=0)
    for epoch in range(1, 9):
        plateau.start_epoch(epoch)
        plateau.validated(epoch, 0.5)  # never better than the first
    assert plateau.lr_for(9) == pytest.approx(0.5)


def test_early_stop_after_patience(tmp_path: Path, make_dataset, fast_config) -> None:
    """With a vanishing LR the Dice cannot improve after epoch 1: patience 2 stops after epoch 3."""
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    config = fast_config(images, labels, epochs=10, lr=1e-12, early_stop_patience=2, scheduler="none")
    result = voxseg.train(config, progress=False)
    assert result.status == "completed" and result.summary["stopped_early"] is True
    assert result.summary["epochs_completed"] == 3


def test_resume_with_another_model_leaves_the_run_untouched(
    tmp_path: Path, make_dataset, fast_config
) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    run = voxseg.train(fast_config(images, labels, epochs=1, run_name="a"), progress=False)
    before = {p.name: p.read_bytes() for p in run.run_dir.iterdir() if p.is_file()}
    other = voxseg.TrainConfig.from_yaml(run.run_dir / "config.yaml")
    other.model, other.epochs = "TRAILMAP_MS", 2
    with pytest.raises(voxseg.ConfigError, match="--resume"):
        voxseg.train(other, progress=False, resume=run.run_dir)
    assert {p.name: p.read_bytes() for p in run.run_dir.iterdir() if p.is_file()} == before


def test_resume_works_from_another_directory(tmp_path: Path, make_dataset, monkeypatch) -> None:
    """config.yaml holds absolute paths, so --resume does not depend on the current directory."""
    make_dataset(tmp_path / "data", n=2, size=16)
    monkeypatch.chdir(tmp_path)
    config = voxseg.TrainConfig(
        images="data/images",
        labels="data/labels",
        results="r",
        epochs=1,
        patch_size=16,
        samples_per_image=1,
        run_name="a",
    )
    voxseg.train(config, progress=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["train", "--resume", str(tmp_path / "r" / "a"), "--epochs", "2"]) == 0
    assert len(_rows(tmp_path / "r" / "a")) == 2


def test_a_checkpoint_from_unfused_adam_resumes_with_this_devices_kernel(
    tmp_path: Path, make_dataset, fast_config
) -> None:
    """Runs saved before Adam was fused (or on a device without the fused kernel) still resume."""
    images, labels = make_dataset(tmp_path / "data", n=2, size=32)
    done = voxseg.train(fast_config(images, labels, epochs=1, patch_size=32), progress=False)
    checkpoint = done.run_dir / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert all(group["fused"] for group in state["optimizer"]["param_groups"])  # CPU: fused
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = None
    torch.save(state, checkpoint)
    longer = voxseg.TrainConfig.from_yaml(done.run_dir / "config.yaml")
    longer.epochs = 2
    assert voxseg.train(longer, progress=False, resume=done.run_dir).status == "completed"
    resumed = torch.load(checkpoint, weights_only=True)
    assert all(group["fused"] for group in resumed["optimizer"]["param_groups"])
