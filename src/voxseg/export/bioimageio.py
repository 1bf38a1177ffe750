"""`voxseg export --format bioimageio`: a BioImage Model Zoo package (model description 0.5).

Built with bioimageio.spec's own classes and packed by its `save_bioimageio_package` (which
validates the description), so Fiji/deepImageJ, ilastik, QuPath and napari users can run the model
without voxseg. voxseg's normalisation is said in the spec's terms: clip at the 1 and 99.8
percentiles, then zero mean and unit variance over the volume (bioimageio.core takes the mean and
deviation of the unclipped volume there: close, not equal); the output is the foreground
probability (sigmoid). The weights are TorchScript and ONNX (when onnx is installed); the test
input is the middle of a validation volume and the test output what the package's pipeline gives.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from voxseg.data.normalise import CLIP_PERCENTILES
from voxseg.errors import DataError
from voxseg.version import __version__

log = logging.getLogger("voxseg")

AXES = ("z", "y", "x")


def export_bioimageio(run_dir: Path, output: Path, weights: str = "best", overwrite: bool = False) -> Path:
    """Write the run's BioImage Model Zoo package (a zip) to `output`; return it."""
    if output.exists() and not overwrite:
        raise DataError(f"--output: {output} already exists; give --overwrite to replace it")
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as spec

    from voxseg.export.formats import _onnx, _torchscript, run_model
    from voxseg.models.registry import get_model_spec

    name, model, window = run_model(run_dir, weights)
    rule = get_model_spec(name)
    with tempfile.TemporaryDirectory(prefix="voxseg-bioimageio-") as scratch:
        folder = Path(scratch)
        test_input = _test_input(run_dir, window)
        np.save(folder / "test_input.npy", test_input)
        np.save(folder / "test_output.npy", _probability(model, test_input))
        _torchscript(model, torch.from_numpy(test_input), folder / "weights.torchscript.pt")
        descriptions = {
            "torchscript": spec.TorchscriptWeightsDescr(
                source=folder / "weights.torchscript.pt",
                pytorch_version=spec.Version(torch.__version__.split("+")[0]),
            )
        }
        try:
            import onnx  # noqa: F401 (the exporter needs it)

            _onnx(model, torch.from_numpy(test_input), folder / "weights.onnx")
            descriptions["onnx"] = spec.OnnxWeightsDescr(
                source=folder / "weights.onnx", opset_version=17, parent="torchscript"
            )
        except ImportError:
            pass
        _cover(test_input, _probability(model, test_input), folder / "cover.png")
        summary = (
            json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
        )
        threshold = summary.get("threshold") or 0.5
        # the voxel size the run trained on, as the axes' scale (the zoo's consumers show it)
        voxel = summary.get("voxel_size_um")
        physical = {
            a: ({"unit": "micrometer", "scale": voxel[i]} if voxel else {}) for i, a in enumerate(AXES)
        }
        (folder / "README.md").write_text(_documentation(name, run_dir, summary, threshold))

        def describe() -> spec.ModelDescr:
            """The description of the files in `folder` (built afresh: it hashes them)."""
            space = [
                spec.SpaceInputAxis(
                    id=spec.AxisId(a),
                    size=spec.ParameterizedSize(min=rule.valid_side(1), step=rule.divisor),
                    **physical[a],
                )
                for a in AXES
            ]
            inputs = spec.InputTensorDescr(
                id=spec.TensorId("raw"),
                description="a 3D volume (any intensity type), normalised as voxseg trained it",
                axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("raw")]), *space],
                test_tensor=spec.FileDescr(source=folder / "test_input.npy"),
                sample_tensor=spec.FileDescr(source=_sample(folder / "sample_input.tif", test_input)),
                data=spec.IntervalOrRatioDataDescr(type="float32"),
                preprocessing=[
                    spec.ClipDescr(
                        kwargs=spec.ClipKwargs(
                            min_percentile=CLIP_PERCENTILES[0],
                            max_percentile=CLIP_PERCENTILES[1],
                            axes=[spec.AxisId(a) for a in AXES],
                        )
                    ),
                    spec.ZeroMeanUnitVarianceDescr(
                        kwargs=spec.ZeroMeanUnitVarianceKwargs(axes=[spec.AxisId(a) for a in AXES])
                    ),
                ],
            )
            outputs = spec.OutputTensorDescr(
                id=spec.TensorId("foreground"),
                description=f"foreground probability; voxseg's threshold for this model is {threshold:.2f}",
                axes=[
                    spec.BatchAxis(),
                    spec.ChannelAxis(channel_names=[spec.Identifier("foreground")]),
                    *[
                        spec.SpaceOutputAxis(
                            id=spec.AxisId(a),
                            size=spec.SizeReference(tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(a)),
                            **physical[a],
                        )
                        for a in AXES
                    ],
                ],
                test_tensor=spec.FileDescr(source=folder / "test_output.npy"),
                sample_tensor=spec.FileDescr(
                    source=_sample(folder / "sample_output.tif", np.load(folder / "test_output.npy"))
                ),
                postprocessing=[spec.SigmoidDescr()],
            )
            return spec.ModelDescr(
                name=f"voxseg {name} {run_dir.name}",
                description=f"3D foreground segmentation ({name}), trained with voxseg {__version__}",
                authors=[spec.Author(name="voxseg user (replace with the authors' names)")],
                cite=[
                    spec.CiteEntry(
                        text="MONAI Consortium, MONAI: Medical Open Network for AI",
                        doi=spec.Doi("10.5281/zenodo.4323058"),
                    )
                ],
                license=spec.LicenseId("MIT"),
                documentation=spec.FileDescr(source=folder / "README.md"),
                covers=[spec.FileDescr(source=folder / "cover.png")],
                inputs=[inputs],
                outputs=[outputs],
                weights=spec.WeightsDescr(**descriptions),
                tags=["3d", "segmentation", "nuclei", "voxseg", name.lower()],
            )

        # the test output is what the zoo's own pipeline makes of the test input: bioimageio.core
        # computes a sample's statistics before any preprocessing step, so its z-score uses the
        # unclipped volume's mean and deviation where voxseg uses the clipped one's (said in the log)
        draft = save_bioimageio_package(describe(), output_path=folder / "draft.zip")
        package_output = _pipeline_output(draft)
        np.save(folder / "test_output.npy", package_output)
        _sample(folder / "sample_output.tif", package_output)
        difference = float(np.abs(package_output - _probability(model, test_input)).max())
        log.info("bioimageio package: its probabilities differ from voxseg's by at most %.4f", difference)
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.exists():
            output.unlink()
        save_bioimageio_package(describe(), output_path=output)
    return output


