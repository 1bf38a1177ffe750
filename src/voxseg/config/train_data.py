"""`voxseg train`'s data options: which volumes train and validate, how they are read, where the run
goes and what it starts from. `TrainConfig` extends them with the patches and the schedule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import voxseg.config.finetune as finetune
import voxseg.config.shared as shared
from voxseg.errors import ConfigError
from voxseg.models.registry import PUBLISHED_MODELS
from voxseg.options import DATA, Declared, option


def _label_map(value: Any) -> str:
    """The map in its canonical spelling (`0:ignore,1:background,2:foreground`)."""
    from voxseg.data.labels import LabelMap

    return str(LabelMap.parse(str(value)))


def _label_name(value: Any) -> str:
    from voxseg.data.discovery import label_name_pattern

    return label_name_pattern(value)


def _run_name(name: Any) -> str:
    text = str(name)
    if text in (".", "..") or any(c in text for c in "/\\"):
        raise ConfigError(f"--run-name: {text!r} is not a valid folder name")
    return text


@dataclass
class TrainData(Declared):
    """Where a run's volumes come from, how they are read, and where the run is written."""

    images: Path | None = option(
        None,
        help="folder of 3D images: `.tif`/`.tiff` (OME-TIFF and ImageJ too), `.zarr` (OME-Zarr too) or "
        "`.h5`/`.hdf5`; a folder may mix them",
        section=DATA,
        label="Images folder",
        kind="folder",
        metavar="DIR",
        required=True,
    )
    labels: Path | None = option(
        None,
        help="folder of 3D labels, named like the images (optionally followed by `_label`, `_labels`, "
        "`_mask`, `_masks`, `_gt` or `_seg`; other names: `--label-name`), in any of the image formats; "
        "every value > 0 is foreground unless `--label-map` says otherwise; `--model WNet3D` trains on "
        "images alone, without them",
        section=DATA,
        label="Labels folder",
        kind="folder",
        metavar="DIR",
        optional=True,
        required_unless="--model WNet3D",
    )
    val_images: Path | None = option(
        None,
        help="explicit validation images; then every volume of `--images` trains",
        section=DATA,
        label="Validation images",
        kind="folder",
        metavar="DIR",
        optional=True,
    )
    val_labels: Path | None = option(
        None,
        help="labels of `--val-images`",
        section=DATA,
        label="Validation labels",
        kind="folder",
        metavar="DIR",
        optional=True,
    )
    label_name: str | None = option(
        None,
        help="how label files are named, `{name}` standing for the image's name: e.g. `mask_{name}`, "
        "`{name}_gt`, `{name}-seg` (without the extension: any format pairs); for `--labels` and "
        "`--val-labels`",
        section=DATA,
        label="Label names",
        metavar="PATTERN",
        optional=True,
        parse=_label_name,
        default_text="the image's name, optionally followed by a label suffix",
    )
    image_key: str | None = shared.image_key("images", DATA)
    label_key: str | None = shared.label_key(DATA)
    level: int = shared.level(DATA)
    channel: int | None = shared.channel(DATA)
    timepoint: int | None = shared.timepoint(DATA)
    series: int | None = shared.series(DATA)
    label_map: str | None = option(
        None,
        help="what label values mean, `VALUE:CLASS,...` with CLASS `background`, `foreground` or `ignore` "
        "(`*` for every other value); e.g. sparse annotations `0:ignore,1:background,2:foreground`. "
        "Ignored voxels are left out of the loss and the validation Dice",
        section=DATA,
        label="Label map",
        metavar="MAP",
        optional=True,
        parse=_label_map,
        default_text="0 background, > 0 foreground",
    )
    ignore_label: int | None = option(
        None,
        help="the label value of voxels that are not annotated (short for adding `V:ignore` to the label "
        "map)",
        section=DATA,
        label="Ignore label",
        kind="int",
        metavar="V",
        low=0,
        optional=True,
    )
    instance_output: str = option(
        "auto",
        help="what the network learns beside the foreground to separate touching nuclei: `distance` "
        "(a second output: each nucleus's distance to its own boundary over its largest, StarDist's object "
        "probability; `voxseg predict --instances auto` parts touching nuclei by it), or `none`; `auto`: "
        "`distance` when the labels hold instance ids (more than one value above 0, no label map) of packed "
        "nuclei (a tenth or more within a quarter radius of another; nuclei apart are parted by the mask "
        "alone) and the starting weights, if any, have its output",
        section=DATA,
        label="Instance output",
        kind="choice",
        metavar="WHAT",
        choices=("auto", "distance", "none"),
    )
    spacing: tuple[float, float, float] | None = shared.spacing("every volume", DATA)
    resample: str = option(
        "none",
        help="`isotropic`: resample every volume to cubic voxels of its finest side before training "
        "(prediction resamples to them and back); helps strongly anisotropic data (Z steps ≥ 3× the "
        "pixel size); needs the voxel size",
        section=DATA,
        label="Resample",
        kind="choice",
        metavar="HOW",
        choices=("none", "isotropic"),
    )
    results: Path = option(
        Path("results"),
        help="where run folders are created (a `--from` fine-tune: beside its parent run unless given)",
        section=DATA,
        label="Results folder",
        kind="folder",
        metavar="DIR",
    )
    run_name: str | None = option(
        None,
        help="run folder name; an existing folder is refused, never overwritten",
        section=DATA,
        label="Run name",
        metavar="NAME",
        optional=True,
        parse=_run_name,
        default_text="`<model>_<YYYYmmdd-HHMMSS>`",
    )
    train_fraction: float = option(
        0.8,
        help="share of volumes used for training, shuffled with the seed, at least one volume on each side; "
        "with one or two volumes, the share of each volume's voxels: blocks spread through it validate",
        section=DATA,
        label="Training fraction",
        kind="float",
        metavar="F",
        low=0.0,
        high=1.0,
        open_low=True,
        open_high=True,
    )
    zip: bool = option(
        False, help="also write `<results>/<run-name>.zip`", section=DATA, label="Zip results", kind="bool"
    )
    pretrained: bool = option(
        False,
        help="start from napari-cellseg3d's published weights for the model ("
        + ", ".join(PUBLISHED_MODELS)
        + "), downloaded once into the cache",
        section=DATA,
        label="Pre-trained weights",
        kind="bool",
    )
    weights: Path | None = option(
        None,
        help="start from a weights file: `.pth`/`.pt` state dict, `.safetensors`, a voxseg `checkpoint.pt`, "
        "or a napari-cellseg3d file",
        section=DATA,
        label="Custom weights",
        kind="file",
        metavar="FILE",
        optional=True,
    )
    from_run: Path | None = option(
        None,
        help="fine-tune a finished run: its network (model, patch size as the window, resampling, loss) "
        "from its best.pth, on these images and labels, e.g. planes corrected in napari (sparse labels, "
        "`--label-map 0:ignore,1:background,2:foreground`); only the data and the schedule change, and "
        f"`auto` means the fine-tune's: {finetune.EPOCHS} epochs of {finetune.SAMPLES_PER_EPOCH} patches at "
        f"1/{round(1 / finetune.LR_SHARE)} of the parent's learning rate; sparse labels validate themselves. "
        "The run card names the parent, and the run folder keeps the images and labels it trained on",
        section=DATA,
        label="Fine-tune from run",
        kind="folder",
        metavar="RUN_DIR",
        optional=True,
        spelled="--from",
    )
    keep_inputs: bool = option(
        False,
        help="copy the training images and labels into `<run>/inputs/` (always with `--from`; up to 4 GB), "
        "so the run can be repeated after they move or, in napari, after the layers are gone",
        section=DATA,
        label="Keep the inputs",
        kind="bool",
    )
