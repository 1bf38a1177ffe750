"""`voxseg export RUN_DIR --format torchscript|onnx`: the run's network as a file PyTorch alone (or any
ONNX runtime) can run, checked against PyTorch's own output before it is put in place.

Both take (N, 1, Z, Y, X) normalised images and give logits (sigmoid for probabilities), with the
batch and the spatial sides free (sides must keep the model's size rule). TorchScript is traced;
ONNX uses PyTorch's TorchScript-based exporter (opset 17; the newer dynamo exporter needs
onnxscript, one more dependency, and gave nothing these networks need).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voxseg.errors import ConfigError, DataError
from voxseg.models.registry import get_model_spec
from voxseg.models.weights import load_trained_network
from voxseg.runtime.files import replacing

log = logging.getLogger("voxseg")

OPSET = 17
FORMATS = ("torchscript", "onnx")


@dataclass(frozen=True)
class Exported:
    path: Path
    format: str
    max_abs_difference: float  # against PyTorch, on inputs of two sizes
    checked_shapes: tuple[tuple[int, ...], ...]


def run_model(run_dir: Path, weights: str) -> tuple[str, nn.Module, tuple[int, int, int]]:
    """The run's network with its `best` (or `last`) weights, in eval mode, and its window."""
    from voxseg.inference.trained import check_source

    name, best, window, _ = check_source(run_dir, None)
    path = best if weights == "best" else run_dir / "last.pth"
    if not path.is_file():
        raise DataError(f"--weights: {path} does not exist")
    model, _ = load_trained_network(name, path, "RUN_DIR")
    return name, model.eval(), window


def export(
    run_dir: Path, format: str, output: Path, weights: str = "best", overwrite: bool = False
) -> Exported:
    """Write the run's network to `output` in `format`, atomically, after checking it."""
    if format not in FORMATS:
        raise ConfigError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
    if output.exists() and not overwrite:
        raise DataError(f"--output: {output} already exists; give --overwrite to replace it")
    name, model, window = run_model(run_dir, weights)
    spec = get_model_spec(name)
    shapes = (window, spec.valid_size(tuple(side + spec.divisor for side in window)))
    writer, runner = {"torchscript": (_torchscript, _run_torchscript), "onnx": (_onnx, _run_onnx)}[format]
    with replacing(output) as temp:
        writer(model, torch.zeros(1, 1, *window), temp)
        difference = _check(model, runner(temp), shapes)
    log.info("%s: %s exported, max |difference| to PyTorch %.2e on %s", output, format, difference, shapes)
    return Exported(output, format, difference, shapes)


def _check(model: nn.Module, run: Callable[[np.ndarray], np.ndarray], shapes) -> float:
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.randn(1, 1, *shape, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        worst = max(worst, float(np.abs(run(x.numpy()) - expected).max()))
    return worst


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
        traced = torch.jit.trace(model, example)
    traced.save(str(path))


def _run_torchscript(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    loaded = torch.jit.load(str(path))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(x)).numpy()

    return run


def _onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    axes = {0: "batch", 2: "z", 3: "y", 4: "x"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated upstream
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )


def _run_onnx(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import onnxruntime
    except ImportError:
        raise DataError(
            "--format onnx: checking the export needs onnxruntime (pip install 'voxseg[export]')"
        ) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0]
