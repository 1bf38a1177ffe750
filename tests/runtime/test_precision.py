"""The run's precision: auto is native only, impossible requests are refused, bf16 trains a finite model."""

from __future__ import annotations

import pytest
import torch

from voxseg.api import train
from voxseg.config import TrainConfig
from voxseg.errors import ConfigError
from voxseg.runtime.precision import cpu_has_native_bf16, resolve_precision

needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN"
)


@needs_onednn
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
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)  # a 2³ deepest level: accel/bf16_guard.py
    result = train(fast_config(images, labels, precision="bf16", epochs=2), progress=False)
    assert result.status == "completed" and result.summary["precision"] == "bf16"
    if not cpu_has_native_bf16():  # the run's own log says why it was slow
        assert (
            "no native bfloat16 (AMX), so it is slow or emulated"
            in (result.run_dir / "train.log").read_text()
        )
    state = torch.load(result.run_dir / "last.pth", weights_only=True)
    assert all(
        t.dtype == torch.float32 and torch.isfinite(t).all() for t in state.values() if t.is_floating_point()
    )
