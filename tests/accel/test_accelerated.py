"""One entry for the fast paths: the switch turns voxseg's own kernels off without changing the
losses, and every process-wide setting a run changes is back as it was when the run ends."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import _dynamo

from voxseg.accel import accelerated
from voxseg.accel.onednn import OneDnnConv3d
from voxseg.accel.upsample import SeparableUpsample
from voxseg.api import train
from voxseg.models.registry import build_model
from voxseg.training.events import BatchEnd


def _losses(config) -> list[float]:
    losses: list[float] = []
    train(
        config,
        listeners=[lambda e: losses.append(e.loss) if isinstance(e, BatchEnd) else None],
        progress=False,
    )
    return losses


def test_a_run_gives_the_same_losses_with_and_without_the_fast_kernels(
    tmp_path, make_dataset, fast_config, caplog
) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    options = dict(epochs=2, samples_per_image=1, precision="fp32")  # two volumes: 2 batches an epoch
    with caplog.at_level(logging.INFO, logger="voxseg"):
        fast = _losses(fast_config(images, labels, run_name="fast", **options))
    assert "convolution(s) on oneDNN" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="voxseg"):
        plain = _losses(fast_config(images, labels, run_name="plain", fast_kernels=False, **options))
    assert "PyTorch's own kernels (--no-fast-kernels)" in caplog.text
    assert len(fast) == len(plain) == 4
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(plain), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fast_kernels", [True, False])
def test_the_switch_decides_which_kernels_the_model_runs(fast_kernels: bool) -> None:
    model = build_model("SegResNet")
    with accelerated(torch.device("cpu"), fast_kernels=fast_kernels) as acceleration:
        acceleration.tune(model, mixed_precision=False)
    kinds = {type(m) for m in model.modules()}
    assert (OneDnnConv3d in kinds) == (fast_kernels and torch.backends.mkldnn.is_available())
    assert (SeparableUpsample in kinds) == fast_kernels


def test_process_settings_are_restored_after_the_run_even_when_it_fails() -> None:
    """cuDNN autotuning and torch.compile's eager fallback are process-wide: napari hosts other plugins."""
    before = (torch.backends.cudnn.benchmark, _dynamo.config.suppress_errors)
    with pytest.raises(RuntimeError, match="boom"), accelerated(torch.device("cuda"), compile=True):
        assert torch.backends.cudnn.benchmark and _dynamo.config.suppress_errors
        raise RuntimeError("boom")
    assert (torch.backends.cudnn.benchmark, _dynamo.config.suppress_errors) == before


def test_overlapping_runs_give_the_setting_back_after_the_last() -> None:
    """The napari worker and a console run may overlap; inference inside a run switches autotuning
    off for its block only."""
    from voxseg.accel.cuda import heuristic_kernels

    before = torch.backends.cudnn.benchmark
    first, second = accelerated(torch.device("cuda")), accelerated(torch.device("cuda"))
    first.__enter__()
    second.__enter__()
    with heuristic_kernels():
        assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.benchmark is True
    first.__exit__(None, None, None)
    assert torch.backends.cudnn.benchmark is True  # the second run still trains
    second.__exit__(None, None, None)
    assert torch.backends.cudnn.benchmark == before
