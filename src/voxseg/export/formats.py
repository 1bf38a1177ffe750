"""`voxseg export RUN_DIR --format torchscript|onnx`: the run's network as a file PyTorch alone (or any
ONNX runtime) can run, checked against PyTorch's own output before it is put in place.

Both take (N, 1, Z, Y, X) normalised images and give logits (sigmoid for probabilities), with the
batch and the sides free: the file pads any side up to the model's size rule (with the input's
minimum, as voxseg pads a volume smaller than its window) and crops the output back, so an odd
volume runs instead of failing inside the runtime. What a pipeline needs to use the file as
`voxseg predict` does (threshold, normalisation, size rule, window, voxel size) travels inside it:
ONNX `metadata_props`, TorchScript extra files, keys `voxseg.*`. TorchScript is traced; ONNX uses
PyTorch's TorchScript-based exporter (opset 17; the newer dynamo exporter needs onnxscript, one more
dependency, and gave nothing these networks need).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voxseg.data.normalise import CLIP_PERCENTILES
from voxseg.errors import ConfigError, DataError
from voxseg.models.registry import OUTPUT_NAMES, format_size, get_model_spec, output_channels
from voxseg.models.weights import load_trained_network
from voxseg.runtime.files import replacing
from voxseg.version import __version__

log = logging.getLogger("voxseg")

OPSET = 17
FORMATS = ("torchscript", "onnx")
#: the TorchScript extra file that holds all of the metadata as one JSON object
METADATA_FILE = "voxseg.json"


@dataclass(frozen=True)
class RunModel:
    """A run's network, in eval mode, with what it was trained on."""

    name: str
    model: nn.Module  # the network alone: sides must keep its size rule
    window: tuple[int, int, int]
    summary: dict[str, Any]  # summary.json ({} if the run has none)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The network's output channels by name (the foreground, then the distance, if learned)."""
        return OUTPUT_NAMES[: output_channels(self.name, self.model.state_dict())]


@dataclass(frozen=True)
class Exported:
    path: Path
    format: str
    max_abs_difference: float  # against PyTorch, on inputs of the shapes below
    checked_shapes: tuple[tuple[int, ...], ...]
    metadata: dict[str, Any]


def run_model(run_dir: Path, weights: str) -> RunModel:
    """The run's network with its `best` (or `last`) weights, in eval mode, and its window."""
    from voxseg.inference.model.trained import check_source

    name, best, window, summary = check_source(run_dir, None)
    path = best if weights == "best" else run_dir / "last.pth"
    if not path.is_file():
        raise DataError(f"--weights: {path} does not exist")
    model, _ = load_trained_network(name, path, "RUN_DIR")
    return RunModel(name, model.eval(), window, summary)


class AnySide(nn.Module):
    """`model` for inputs of any side: each side is padded up to the size rule (centred, with the
    input's minimum, as voxseg pads a volume smaller than its window) and the output cropped back.

    The padding is arithmetic on the input's shape that the tracer records (ONNX: Shape, Pad, Slice),
    so traced and exported files compute it for each input; every intermediate stays non-negative,
    since ONNX's integer division truncates where Python's floors, and max() is written as
    arithmetic, since Python's max() would freeze the traced size."""

    def __init__(self, model: nn.Module, divisor: int, min_side: int) -> None:
        super().__init__()
        self.model, self.divisor, self.min_side = model, divisor, min_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[Any] = []
        crops = []
        for side in x.shape[2:]:
            at_least = (side + self.min_side + abs(side - self.min_side)) // 2  # max(side, min_side)
            extra = (at_least + self.divisor - 1) // self.divisor * self.divisor - side
            before = extra // 2
            pads = [before, extra - before, *pads]  # F.pad lists the last axis first
            crops.append(slice(before, before + side))
        low = x.amin(dim=(1, 2, 3, 4), keepdim=True)
        logits = self.model(F.pad(x - low, pads) + low)
        return logits[(slice(None), slice(None), *crops)]


def any_side(run: RunModel) -> AnySide:
    """The network as the exported files hold it."""
    spec = get_model_spec(run.name)
    return AnySide(run.model, spec.divisor, spec.min_side).eval()


