"""The data pipeline: loader workers, data wait and its advice, augmentation on the device."""

from __future__ import annotations

import csv
import logging
import threading

import pytest
import torch

from voxseg.api import train
from voxseg.training import loader
from voxseg.training.events import BatchEnd

needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN"
)


@needs_onednn
def test_data_wait_is_recorded_and_a_starved_epoch_warns(
    tmp_path, make_dataset, fast_config, monkeypatch, caplog
):
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    monkeypatch.setattr(loader, "DATA_STARVED_SHARE", -1.0)  # every epoch counts as starved
    monkeypatch.setattr(loader, "cpu_cores", lambda: 8)
    with caplog.at_level(logging.WARNING, logger="voxseg"):
        result = train(fast_config(images, labels, epochs=2, workers=0), progress=False)
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").read_text().splitlines()))
    for row in rows:
        assert 0.0 <= float(row["data_seconds"]) <= float(row["train_seconds"]) <= float(row["epoch_seconds"])
        assert 0.0 <= float(row["data_share"]) <= 1.0
    assert 0.0 <= result.summary["data_wait_share"] <= 1.0
    warnings = [r.getMessage() for r in caplog.records if "waiting for data" in r.getMessage()]
    assert len(warnings) == 2 and "give --workers 1 or more" in warnings[0]
    monkeypatch.setattr(loader, "cpu_cores", lambda: 2)  # where a worker would cost more than it gives
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="voxseg"):
        train(fast_config(images, labels, epochs=1, workers=0, run_name="two-cores"), progress=False)
    warnings = [r.getMessage() for r in caplog.records if "waiting for data" in r.getMessage()]
    assert "a loader worker would take a core" in warnings[0] and "--workers 1" not in warnings[0]


def test_auto_workers_follow_cores_and_memory(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(loader, "available_memory_bytes", lambda: 64 * 2**30)
    monkeypatch.setattr(loader, "cpu_cores", lambda: 2)
    assert loader.auto_workers(cpu, 64**3) == 0  # a worker would take a core from the training step
    monkeypatch.setattr(loader, "cpu_cores", lambda: 16)
    assert loader.auto_workers(cpu, 64**3) == 2
    assert loader.auto_workers(gpu, 64**3) == 8
    monkeypatch.setattr(loader, "available_memory_bytes", lambda: 3 * 2**30)  # room for one worker
    assert loader.auto_workers(gpu, 64**3) == 1


def test_augmenting_on_the_device_trains_on_the_same_patches(
    tmp_path, make_dataset, fast_config, monkeypatch
):
    """The GPU path (augmentation after the copy, per-sample seeds) run on the CPU: same losses."""
    images, labels = make_dataset(tmp_path / "data", n=3, size=16, cells=2)
    options = dict(augment=True, samples_per_image=3, batch_size=2, epochs=2)
    in_loader = train(fast_config(images, labels, run_name="loader", **options), progress=False)
    monkeypatch.setattr(loader, "augments_on_device", lambda device: True)
    on_device = train(fast_config(images, labels, run_name="device", **options), progress=False)
    assert "augmentation on cpu" in (on_device.run_dir / "train.log").read_text()
    assert "augmentation on" not in (in_loader.run_dir / "train.log").read_text()
    losses = [
        [float(row["train_loss"]) for row in csv.DictReader((run.run_dir / "metrics.csv").open())]
        for run in (in_loader, on_device)
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_stop_with_batches_prepared_in_the_background(tmp_path, make_dataset, fast_config, monkeypatch):
    """Stop mid-epoch while the producer thread is ahead: the run stops, the thread ends."""
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)
    monkeypatch.setattr(loader, "augments_on_device", lambda device: True)
    stop = threading.Event()

    def stop_on_second_batch(event) -> None:
        if isinstance(event, BatchEnd) and event.batch == 2:
            stop.set()

    config = fast_config(images, labels, augment=True, epochs=3, samples_per_image=6)
    result = train(config, listeners=[stop_on_second_batch], stop_event=stop, progress=False)
    assert result.status == "stopped" and result.summary["patches_seen"] == 2
    assert not [t for t in threading.enumerate() if t.name == "voxseg-prefetch"]


def test_starved_with_device_augmentation_points_at_the_augmentation(
    tmp_path, make_dataset, fast_config, monkeypatch, caplog
):
    """With augmentation on the device the loader only cuts patches: more workers would not help."""
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    monkeypatch.setattr(loader, "DATA_STARVED_SHARE", -1.0)
    monkeypatch.setattr(loader, "augments_on_device", lambda device: True)
    with caplog.at_level(logging.WARNING, logger="voxseg"):
        train(fast_config(images, labels, augment=True, workers=1), progress=False)
    warnings = [r.getMessage() for r in caplog.records if "waiting for data" in r.getMessage()]
    assert warnings and "augmentation on cpu (one background thread) is the likely cause" in warnings[0]


def test_a_loader_worker_leaves_a_pre_emption_to_the_run() -> None:
    """SLURM signals every process of a job: a worker ignores SIGTERM and SIGHUP, the run stops."""
    import signal

    before = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGTERM", "SIGHUP")}
    try:
        loader.leave_stops_to_the_run(0)
        assert all(signal.getsignal(getattr(signal, name)) == signal.SIG_IGN for name in before)
    finally:
        for name, handler in before.items():
            signal.signal(getattr(signal, name), handler)
