"""The CUDA paths (mixed precision, loss scaling, torch.compile, channels-last, pinned memory,
measured auto-sizes) on a real GPU. Skipped where there is none, as on CI; run them on a GPU machine
with `pytest tests/accel/test_cuda.py`."""

from __future__ import annotations

import pytest
import torch

from voxseg.accel.prefetch import prepared_ahead
from voxseg.api import train
from voxseg.config import TrainConfig
from voxseg.models.registry import MODELS, build_model
from voxseg.models.weights import read_state_dict
from voxseg.training.checkpoint import CHECKPOINT_NAME

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_compiled_mixed_precision_run_learns_and_saves_plain_weights(tmp_path, make_dataset, fast_config):
    images, labels = make_dataset(tmp_path / "data", n=4, size=32)
    config = fast_config(
        images,
        labels,
        device="cuda",
        precision="auto",
        compile=True,
        patch_size=32,
        samples_per_image=4,
        batch_size=2,
        epochs=12,
        augment=True,
        workers=2,
        lr=3e-3,
    )
    result = train(config, progress=False)
    assert result.status == "completed"
    assert result.summary["precision"] == "bf16"
    assert result.summary["best_val_dice"] > 0.5  # the balls are learnt, not just run through
    assert "augmentation on cuda" in (result.run_dir / "train.log").read_text()
    model = build_model("SegResNet")
    model.load_state_dict(read_state_dict(result.run_dir / "best.pth"))  # no compiler prefixes


def test_float16_run_resumes_with_its_loss_scale(tmp_path, make_dataset, fast_config):
    images, labels = make_dataset(tmp_path / "data", n=2, size=24)
    config = fast_config(images, labels, device="cuda", precision="fp16", compile=False, epochs=2)
    first = train(config, progress=False)
    checkpoint = torch.load(first.run_dir / CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["scaler"]["scale"] > 0
    resumed = TrainConfig.for_resume(first.run_dir, {"epochs": 3})
    second = train(resumed, progress=False, resume=first.run_dir)
    assert second.status == "completed" and second.summary["epochs_completed"] == 3


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_trains_under_mixed_precision(tmp_path, make_dataset, fast_config, model):
    side = MODELS[model].valid_side(32)
    images, labels = make_dataset(tmp_path / "data", n=2, size=side)
    config = fast_config(
        images, labels, model=model, device="cuda", precision="bf16", compile=False, patch_size=side
    )
    result = train(config, progress=False)
    assert result.status == "completed" and 0.0 <= result.summary["best_val_dice"] <= 1.0


def test_auto_sizes_are_measured_on_the_gpu(tmp_path, make_dataset, fast_config):
    images, labels = make_dataset(tmp_path / "data", n=3, size=48)
    config = fast_config(images, labels, device="cuda", patch_size="auto", batch_size="auto", compile=False)
    result = train(config, progress=False)
    saved = TrainConfig.from_yaml(result.run_dir / "config.yaml")
    assert saved.patch_size == [48, 48, 48]  # 80% of a GPU's memory holds the whole volume
    assert isinstance(saved.batch_size, int) and saved.batch_size >= 1


def test_batches_made_on_the_side_stream_are_complete_when_the_step_uses_them():
    """Slow GPU work per batch on the side stream; the consumer must see each batch finished."""
    device = torch.device("cuda")
    side = torch.cuda.Stream(device)
    identity = torch.eye(2048, device=device)
    torch.cuda.synchronize()  # made on the default stream, read on the side one
    streams = []

    def batches():
        for index in range(20):
            streams.append(torch.cuda.current_stream(device))
            tensor = torch.full((2048, 2048), float(index), device=device)
            for _ in range(20):
                tensor = tensor @ identity
            yield (tensor,)

    means = [float(tensor.mean()) for (tensor,) in prepared_ahead(batches(), side)]
    assert means == [float(index) for index in range(20)]
    assert streams and all(stream == side for stream in streams)
    assert torch.cuda.current_stream(device) != side
