"""Custom weights: every accepted format loads strictly; bad or malicious files are refused (exit 2)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from monai.networks.nets import SegResNetVAE
from safetensors.torch import save_file

from voxseg.cli import main
from voxseg.errors import DataError
from voxseg.models.registry import build_model
from voxseg.models.weights import load_trained_network, read_state_dict

REFERENCE_KEYS = Path(__file__).resolve().parents[3] / "shared/reference/trailmap_ms_state_dict_keys.txt"


class _Evil:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch {self.target}",))


def _randomised(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (torch.randn_like(v) if v.is_floating_point() else v.clone()) for k, v in state.items()}


def test_reference_trailmap_ms_state_dict_loads(tmp_path: Path) -> None:
    """A state dict with the published names and shapes loads into TRAILMAP_MS, values and all."""
    if not REFERENCE_KEYS.is_file():
        pytest.skip(f"{REFERENCE_KEYS} is not available")
    state = {}
    for line in REFERENCE_KEYS.read_text().splitlines():
        name, _, shape = line.partition(" (")
        if not shape:
            continue
        dims = tuple(int(d) for d in shape.rstrip(")").split(",") if d.strip())
        dtype = torch.long if name.endswith("num_batches_tracked") else torch.float32
        state[name] = torch.ones(dims, dtype=dtype) * 0.5 if dtype == torch.float32 else torch.tensor(7)
    torch.save(state, tmp_path / "TRAILMAP_latest.pth")
    model, _ = load_trained_network("TRAILMAP_MS", tmp_path / "TRAILMAP_latest.pth")
    assert torch.equal(model.state_dict()["final_conv.weight"], state["final_conv.weight"])


def test_segresnetvae_weights_load_into_segresnet(tmp_path: Path) -> None:
    """napari-cellseg3d trained SegResNetVAE; its VAE branch is dropped, everything else must match."""
    vae = SegResNetVAE(input_image_size=(32, 32, 32), in_channels=1, out_channels=1, dropout_prob=0.3)
    state = _randomised(vae.state_dict())
    torch.save(state, tmp_path / "SegResNet_latest.pth")
    model, _ = load_trained_network("SegResNet", tmp_path / "SegResNet_latest.pth")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert any(k.startswith("vae_") for k in state)


@pytest.mark.parametrize("wrap", ["plain", "voxseg-checkpoint", "data-parallel", "safetensors"])
def test_every_weights_format_loads(tmp_path: Path, wrap: str) -> None:
    state = _randomised(build_model("SegResNet").state_dict())
    path = tmp_path / ("w.safetensors" if wrap == "safetensors" else "w.pth")
    if wrap == "plain":
        torch.save(state, path)
    elif wrap == "voxseg-checkpoint":
        torch.save({"model": state, "epoch": 3}, path)
    elif wrap == "data-parallel":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model, _ = load_trained_network("SegResNet", path)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)


def test_mismatch_names_keys_and_shapes(tmp_path: Path) -> None:
    state = build_model("SegResNet").state_dict()
    state.pop("convInit.conv.weight")
    state["extra.weight"] = torch.zeros(1)
    state["conv_final.2.conv.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(DataError) as info:
        load_trained_network("SegResNet", tmp_path / "w.pth")
    message = str(info.value)
    assert "convInit.conv.weight" in message and "extra.weight" in message
    assert "conv_final.2.conv.bias (5,) != (1,)" in message and "\n" not in message


def test_pickle_with_code_is_refused_without_running(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"weight": _Evil(target)}, handle)
    with pytest.raises(DataError, match="refused without running it"):
        read_state_dict(tmp_path / "evil.pth")
    assert not target.exists()


def test_cli_refuses_evil_weights_with_exit_2(
    tmp_path: Path, make_dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    target = tmp_path / "pwned"
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"weight": _Evil(target)}, handle)
    results = tmp_path / "results"
    code = main(
        [
            "train",
            "--images",
            str(images),
            "--labels",
            str(labels),
            "--results",
            str(results),
            "--weights",
            str(tmp_path / "evil.pth"),
            "--epochs",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --weights")
    assert not target.exists() and not results.exists()


def test_not_a_state_dict_and_missing_file(tmp_path: Path) -> None:
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(DataError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pth")
    with pytest.raises(DataError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="not a plain weights file"):
        read_state_dict(tmp_path / "garbage.pth")


def test_training_starts_from_the_given_weights(tmp_path: Path, make_dataset) -> None:
    """--weights is read before the run starts and said in the log."""
    import threading

    import voxseg
    from voxseg.training.events import RunStarted

    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    state = _randomised(build_model("SegResNetDS").state_dict())  # the default model
    torch.save(state, tmp_path / "start.pth")
    stop = threading.Event()
    config = voxseg.TrainConfig(
        images=images,
        labels=labels,
        results=tmp_path / "r",
        epochs=1,
        patch_size=16,
        weights=tmp_path / "start.pth",
    )
    result = voxseg.train(
        config,
        listeners=[lambda e: stop.set() if isinstance(e, RunStarted) else None],
        stop_event=stop,
        progress=False,
    )
    assert result.status == "stopped"
    assert "weights: custom weights" in (result.run_dir / "train.log").read_text()


def test_fine_tuning_reaches_the_dice_sooner_than_from_scratch(tmp_path: Path, make_dataset) -> None:
    """Transfer learning: weights from set A make training on a similar set B good from the first epoch."""
    import voxseg

    # SegResNet, the model of napari-cellseg3d's published weights (what --pretrained fine-tunes)
    common = dict(
        model="SegResNet", patch_size=32, samples_per_image=2, batch_size=2, augment=False, scheduler="none"
    )
    source_images, source_labels = make_dataset(tmp_path / "a", n=3, size=32, seed=1, cells=4)
    source = voxseg.train(
        voxseg.TrainConfig(
            images=source_images,
            labels=source_labels,
            results=tmp_path / "r",
            epochs=8,
            lr=3e-3,
            run_name="source",
            **common,
        ),
        progress=False,
    )
    images, labels = make_dataset(tmp_path / "b", n=3, size=32, seed=2, cells=4)

    def dice_curve(run_name: str, weights: Path | None) -> list[float]:
        config = voxseg.TrainConfig(
            images=images,
            labels=labels,
            results=tmp_path / "r",
            epochs=3,
            run_name=run_name,
            weights=weights,
            **common,
        )
        run = voxseg.train(config, progress=False)
        rows = (run.run_dir / "metrics.csv").read_text().strip().splitlines()[1:]
        return [float(row.split(",")[2]) for row in rows]

    scratch = dice_curve("scratch", None)
    tuned = dice_curve("tuned", source.run_dir / "best.pth")
    target = 0.7
    first = lambda curve: next((i for i, d in enumerate(curve, 1) if d >= target), len(curve) + 1)  # noqa: E731
    assert source.best_val_dice >= 0.8
    assert first(tuned) < first(scratch), (tuned, scratch)