def metadata(run_dir: Path, run: RunModel, weights: str) -> dict[str, Any]:
    """What a pipeline without voxseg needs to use the network as `voxseg predict` does."""
    from voxseg.inference.model.trained import run_threshold

    spec = get_model_spec(run.name)
    summary = run.summary
    threshold, reason = run_threshold(summary)
    outputs = run.outputs
    meanings = {
        "foreground": "the foreground probability",
        "distance": "each nucleus's distance to its own boundary over its largest (1 at centres, 0 at "
        "boundaries, also between touching nuclei)",
    }
    return {
        "version": __version__,
        "model": run.name,
        "run": run_dir.name,
        "weights": f"{weights}.pth",
        "input": "float32 (N, 1, Z, Y, X), each volume normalised as voxseg.normalisation says "
        "(ONNX: input `image`)",
        "output": f"float32 (N, {len(outputs)}, Z, Y, X) logits; their sigmoid is, by channel, "
        + "; ".join(f"{i}: {meanings[o]}" for i, o in enumerate(outputs))
        + " (ONNX: output `logits`)",
        "outputs": list(outputs),
        "instances": _instances(outputs, summary),
        "threshold": threshold,
        "threshold_reason": reason,
        "normalisation": {
            "clip_percentiles": list(CLIP_PERCENTILES),
            "then": "subtract the clipped volume's mean, divide by its standard deviation",
            "statistics": "once per whole volume, not per tile",
        },
        "size_rule": {
            "divisor": spec.divisor,
            "min_side": spec.min_side,
            "any_side": "the file pads other sides to the rule with the input's minimum and crops back",
        },
        "window": list(run.window),
        "voxel_size_um": summary.get("voxel_size_um"),
        "resample": summary.get("resample"),
    }


def _instances(outputs: tuple[str, ...], summary: dict[str, Any]) -> dict[str, Any]:
    """How `voxseg predict --instances auto` makes one label per nucleus of this network's outputs."""
    from voxseg.inference.model.instances import DISTANCE_SCALE, REFERENCE_RADIUS, SMOOTHING, H

    distance = "distance" in outputs
    scale = DISTANCE_SCALE if distance else 1.0
    weight = "channel 1's probability (the distance)" if distance else "the foreground probability"
    return {
        "method": "distance" if distance else "watershed",
        "rule": f"the distance transform of the thresholded foreground times {weight}, smoothed by a "
        f"Gaussian of {SMOOTHING * scale:g} × object_radius / {REFERENCE_RADIUS}; seeds at its h-maxima of "
        f"h {H * scale:g} × object_radius / {REFERENCE_RADIUS}; the watershed of its negation floods the "
        "foreground from them"
        + ("; foreground with no seed is no object" if distance else "; a part with no seed is one object"),
        "object_radius": summary.get("object_radius"),
        "unit": "µm" if summary.get("voxel_size_um") else "voxels",
    }


def as_strings(meta: dict[str, Any]) -> dict[str, str]:
    """`voxseg.KEY` -> text (numbers, lists and objects as JSON): what ONNX's metadata_props hold."""
    return {f"voxseg.{key}": v if isinstance(v, str) else json.dumps(v) for key, v in meta.items()}


def export(
    run_dir: Path, format: str, output: Path, weights: str = "best", overwrite: bool = False
) -> Exported:
    """Write the run's network to `output` in `format`, atomically, after checking it."""
    if format not in FORMATS:
        raise ConfigError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
    if output.exists() and not overwrite:
        raise DataError(f"--output: {output} already exists; give --overwrite to replace it")
    run = run_model(run_dir, weights)
    model, meta = any_side(run), metadata(run_dir, run, weights)
    spec = get_model_spec(run.name)
    window = run.window
    off_rule = (spec.min_side - 1, window[1] + 1, window[2] + 3)  # every model pads each of these
    shapes = (window, spec.valid_size(tuple(side + spec.divisor for side in window)), off_rule)
    writer, runner = {
        "torchscript": (write_torchscript, _run_torchscript),
        "onnx": (write_onnx, _run_onnx),
    }[format]
    with replacing(output) as temp:
        writer(model, torch.zeros(1, 1, *window), temp, meta)
        difference = _check(model, runner(temp), shapes)
    log.info("%s: %s exported, max |difference| to PyTorch %.2e on %s", output, format, difference, shapes)
    return Exported(output, format, difference, shapes, meta)


