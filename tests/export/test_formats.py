"""`voxseg export`: TorchScript and ONNX files that give PyTorch's output on any side, carry what a
pipeline needs to use them (threshold, normalisation, size rule), and are checked and written atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import FAST, run_cli, write_dataset
from torch import nn

import voxseg
from voxseg.data.normalise import CLIP_PERCENTILES
from voxseg.errors import ConfigError
from voxseg.export.formats import AnySide, run_model
from voxseg.models.registry import get_model_spec
from voxseg.version import __version__


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    images, labels = write_dataset(root / "data", n=2, size=16, cells=2)
    options = {**FAST, "instance_output": "distance"}  # the exports carry both outputs
    config = voxseg.TrainConfig(images=images, labels=labels, results=root / "r", run_name="m", **options)
    return voxseg.train(config, progress=False).run_dir


def _padded_reference(model: nn.Module, x: np.ndarray, name: str) -> np.ndarray:
    """`model` on `x` padded as voxseg pads (centred, each volume's minimum, to the size rule), cropped."""
    sides = x.shape[2:]
    valid = get_model_spec(name).valid_size(sides)
    before = [(v - s) // 2 for v, s in zip(valid, sides, strict=True)]
    crop = tuple(slice(b, b + s) for b, s in zip(before, sides, strict=True))
    outputs = []
    for volume in x[:, 0]:
        widths = [(b, v - s - b) for b, v, s in zip(before, valid, sides, strict=True)]
        padded = np.pad(volume, widths, constant_values=volume.min())
        with torch.no_grad():
            outputs.append(model(torch.from_numpy(padded)[None, None]).numpy()[0][(slice(None), *crop)])
    return np.stack(outputs)


def _metadata(kind: str, path) -> dict[str, str]:
    """The file's `voxseg.*` metadata, as a pipeline without voxseg reads it."""
    if kind == "onnx":
        import onnx

        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    names = ("voxseg.threshold", "voxseg.normalisation", "voxseg.size_rule", "voxseg.json")
    names += ("voxseg.outputs", "voxseg.instances")
    extra = dict.fromkeys(names, "")
    torch.jit.load(str(path), _extra_files=extra)
    return {key: value.decode() for key, value in extra.items()}


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_exports_run_any_side_and_carry_what_predict_uses(run_dir, tmp_path, capsys, kind) -> None:
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    path = tmp_path / f"model.{kind}"
    assert run_cli(["export", run_dir, "--format", kind, "--output", path]) == 0
    out = capsys.readouterr().out
    # the checked shapes include one off the size rule (SegResNet: sides divisible by 8, at least 8)
    assert "max |difference| to PyTorch" in out and "on inputs 16×16×16, 24×24×24, 7×17×19" in out
    assert "sigmoid(logits) > 0.50" in out and "1 and 99.8 percentiles" in out and "multiples of 8" in out
    assert 6 <= len(out.strip().splitlines()) <= 8
    run = run_model(run_dir, "best")
    x = torch.randn(2, 1, 31, 45, 50).numpy() * 3 + 1  # another batch; sides that break the size rule
    if kind == "torchscript":
        got = torch.jit.load(str(path))(torch.from_numpy(x)).detach().numpy()
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": x})[0]
    assert got.shape == (x.shape[0], len(run.outputs), *x.shape[2:])  # instance ids: foreground, distance
    assert np.abs(got - _padded_reference(run.model, x, run.name)).max() < 1e-3

    metadata = _metadata(kind, path)
    assert any("threshold" in key.lower() for key in metadata)
    assert any("normal" in key.lower() for key in metadata)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert float(metadata["voxseg.threshold"]) == summary["threshold"]
    normalisation = json.loads(metadata["voxseg.normalisation"])
    assert tuple(normalisation["clip_percentiles"]) == CLIP_PERCENTILES
    assert json.loads(metadata["voxseg.size_rule"])["divisor"] == 8
    # the outputs and the post-processing voxseg predict --instances auto applies to them
    assert json.loads(metadata["voxseg.outputs"]) == ["foreground", "distance"] == summary["outputs"]
    assert json.loads(metadata["voxseg.instances"])["method"] == "distance"
    if kind == "onnx":
        assert metadata["voxseg.version"] == __version__ and metadata["voxseg.model"] == "SegResNet"
        assert json.loads(metadata["voxseg.window"]) == [16, 16, 16]
        assert json.loads(metadata["voxseg.voxel_size_um"]) is None  # the TIFFs carried none
    else:
        everything = json.loads(metadata["voxseg.json"])
        assert everything["threshold"] == summary["threshold"] and everything["version"] == __version__

    assert run_cli(["export", run_dir, "--format", kind, "--output", path]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


class _Recorder(nn.Module):
    """Gives its input back, and keeps it: what the wrapped network was handed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return x


def test_any_side_pads_to_the_rule_with_each_volumes_minimum_and_crops_back() -> None:
    recorder = _Recorder()
    x = torch.randn(2, 1, 5, 9, 16) + torch.tensor([0.0, 10.0]).view(2, 1, 1, 1, 1)
    y = AnySide(recorder, divisor=4, min_side=8)(x)
    assert torch.allclose(y, x, atol=1e-5)  # (x - min) + min: exact up to rounding
    assert recorder.seen.shape == (2, 1, 8, 12, 16)  # at least 8, divisible by 4
    assert torch.allclose(recorder.seen[:, :, 1:6, 1:10], x, atol=1e-5)  # centred
    for sample, volume in zip(recorder.seen, x, strict=True):
        assert float(sample[0, 0, 0, 0]) == pytest.approx(float(volume.min()))  # that volume's minimum


def test_bad_export_requests_exit_2(run_dir, tmp_path, capsys) -> None:
    assert run_cli(["export", tmp_path / "nope", "--output", tmp_path / "m.onnx"]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    assert run_cli(["export", run_dir, "--format", "tflite", "--output", tmp_path / "m"]) == 2
    assert "--format" in capsys.readouterr().err
    assert run_cli(["export", run_dir, "--output", tmp_path / "m.onnx", "--authors", "Ada Lovelace"]) == 2
    assert "--authors: only a --format bioimageio package holds it" in capsys.readouterr().err


class _SizeFrozenByTracing(nn.Module):
    """Adds a tensor built from Python ints of its input's shape: a trace keeps the traced size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.zeros([int(side) for side in x.shape])


def test_a_network_whose_trace_freezes_its_size_is_refused(tmp_path) -> None:
    from voxseg.export.formats import _check, _run_torchscript, write_torchscript

    model = AnySide(_SizeFrozenByTracing(), divisor=8, min_side=8)
    path = tmp_path / "frozen.pt"
    write_torchscript(model, torch.zeros(1, 1, 8, 8, 8), path, {"threshold": 0.5})
    with pytest.raises(
        ConfigError, match="--format: the exported network fails on a 16×8×8 input that PyTorch"
    ):
        _check(model, _run_torchscript(path), ((8, 8, 8), (16, 8, 8)))
