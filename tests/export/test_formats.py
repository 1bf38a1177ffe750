"""`voxseg export`: TorchScript and ONNX files that give PyTorch's output, checked and written atomically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAST, run_cli, write_dataset

import voxseg
from voxseg.export.formats import run_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    images, labels = write_dataset(root / "data", n=2, size=16, cells=2)
    config = voxseg.TrainConfig(images=images, labels=labels, results=root / "r", run_name="m", **FAST)
    return voxseg.train(config, progress=False).run_dir


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_exports_give_pytorchs_output_on_other_sizes_too(run_dir, tmp_path, capsys, kind) -> None:
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
    path = tmp_path / f"model.{kind}"
    assert run_cli(["export", run_dir, "--format", kind, "--output", path]) == 0
    assert "max |difference| to PyTorch" in capsys.readouterr().out
    _, model, _ = run_model(run_dir, "best")
    x = torch.randn(2, 1, 24, 16, 32)  # another batch and other sides than the window (16³)
    with torch.no_grad():
        expected = model(x).numpy()
    if kind == "torchscript":
        got = torch.jit.load(str(path))(x).detach().numpy()
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-3
    assert run_cli(["export", run_dir, "--format", kind, "--output", path]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


def test_bad_export_requests_exit_2(run_dir, tmp_path, capsys) -> None:
    assert run_cli(["export", tmp_path / "nope", "--output", tmp_path / "m.onnx"]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    assert run_cli(["export", run_dir, "--format", "tflite", "--output", tmp_path / "m"]) == 2
    assert "--format" in capsys.readouterr().err
