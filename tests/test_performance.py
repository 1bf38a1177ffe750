"""Speed features that must not change results: oneDNN convolutions, precision choice, data-wait
report, augmentation on the device with batches prepared in the background."""

from __future__ import annotations

import csv
import logging
import threading

import pytest
import torch
from torch import nn

from voxseg.config import TrainConfig
from voxseg.errors import ConfigError
from voxseg.accel.onednn import OneDnnConv3d, use_onednn_convolutions
from voxseg.models.registry import build_model
from voxseg.training import loader
from voxseg.training.events import BatchEnd
from voxseg.training.precision import cpu_has_native_bf16, resolve_precision
from voxseg.api import train

needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN"
)


@needs_onednn
@pytest.mark.parametrize(
    ("in_channels", "out_channels", "kernel", "padding", "bias", "batch", "stride"),
    [
        (1, 8, 3, 1, False, 1, 1),
        (8, 16, 3, 1, True, 1, 1),
        (16, 8, 1, 0, True, 2, 1),
        (4, 4, 5, 2, True, 1, 1),
        (3, 5, 3, 0, True, 2, 1),
        (8, 16, 3, 1, False, 1, 2),  # a U-Net's downsampling
        (4, 6, 3, 0, True, 2, 2),  # odd sides: the last row of the input is never used
        (2, 3, 2, 0, True, 1, 2),
        (3, 4, 3, 1, True, 1, (1, 2, 3)),
    ],
)
def test_onednn_conv_matches_pytorch_forward_and_backward(
    in_channels, out_channels, kernel, padding, bias, batch, stride
):
    torch.manual_seed(0)
    options = dict(padding=padding, bias=bias, stride=stride)
    reference = nn.Conv3d(in_channels, out_channels, kernel, **options)
    fast = nn.Conv3d(in_channels, out_channels, kernel, **options)
    fast.load_state_dict(reference.state_dict())
    assert use_onednn_convolutions(fast) == 1 and isinstance(fast, OneDnnConv3d)
    x1 = torch.randn(batch, in_channels, 9, 10, 11, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = reference(x1), fast(x2)
    torch.testing.assert_close(y2, y1, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(y1)
    y1.backward(grad)
    y2.backward(grad)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-3)
    if bias:
        torch.testing.assert_close(fast.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-3)


@needs_onednn
def test_onednn_switch_keeps_state_dict_and_skips_what_it_cannot_compute():
    model = build_model("SegResNet")
    keys = list(model.state_dict())
    total = sum(1 for m in model.modules() if isinstance(m, nn.Conv3d))
    assert use_onednn_convolutions(model) == total  # strided downsampling layers included
    assert list(model.state_dict()) == keys
    others = nn.ModuleList(
        [
            nn.Conv3d(2, 2, 3, dilation=2),
            nn.Conv3d(2, 2, 3, groups=2),
            nn.Conv3d(2, 2, 3, padding_mode="reflect"),
        ]
    )
    assert use_onednn_convolutions(others) == 0


@needs_onednn
def test_whole_model_gradients_match():
    torch.manual_seed(0)
    reference = build_model("SegResNet")
    fast = build_model("SegResNet")
    fast.load_state_dict(reference.state_dict())
    use_onednn_convolutions(fast)
    x = torch.randn(1, 1, 16, 16, 16)
    reference(x).square().mean().backward()
    fast(x).square().mean().backward()
    for (name, a), b in zip(reference.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_precision_auto_on_cpu_is_native_only():
    chosen = resolve_precision("auto", torch.device("cpu"))
    assert chosen.name == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert not chosen.needs_scaler


def test_fp16_on_cpu_is_refused_and_explicit_bf16_is_honoured():
    with pytest.raises(ConfigError, match="--precision fp16 needs a CUDA or MPS device"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("bf16", torch.device("cpu")).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="--precision: 'half' is not one of auto, fp32, bf16, fp16"):
        TrainConfig(images=".", labels=".", precision="half").resolved()


def test_bf16_training_runs_and_learns_a_finite_model(tmp_path, make_dataset, fast_config):
    images, labels = make_dataset(tmp_path / "data", n=2, size=24)  # 16³ gave NaN without AMX (precision.py)
    result = train(fast_config(images, labels, precision="bf16", epochs=2, patch_size=24), progress=False)
    assert result.status == "completed" and result.summary["precision"] == "bf16"
    if not cpu_has_native_bf16():  # the run's own log says why it was slow
        assert "no native bfloat16 (AMX), so it is slow or emulated" in (result.run_dir / "train.log").read_text()
    state = torch.load(result.run_dir / "last.pth", weights_only=True)
    assert all(
        t.dtype == torch.float32 and torch.isfinite(t).all() for t in state.values() if t.is_floating_point()
    )


def test_data_wait_is_recorded_and_a_starved_epoch_warns(
    tmp_path, make_dataset, fast_config, monkeypatch, caplog
):
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    monkeypatch.setattr(loader, "DATA_STARVED_SHARE", -1.0)  # every epoch counts as starved
    with caplog.at_level(logging.WARNING, logger="voxseg"):
        result = train(fast_config(images, labels, epochs=2, workers=0), progress=False)
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").read_text().splitlines()))
    for row in rows:
        assert 0.0 <= float(row["data_seconds"]) <= float(row["train_seconds"]) <= float(row["epoch_seconds"])
        assert 0.0 <= float(row["data_share"]) <= 1.0
    assert 0.0 <= result.summary["data_wait_share"] <= 1.0
    warnings = [r.getMessage() for r in caplog.records if "waiting for data" in r.getMessage()]
    assert len(warnings) == 2 and "give --workers 1 or more" in warnings[0]


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
