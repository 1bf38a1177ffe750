"""`--patch-size auto` / `--batch-size auto`: measured memory, the largest sizes within the budget."""

from __future__ import annotations

import pytest
import torch

from voxseg.api import train
from voxseg.config import TrainConfig
from voxseg.models.registry import get_model_spec
from voxseg.runtime.precision import Precision
from voxseg.training import autosize

CPU = torch.device("cpu")
FP32 = Precision("fp32", "test")


@pytest.fixture(scope="module")
def segresnet_memory() -> autosize.StepMemory:
    return autosize.measure_step_memory(get_model_spec("SegResNet"), CPU, FP32)


def test_measured_memory_grows_with_voxels(segresnet_memory):
    assert segresnet_memory.per_voxel > 100  # activations of a 3D net: hundreds of bytes per voxel
    assert (
        segresnet_memory.bytes((64,) * 3, 2)
        > segresnet_memory.bytes((64,) * 3, 1)
        > segresnet_memory.bytes((32,) * 3, 1)
    )


def test_chosen_patch_is_the_largest_within_the_budget(monkeypatch, segresnet_memory):
    spec = get_model_spec("SegResNet")
    budget = int(segresnet_memory.bytes((80,) * 3, 2)) + 1  # 80³ at batch 2 fits, 88³ does not
    monkeypatch.setattr(autosize, "memory_budget", lambda device: (budget, "test budget"))
    monkeypatch.setattr(autosize, "measure_step_memory", lambda *args: segresnet_memory)
    patch, batch, notes = autosize.choose_sizes(spec, CPU, FP32, (200, 200, 200), "auto", "auto", 100)
    assert patch == (80, 80, 80)
    assert batch == 2  # a third patch of 80³ would not fit
    assert any("--patch-size auto: 80×80×80" in n for n in notes)
    assert any("--batch-size auto: 2" in n for n in notes)


def test_patch_is_clipped_to_the_smallest_volume_and_batch_to_the_epoch(monkeypatch, segresnet_memory):
    spec = get_model_spec("SegResNet")
    monkeypatch.setattr(autosize, "memory_budget", lambda device: (64 * 2**30, "plenty"))
    monkeypatch.setattr(autosize, "measure_step_memory", lambda *args: segresnet_memory)
    patch, batch, _ = autosize.choose_sizes(spec, CPU, FP32, (20, 100, 45), "auto", "auto", 6)
    assert patch == (16, 96, 40)  # each side: the largest multiple of 8 within the volume
    assert batch == 6


def test_auto_sizes_are_resolved_before_the_run_and_recorded(tmp_path, make_dataset, fast_config):
    images, labels = make_dataset(tmp_path / "data", n=3, size=24)
    config = fast_config(images, labels, patch_size="auto", batch_size="auto", epochs=1)
    result = train(config, progress=False)
    assert result.status == "completed"
    saved = TrainConfig.from_yaml(result.run_dir / "config.yaml")
    assert saved.patch_size == [24, 24, 24] and isinstance(saved.batch_size, int) and saved.batch_size >= 1
    log = (result.run_dir / "train.log").read_text()
    assert "--patch-size auto: 24×24×24" in log and "--batch-size auto" in log and "budget" in log


def test_auto_is_accepted_by_the_config_and_nothing_else():
    config = TrainConfig(images=".", labels=".", patch_size="AUTO", batch_size=" auto ").resolved()
    assert (config.patch_size, config.batch_size) == ("auto", "auto")
    with pytest.raises(Exception, match="--batch-size"):
        TrainConfig(images=".", labels=".", batch_size="many").resolved()