def _pipeline_output(package: Path) -> np.ndarray:
    from bioimageio.core import create_prediction_pipeline
    from bioimageio.core.digest_spec import get_test_input_sample
    from bioimageio.spec import load_description

    description = load_description(package)
    pipeline = create_prediction_pipeline(description)
    result = pipeline.predict_sample_without_blocking(get_test_input_sample(description))
    return np.asarray(result.members[next(iter(result.members))].data.values, np.float32)


def _test_input(run_dir: Path, window: tuple[int, int, int]) -> np.ndarray:
    """A window from the middle of the run's first validation volume (raw intensities), (1, 1, Z, Y, X)."""
    from voxseg.config import TrainConfig
    from voxseg.data.discovery import pair_files
    from voxseg.io.formats import read_whole

    config = TrainConfig.from_yaml(run_dir / "config.yaml")
    folder, labels = config.val_images or config.images, config.val_labels or config.labels
    image = pair_files(Path(folder), Path(labels))[-1].image
    volume = read_whole(image, config.image_key, config.level).astype(np.float32)
    padded = np.pad(
        volume, [(0, max(w - s, 0)) for s, w in zip(volume.shape, window, strict=True)], mode="reflect"
    )
    start = [(s - w) // 2 for s, w in zip(padded.shape, window, strict=True)]
    crop = padded[tuple(slice(a, a + w) for a, w in zip(start, window, strict=True))]
    return np.ascontiguousarray(crop[None, None])


def _probability(model: torch.nn.Module, raw: np.ndarray) -> np.ndarray:
    """What the package's pipeline gives: voxseg's normalisation, the network, a sigmoid."""
    low, high = np.percentile(raw, CLIP_PERCENTILES)
    clipped = np.clip(raw, low, high)
    normalised = ((clipped - clipped.mean()) / (clipped.std() + 1e-6)).astype(np.float32)
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(normalised))).numpy()


def _sample(path: Path, tensor: np.ndarray) -> Path:
    """A (Z, Y, X) TIFF of a test tensor: what the zoo shows as the model's sample."""
    import tifffile

    tifffile.imwrite(path, tensor[0, 0].astype(np.float32))
    return path


def _cover(raw: np.ndarray, probability: np.ndarray, path: Path) -> None:
    """The middle slice, with the prediction in magenta over it."""
    from matplotlib.figure import Figure

    middle = raw.shape[2] // 2
    figure = Figure(figsize=(4, 4), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(raw[0, 0, middle], cmap="gray")
    axes.imshow(np.ma.masked_less(probability[0, 0, middle], 0.5), cmap="spring", alpha=0.5, vmin=0, vmax=1)
    axes.set_axis_off()
    figure.savefig(path)


def _documentation(name: str, run_dir: Path, summary: dict, threshold: float) -> str:
    return f"""# voxseg {name}

Trained with [voxseg](https://github.com/) {__version__} (run `{run_dir.name}`).
Validation Dice {summary.get("best_val_dice")} at the threshold below (epoch {summary.get("best_epoch")}).

- Input: a 3D volume; it is clipped at its {CLIP_PERCENTILES[0]:g} and {CLIP_PERCENTILES[1]:g}
  percentiles and normalised to zero mean and unit variance, as in training.
- Output: the foreground probability; voxseg thresholds it at {threshold:.2f}
  ({summary.get("threshold_reason") or "tuned on validation"}).
- Fill in the authors, the licence and the citation of the data before sharing this model.

## Validation

voxseg validated this model on its run's validation volumes after every epoch (sliding window
0.25 overlap, Gaussian blending): Dice of the foreground probability above 0.5
{summary.get("val_dice_at_half")}, above the threshold {threshold:.2f} {summary.get("best_val_dice")}.
"""
