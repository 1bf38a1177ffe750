"""`voxseg export --format bioimageio`: a BioImage Model Zoo package (model description 0.5).

Built with bioimageio.spec's own classes and packed by its `save_bioimageio_package` (which
validates the description), so Fiji/deepImageJ, ilastik, QuPath and napari users can run the model
without voxseg. voxseg's normalisation is said in the spec's terms: clip at the 1 and 99.8
percentiles, then zero mean and unit variance over the volume (bioimageio.core takes the mean and
deviation of the unclipped volume there: close, not equal); the output is the foreground
probability (sigmoid). The weights are TorchScript and ONNX (when onnx is installed), the same
files `voxseg export --format torchscript|onnx` writes (any side, voxseg's metadata inside); the
description's `config.voxseg` holds that metadata too (threshold, normalisation, size rule, voxel
size). The test input is the middle of a validation volume and the test output what the package's
pipeline gives. Authors, licence and citation are the user's to give; where they are not given, the
package is still written, with placeholders that `package_notes` names with the flags that fill them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxseg.config.export import citation, entries
from voxseg.data.normalise import CLIP_PERCENTILES
from voxseg.errors import ConfigError, DataError
from voxseg.version import __version__

AXES = ("z", "y", "x")
PLACEHOLDER_AUTHOR = "voxseg user (replace with the authors' names)"
PLACEHOLDER_LICENSE = "MIT"
#: the library the networks come from: cited when the user names no citation
MONAI = ("MONAI Consortium, MONAI: Medical Open Network for AI", "10.5281/zenodo.4323058")


@dataclass(frozen=True)
class Package:
    """The written package, and what the command line says about it."""

    path: Path
    #: the package pipeline's probabilities against voxseg's on the test input (see the module's doc)
    max_abs_difference: float
    threshold: float
    #: (field, what was written, the flag that fills it in) for each field the user left out
    placeholders: tuple[tuple[str, str, str], ...]


def export_bioimageio(
    run_dir: Path,
    output: Path,
    weights: str = "best",
    overwrite: bool = False,
    authors: str | None = None,
    license: str | None = None,
    cite: str | None = None,
) -> Package:
    """Write the run's BioImage Model Zoo package (a zip) to `output`. `authors` and `cite` are
    `;`-separated (`Name; Name`, `TEXT DOI-or-URL; ...`), `license` an SPDX identifier."""
    if output.exists() and not overwrite:
        raise DataError(f"--output: {output} already exists; give --overwrite to replace it")
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as spec

    from voxseg.export.formats import OPSET, any_side, metadata, run_model, write_onnx, write_torchscript
    from voxseg.models.registry import get_model_spec

    credits, placeholders = _credits(spec, authors, license, cite)
    run = run_model(run_dir, weights)
    name, model, meta = run.name, run.model, metadata(run_dir, run, weights)
    rule = get_model_spec(name)
    exported = any_side(run)
    with tempfile.TemporaryDirectory(prefix="voxseg-bioimageio-") as scratch:
        folder = Path(scratch)
        test_input = _test_input(run_dir, run.window)
        np.save(folder / "test_input.npy", test_input)
        np.save(folder / "test_output.npy", _probability(model, test_input))
        write_torchscript(exported, torch.from_numpy(test_input), folder / "weights.torchscript.pt", meta)
        descriptions = {
            "torchscript": spec.TorchscriptWeightsDescr(
                source=folder / "weights.torchscript.pt",
                pytorch_version=spec.Version(torch.__version__.split("+")[0]),
            )
        }
        try:
            import onnx  # noqa: F401 (without it, the package holds TorchScript weights only)
        except ImportError:
            pass
        else:
            write_onnx(exported, torch.from_numpy(test_input), folder / "weights.onnx", meta)
            descriptions["onnx"] = spec.OnnxWeightsDescr(
                source=folder / "weights.onnx", opset_version=OPSET, parent="torchscript"
            )
        _cover(test_input, _probability(model, test_input), folder / "cover.png")
        threshold = meta["threshold"]
        # the voxel size the run trained on, as the axes' scale (the zoo's consumers show it)
        voxel = meta["voxel_size_um"]
        physical = {
            a: ({"unit": "micrometer", "scale": voxel[i]} if voxel else {}) for i, a in enumerate(AXES)
        }
        (folder / "README.md").write_text(_documentation(run_dir, run.summary, meta, bool(placeholders)))

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
            # the zoo allows 128 characters: the distance channel's rule is in config.voxseg.instances
            described = f"foreground probability, threshold {threshold:.2f} (voxseg's for this model)"
            if "distance" in run.outputs:
                described += "; channel 1: distance to boundary, peaks seed nuclei"
            outputs = spec.OutputTensorDescr(
                id=spec.TensorId("foreground" if len(run.outputs) == 1 else "probabilities"),
                description=described,
                axes=[
                    spec.BatchAxis(),
                    spec.ChannelAxis(channel_names=[spec.Identifier(o) for o in run.outputs]),
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
                **credits,
                documentation=spec.FileDescr(source=folder / "README.md"),
                covers=[spec.FileDescr(source=folder / "cover.png")],
                inputs=[inputs],
                outputs=[outputs],
                weights=spec.WeightsDescr(**descriptions),
                tags=["3d", "segmentation", "nuclei", "voxseg", name.lower()],
                config=spec.Config(voxseg=meta),
            )

        # the test output is what the zoo's own pipeline makes of the test input: bioimageio.core
        # computes a sample's statistics before any preprocessing step, so its z-score uses the
        # unclipped volume's mean and deviation where voxseg uses the clipped one's (said in the log)
        draft = save_bioimageio_package(describe(), output_path=folder / "draft.zip")
        package_output = _pipeline_output(draft)
        np.save(folder / "test_output.npy", package_output)
        _sample(folder / "sample_output.tif", package_output)
        difference = float(np.abs(package_output - _probability(model, test_input)).max())
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.exists():
            output.unlink()
        save_bioimageio_package(describe(), output_path=output)
    return Package(output, difference, threshold, tuple(placeholders))


def package_notes(package: Package) -> list[str]:
    """What the command line prints under the written package: how it differs from voxseg, the
    threshold it leaves to its user, and each placeholder with the flag that replaces it."""
    lines = [
        f"  its pipeline's probabilities are within {package.max_abs_difference:.4f} of voxseg's on the "
        "test input (the zoo z-scores with the unclipped volume's mean and deviation)",
        f"  output: the foreground probability; threshold it at {package.threshold:.2f}, the run's "
        "(in the output's description and config.voxseg)",
    ]
    if package.placeholders:
        lines.append("  placeholders written; fill them in before sharing the package:")
        lines += [f"    {field}: {written} (give {flag})" for field, written, flag in package.placeholders]
    return lines


def _credits(
    spec: Any, authors: str | None, license: str | None, cite: str | None
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The description's authors, licence and citations, and a (field, written, flag) for each
    placeholder written where the user gave none."""
    placeholders = []
    if not authors:
        placeholders.append(("authors", f'"{PLACEHOLDER_AUTHOR}"', '--authors "Name; Name"'))
    if not license:
        placeholders.append(("licence", PLACEHOLDER_LICENSE, "--license SPDX_ID, e.g. CC-BY-4.0"))
    if not cite:
        placeholders.append(("citation", "MONAI's only", '--cite "TEXT DOI-or-URL"'))
    try:
        licence = spec.LicenseId(license or PLACEHOLDER_LICENSE)
    except ValueError:
        raise ConfigError(
            f"--license: {license!r} is not an SPDX licence identifier (e.g. CC-BY-4.0, MIT, BSD-3-Clause)"
        ) from None
    cited = [citation(entry) for entry in entries(cite)] if cite else [(MONAI[0], MONAI[1], None)]
    fields = {
        "authors": [spec.Author(name=name) for name in entries(authors or PLACEHOLDER_AUTHOR)],
        "license": licence,
        "cite": [
            spec.CiteEntry(
                text=text, doi=spec.Doi(doi) if doi else None, url=spec.HttpUrl(url) if url else None
            )
            for text, doi, url in cited
        ],
    }
    return fields, placeholders


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
    image = pair_files(Path(folder), Path(labels), label_name=config.label_name)[-1].image
    volume = read_whole(
        image, config.image_key, config.level, config.channel, config.timepoint, config.series
    )
    volume = volume.astype(np.float32)
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


def _documentation(run_dir: Path, summary: dict, meta: dict[str, Any], placeholders: bool) -> str:
    threshold = meta["threshold"]
    fill_in = (
        "\n- Fill in the authors, the licence and the citation before sharing this model."
        if placeholders
        else ""
    )
    return f"""# voxseg {meta["model"]}

Trained with voxseg {__version__} (run `{run_dir.name}`).
Validation Dice {summary.get("best_val_dice")} at the threshold below (epoch {summary.get("best_epoch")}).

- Input: a 3D volume; it is clipped at its {CLIP_PERCENTILES[0]:g} and {CLIP_PERCENTILES[1]:g}
  percentiles and normalised to zero mean and unit variance, as in training.
- Output: the foreground probability; voxseg thresholds it at {threshold:.2f}
  ({meta["threshold_reason"]}).
- `config.voxseg` in the description holds the rest: size rule, training window, voxel size.{fill_in}

## Validation

voxseg validated this model on its run's validation volumes after every epoch (sliding window
0.25 overlap, Gaussian blending): Dice of the foreground probability above 0.5
{summary.get("val_dice_at_half")}, above the threshold {threshold:.2f} {summary.get("best_val_dice")}.
"""