def how_to_use(done: Exported) -> list[str]:
    """What the command line prints under the written file: enough to run it without voxseg."""
    meta, rule = done.metadata, done.metadata["size_rule"]
    names = (" image", " logits") if done.format == "onnx" else ("", "")
    voxel = meta["voxel_size_um"]
    trained = f"voxel size {format_size(tuple(voxel))} µm" if voxel else "voxel size unknown"
    if meta["resample"] == "isotropic":
        trained += " (voxseg predict resamples volumes to it first)"
    where = (
        "metadata_props voxseg.* (onnx.load(path).metadata_props)"
        if done.format == "onnx"
        else f"extra files voxseg.* and {METADATA_FILE} (torch.jit.load(path, _extra_files={{NAME: ''}}))"
    )
    low, high = meta["normalisation"]["clip_percentiles"]
    multiples = f"multiples of {rule['divisor']}, " if rule["divisor"] > 1 else ""
    return [
        f"  input{names[0]}: float32 (N, 1, Z, Y, X), any sides (padded inside to {multiples}at least "
        f"{rule['min_side']}, and cropped back; such sides run fastest)",
        f"  normalise each whole volume: clip at its {low:g} and {high:g} percentiles, then zero mean "
        "and unit variance",
        f"  output{names[1]}: foreground where sigmoid(logits) > {meta['threshold']:.2f} "
        "(voxseg predict's threshold for this run)"
        + (
            "; channel 1: each nucleus's distance to its boundary, whose peaks seed one object each"
            if "distance" in meta["outputs"]
            else ""
        ),
        f"  trained on {format_size(tuple(meta['window']))} windows, {trained}",
        f"  all of this is in the file: {where}",
    ]


def _check(model: nn.Module, run: Callable[[np.ndarray], np.ndarray], shapes) -> float:
    """The largest |difference| between the written file and PyTorch, on random inputs."""
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.randn(1, 1, *shape, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        try:
            got = run(x.numpy())
        except Exception as exc:  # onnxruntime and the TorchScript interpreter raise their own types
            raise _frozen(shape) from exc
        if got.shape != expected.shape:
            raise _frozen(shape)
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def _frozen(shape: tuple[int, ...]) -> ConfigError:
    return ConfigError(
        f"--format: the exported network fails on a {format_size(shape)} input that PyTorch runs: tracing "
        "froze a size-dependent step of the network (SwinUNETR's attention masks do); nothing was written"
    )


def write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any]) -> None:
    """Traced; the metadata as extra files: one `voxseg.KEY` each, and all of it in voxseg.json."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
        traced = torch.jit.trace(model, example)
    extra = {**as_strings(meta), METADATA_FILE: json.dumps(meta, indent=2)}
    traced.save(str(path), _extra_files=extra)


def _run_torchscript(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    loaded = torch.jit.load(str(path))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(x)).numpy()

    return run


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any]) -> None:
    """Exported with the batch and the sides free; the metadata as `voxseg.KEY` metadata_props."""
    try:
        import onnx
    except ImportError:
        raise DataError("--format onnx: writing ONNX needs onnx (pip install 'voxseg[export]')") from None
    axes = {0: "batch", 2: "z", 3: "y", 4: "x"}
    exported = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated upstream
        torch.onnx.export(
            model,
            (example,),
            exported,
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )
    proto = onnx.load_from_string(exported.getvalue())
    onnx.helper.set_model_props(proto, as_strings(meta))
    onnx.save(proto, str(path))


def _run_onnx(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import onnxruntime
    except ImportError:
        raise DataError(
            "--format onnx: checking the export needs onnxruntime (pip install 'voxseg[export]')"
        ) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0]
