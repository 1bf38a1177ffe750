"""`voxseg predict`'s options (and `voxseg.Predictor`'s), declared once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voxseg.config.shared as shared
from voxseg.errors import ConfigError
from voxseg.models.registry import MODEL_NAMES, resolve_model_name
from voxseg.options import DATA, Declared, option

MODEL, PREDICTION, INSTANCES = "Model", "Prediction", "Instances"
INSTANCE_METHODS = ("none", "auto", "connected", "watershed", "distance")
#: objects below this share of a typical object are debris (voxseg.inference.model.instances.drop_debris)
DEBRIS_FRACTION = 0.1


@dataclass
class PredictConfig(Declared):
    """Everything `voxseg predict` needs; `resolved()` checks it as TrainConfig's does."""

    source: Path | None = option(
        None,
        help="a voxseg run folder (its model, patch size as the window and tuned threshold are used), or a "
        "weights file (`.pth`/`.pt`, `.safetensors`, a voxseg `checkpoint.pt`, a napari-cellseg3d file) "
        "with `--model`",
        section=MODEL,
        label="Run folder or weights",
        kind="path",
        metavar="RUN_DIR_OR_WEIGHTS",
        required=True,
        positional=True,
    )
    model: str | None = option(
        None,
        help="the network of a weights file: " + ", ".join(f"`{m}`" for m in MODEL_NAMES),
        section=MODEL,
        label="Model (weights file)",
        kind="choice",
        metavar="NAME",
        choices=MODEL_NAMES,
        parse=resolve_model_name,
        optional=True,
        default_text="the run's",
    )
    input: tuple[Path, ...] = option(
        (),
        help="3D volumes (`.tif`/`.tiff`, `.zarr`, `.h5`/`.hdf5`), or folders of them",
        section=DATA,
        label="Input",
        kind="paths",
        metavar="PATH",
        required=True,
    )
    image_key: str | None = shared.image_key("inputs", DATA)
    level: int = shared.level(DATA)
    channel: int | None = shared.channel(DATA)
    timepoint: int | None = shared.timepoint(DATA)
    series: int | None = shared.series(DATA)
    output: Path | None = option(
        None,
        help="folder for `<name>_mask.tif` (and `_labels.tif`, `_objects.csv`, `_prob.tif`); created if "
        "needed",
        section=DATA,
        label="Output folder",
        kind="folder",
        metavar="DIR",
        required=True,
    )
    output_format: str = option(
        "auto",
        help="format of the mask, labels and probabilities: `auto` (the input's: TIFF for TIFF, OME-Zarr "
        "for Zarr, HDF5 for HDF5), `tiff`, `zarr` or `hdf5`; each carries the voxel size",
        section=DATA,
        label="Output format",
        kind="choice",
        metavar="FORMAT",
        choices=("auto", "tiff", "zarr", "hdf5"),
    )
    window: tuple[int, int, int] | None = option(
        None,
        help="sliding window, `N` or `Z,Y,X`, rounded up to the model's size rule",
        section=PREDICTION,
        label="Window",
        kind="size",
        metavar="SIZE",
        optional=True,
        default_text="the run's patch size (64 for a weights file)",
    )
    overlap: float = option(
        0.25,
        help="share of a window that overlaps its neighbour; with Gaussian blending 0.25 hides the seams, "
        "and it is what training validated with; at most 0.9 (0.99 would mean ~100× the windows)",
        section=PREDICTION,
        label="Overlap",
        kind="float",
        metavar="F",
        low=0.0,
        high=0.9,
    )
    batch_size: int = option(
        4,
        help="windows per forward pass",
        section=PREDICTION,
        label="Windows per batch",
        kind="int",
        metavar="N",
        low=1,
    )
    threshold: float | None = option(
        None,
        help="foreground probability at or above which a voxel is foreground",
        section=PREDICTION,
        label="Threshold",
        kind="float",
        metavar="P",
        low=0.0,
        high=1.0,
        open_low=True,
        open_high=True,
        optional=True,
        default_text="the run's tuned threshold, else 0.5",
    )
    foreground_class: int | None = option(
        None,
        help="a WNet3D run: the class whose probability is the foreground, counted from 0 (its run "
        "writes the one it trained as the nucleus in summary.json); choosing another one predicts at "
        "0.5 unless `--threshold` says otherwise, as the run's tuned threshold belongs to its own class",
        section=PREDICTION,
        label="Foreground class (WNet3D)",
        kind="int",
        metavar="K",
        low=0,
        optional=True,
        default_text="the run's",
    )
    tta: bool = option(
        False,
        help="test-time augmentation: average the probabilities of the 8 flips over Z, Y and X "
        "(nnU-Net's mirroring; 8× the compute)",
        section=PREDICTION,
        label="Test-time augmentation",
        kind="bool",
    )
    instances: str = option(
        "none",
        help="one label per object: `connected` (connected components of the mask), `watershed` (splits "
        "touching nuclei on the mask's distance transform), `distance` (the same, weighted by the "
        "network's distance output, which parts touching nuclei: runs trained on instance labels), or "
        "`auto` (`distance` when the run has that output, else `watershed`); writes `<name>_labels.tif` "
        "and `<name>_objects.csv`",
        section=INSTANCES,
        label="Instances",
        kind="choice",
        metavar="METHOD",
        choices=INSTANCE_METHODS,
    )
    min_size: int = option(
        0,
        help="drop objects smaller than this many voxels (debris)",
        section=INSTANCES,
        label="Minimum size",
        kind="int",
        metavar="N",
        low=0,
    )
    min_relative_size: float = option(
        DEBRIS_FRACTION,
        help="also drop objects smaller than F times the volume of a typical object in the same volume "
        "(the voxel-weighted median): 0.1 drops whatever is under a tenth of a typical nucleus, i.e. "
        "debris such as specks of noise and slivers of a nucleus's rim. Objects the volume's edge cuts "
        "are kept; 0 keeps every object",
        section=INSTANCES,
        label="Minimum size, share of a typical object",
        kind="float",
        metavar="F",
        low=0.0,
        high=1.0,
    )
    max_size: int | None = option(
        None,
        help="drop objects larger than this many voxels",
        section=INSTANCES,
        label="Maximum size",
        kind="int",
        metavar="N",
        low=1,
        optional=True,
    )
    spacing: tuple[float, float, float] | None = option(
        None,
        help="voxel size `Z,Y,X` in µm, overriding the file's metadata: for object volumes, the outputs' "
        "metadata and `--resample isotropic` runs",
        section=INSTANCES,
        label="Voxel size (µm)",
        metavar="Z,Y,X",
        optional=True,
        parse=shared.parse_spacing,
        default_text="the file's (OME, ImageJ, OME-Zarr, HDF5 `element_size_um`)",
    )
    save_probabilities: bool = option(
        False,
        help="also write `<name>_prob.tif` (float32)",
        section=DATA,
        label="Save probabilities",
        kind="bool",
    )
    overwrite: bool = option(
        False,
        help="replace existing output files (never done otherwise)",
        section=DATA,
        label="Overwrite outputs",
        kind="bool",
    )
    resume: bool = option(
        False,
        help="finish a prediction that stopped (pre-empted, killed, Ctrl-C): its finished blocks, kept in "
        "`DIR/.voxseg-partial-<name>/`, are checked and kept, and only the rest is computed, by any "
        "number of processes; volumes already in place are skipped. The settings must be the ones it "
        "started with",
        section=DATA,
        label="Resume a stopped prediction",
        kind="bool",
    )
    device: str = shared.device(PREDICTION)
    precision: str = shared.precision(PREDICTION)
    fast_kernels: bool = shared.fast_kernels(PREDICTION)
    threads: int | None = shared.threads(PREDICTION)
    _extra: dict = field(default_factory=dict, repr=False, compare=False)

    def check(self, values: dict[str, Any]) -> None:
        if values["resume"] and values["overwrite"]:
            raise ConfigError(
                "--resume keeps what a stopped prediction wrote and --overwrite discards it: give one"
            )
        if values["max_size"] is not None and values["max_size"] < values["min_size"]:
            raise ConfigError(f"--max-size: {values['max_size']} is below --min-size {values['min_size']}")
