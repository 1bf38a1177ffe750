"""The training configuration: every `voxseg train` option, declared once (see `voxseg.options`).

`resolved()` checks every option and returns a normalised copy (absolute paths, canonical names,
numbers as numbers) without touching the original; each message names the option as the command
line spells it. Nothing here imports torch, so the command line answers a typo at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from voxseg.errors import ConfigError
from voxseg.losses import LOSS_NAMES, resolve_loss_name
from voxseg.models.registry import MODEL_LEARNING_RATES, MODEL_NAMES, PUBLISHED_MODELS, resolve_model_name
from voxseg.options import (
    AUGMENTATION,
    AUTO,
    DATA,
    TRAINING,
    Declared,
    Option,
    flag,
    markdown_table,
    option,
    options_of,
    typed_flag,
)

if TYPE_CHECKING:
    from voxseg.data.checks import Reading

SCHEDULERS = ("none", "plateau", "cosine", "poly")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _device(device: Any) -> str:
    text = str(device).strip().lower()
    kind, sep, index = text.partition(":")
    if kind not in DEVICE_CHOICES or (sep and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"--device: {device!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return text


def _spacing(value: Any) -> tuple[float, float, float]:
    text = value if isinstance(value, str) else ",".join(map(str, value))
    try:
        sides = tuple(float(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--spacing: expected Z,Y,X in µm, got {value!r}") from None
    if len(sides) != 3 or not all(side > 0 for side in sides):
        raise ConfigError(f"--spacing: expected three positive numbers Z,Y,X in µm, got {value!r}")
    return (sides[0], sides[1], sides[2])


def _label_map(value: Any) -> str:
    """The map in its canonical spelling (`0:ignore,1:background,2:foreground`)."""
    from voxseg.data.labels import LabelMap

    return str(LabelMap.parse(str(value)))


def _loss(name: Any) -> str:
    return AUTO if str(name).strip().lower() == AUTO else resolve_loss_name(name)


def _run_name(name: Any) -> str:
    text = str(name)
    if text in (".", "..") or any(c in text for c in "/\\"):
        raise ConfigError(f"--run-name: {text!r} is not a valid folder name")
    return text


@dataclass
class TrainConfig(Declared):
    """Everything a training run needs. Paths may be str or Path; `resolved()` normalises them."""

    # Data
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
        "`_mask`, `_masks`, `_gt` or `_seg`), in any of the image formats; every value > 0 is "
        "foreground unless `--label-map` says otherwise",
        section=DATA,
        label="Labels folder",
        kind="folder",
        metavar="DIR",
        required=True,
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
    image_key: str | None = option(
        None,
        help="the dataset of HDF5 images (or the array of Zarr groups) to read, e.g. `raw`",
        section=DATA,
        label="Image dataset",
        metavar="KEY",
        optional=True,
        default_text="the file's only volume",
    )
    label_key: str | None = option(
        None,
        help="the dataset of HDF5 labels (or the array of Zarr groups) to read, e.g. `label`",
        section=DATA,
        label="Label dataset",
        metavar="KEY",
        optional=True,
        default_text="the file's only volume",
    )
    level: int = option(
        0,
        help="the multiscale level of OME-Zarr volumes to read (0: full resolution)",
        section=DATA,
        label="OME-Zarr level",
        kind="int",
        metavar="N",
        low=0,
    )
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
    spacing: tuple[float, float, float] | None = option(
        None,
        help="voxel size `Z,Y,X` in µm of every volume, overriding the files' metadata",
        section=DATA,
        label="Voxel size (µm)",
        metavar="Z,Y,X",
        optional=True,
        parse=_spacing,
        default_text="from the files' metadata",
    )
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
        help="where run folders are created",
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
    # Dataset and augmentation
    whole_volumes: bool = option(
        False,
        help="train on whole volumes (padded to a common valid size) instead of patches",
        section=AUGMENTATION,
        label="Whole volumes",
        kind="bool",
    )
    patch_size: tuple[int, int, int] | str = option(
        AUTO,
        help="training patch and validation window, `N` or `Z,Y,X`, rounded up to the model's size rule; "
        "`auto`: 64 voxels along the finest axis and fewer along coarser ones, in proportion to the voxel "
        "size (about a cube in µm: 32×64×64 for 1.75×0.8×0.8 µm voxels), at most the smallest training "
        "volume; on a GPU, the largest such patch whose measured training-step memory fits its budget",
        section=AUGMENTATION,
        label="Patch size",
        kind="size",
        metavar="SIZE",
        auto=True,
    )
    samples_per_image: int | str = option(
        AUTO,
        help="patches drawn from each training volume per epoch; `auto`: 16 per epoch, or one pass over "
        "the training voxels when they are more, shared among the volumes by size",
        section=AUGMENTATION,
        label="Samples per image",
        kind="int",
        metavar="N",
        low=1,
        auto=True,
    )
    foreground_share: float = option(
        0.33,
        help="share of patches centred on a foreground voxel (nnU-Net's 0.33); the rest are uniform",
        section=AUGMENTATION,
        label="Foreground share",
        kind="float",
        metavar="F",
        low=0.0,
        high=1.0,
    )
    pad_pow2: bool = option(
        False,
        help="pad to powers of two as napari-cellseg3d did (65 → 128); by default the smallest valid size is "
        "used (65 → 72 for SegResNet)",
        section=AUGMENTATION,
        label="Pad to powers of two",
        kind="bool",
    )
    augment: bool = option(
        True,
        help="augmentation as nnU-Net's: flips, rotations, zoom, elastic deformation; noise, blur, "
        "brightness, contrast, low resolution and gamma (`--no-augment` turns it off)",
        section=AUGMENTATION,
        label="Augmentation",
        kind="bool",
    )
    # Training
    model: str = option(
        "SegResNetDS",
        help="network: " + ", ".join(f"`{m}`" for m in MODEL_NAMES),
        section=TRAINING,
        label="Model",
        kind="choice",
        metavar="NAME",
        choices=MODEL_NAMES,
        parse=resolve_model_name,
    )
    loss: str = option(
        "auto",
        help="loss: "
        + ", ".join(f"`{n}`" for n in LOSS_NAMES)
        + " (the origin's names such as \"Dice-CE loss\" work too); `auto`: `dice-ce` (nnU-Net's; on "
        "held-out embryos it beat `dice`, see README), or `focal` when `--label-map`/`--ignore-label` "
        "leave voxels unannotated (a Dice over a few annotated planes overfits; see docs/formats.md)",
        section=TRAINING,
        label="Loss",
        kind="choice",
        metavar="NAME",
        choices=(AUTO, *LOSS_NAMES),
        parse=_loss,
    )
    lr: float | str = option(
        AUTO,
        help="Adam learning rate; `auto`: the model's ("
        + ", ".join(f"{lr:g} for {', '.join(names)}" for lr, names in MODEL_LEARNING_RATES.items())
        + ")",
        section=TRAINING,
        label="Learning rate",
        kind="float",
        metavar="X",
        low=0.0,
        open_low=True,
        auto=True,
    )
    batch_size: int | str = option(
        2,
        help="patches per optimisation step (validation runs twice as many windows at once); `auto`: the "
        "largest batch (≤ 16, ≤ patches per epoch) that fits the memory budget",
        section=TRAINING,
        label="Batch size",
        kind="int",
        metavar="N",
        low=1,
        auto=True,
    )
    epochs: int = option(
        16,
        help="epochs to train; with the automatic patches per epoch, 16 reach the plateau on one small "
        "volume in about a minute on 2 CPU cores (QCANet); on more data an epoch is one pass over it",
        section=TRAINING,
        label="Epochs",
        kind="int",
        metavar="N",
        low=1,
        resumable=True,
    )
    val_interval: int = option(
        1,
        help="validate every N epochs, and always after the last epoch",
        section=TRAINING,
        label="Validation interval",
        kind="int",
        metavar="N",
        low=1,
    )
    seed: int = option(
        0,
        help="seeds the split, the patch positions, the augmentation and the weights",
        section=TRAINING,
        label="Seed",
        kind="int",
        metavar="N",
        low=0,
        high=2**32 - 1,
    )
    scheduler: str = option(
        "plateau",
        help="LR schedule: `none`, `plateau` (halve the LR after 5 validations without a better Dice, floor "
        "1e-6), `cosine` (to 1e-6 over the run), `poly` (nnU-Net's, power 0.9)",
        section=TRAINING,
        label="LR schedule",
        kind="choice",
        metavar="S",
        choices=SCHEDULERS,
    )
    warmup_epochs: int = option(
        0,
        help="linear LR warm-up over the first N epochs",
        section=TRAINING,
        label="Warm-up epochs",
        kind="int",
        metavar="N",
        low=0,
    )
    early_stop_patience: int = option(
        0,
        help="stop after N validations without a better Dice (0: never)",
        section=TRAINING,
        label="Early stop after",
        kind="int",
        metavar="N",
        low=0,
    )
    device: str = option(
        "auto",
        help="`auto` (CUDA, then Apple MPS, then CPU), `cpu`, `cuda`, `cuda:N`, `mps`",
        section=TRAINING,
        label="Device",
        kind="choice",
        metavar="D",
        choices=DEVICE_CHOICES,
        parse=_device,
        resumable=True,
    )
    workers: int | None = option(
        None,
        help="data-loading processes; automatic is 0 on machines with ≤ 2 cores (a worker would take a core "
        "from the training step), at most 2 on the CPU, up to cores − 1 with a GPU, and never more than a "
        "quarter of the free memory holds",
        section=TRAINING,
        label="Data workers",
        kind="int",
        metavar="N",
        low=0,
        optional=True,
        default_text="automatic",
        resumable=True,
    )
    threads: int | None = option(
        None,
        help="PyTorch's CPU compute threads; automatic is one per core, fewer while other processes keep "
        "cores busy (beside one busy process on 2 cores this trains 1.7× faster than a fixed 2)",
        section=TRAINING,
        label="CPU threads",
        kind="int",
        metavar="N",
        low=1,
        optional=True,
        default_text="automatic",
        resumable=True,
    )
    precision: str = option(
        "auto",
        help="`auto`: bfloat16 autocast where the hardware computes it natively (CUDA GPUs with bf16, "
        "CPUs with AMX), float16 with loss scaling on older GPUs, float32 otherwise; or force `fp32`, "
        "`bf16`, `fp16` (GPU only). Validation runs under the same precision",
        section=TRAINING,
        label="Precision",
        kind="choice",
        metavar="P",
        choices=PRECISIONS,
        resumable=True,
    )
    compile: bool = option(
        True,
        help="`torch.compile` the model on CUDA (never on the CPU, where compiling costs more than it "
        "saves); `--no-compile` turns it off",
        section=TRAINING,
        label="torch.compile (CUDA)",
        kind="bool",
        resumable=True,
    )
    fast_kernels: bool = option(
        True,
        help="voxseg's hand-written CPU kernels (oneDNN convolutions, separable upsampling; same results "
        "up to float rounding); `--no-fast-kernels` runs PyTorch's own",
        section=TRAINING,
        label="Fast kernels",
        kind="bool",
        resumable=True,
    )
    sync_batchnorm: bool = option(
        False,
        help="under torchrun, batch normalisation over the global batch instead of each process's (PyTorch's "
        "SyncBatchNorm, GPUs only; for the models with batch norm: VNet, TRAILMAP_MS, TRAILMAP)",
        section=TRAINING,
        label="Sync batch norm (torchrun)",
        kind="bool",
        resumable=True,
    )
    tensorboard: bool = option(
        True,
        help="write TensorBoard event files to `<run>/tensorboard` (`tensorboard --logdir RESULTS` "
        "compares runs); `--no-tensorboard` turns it off",
        section=TRAINING,
        label="TensorBoard",
        kind="bool",
        resumable=True,
    )
    # Keys a YAML file or a face passed that are no option: refused by resolved(), never ignored.
    _extra: dict = field(default_factory=dict, repr=False, compare=False)

    def check(self, values: dict[str, Any]) -> None:
        from voxseg.data.labels import LabelMap

        LabelMap.parse(values["label_map"], values["ignore_label"])
        if values["pretrained"] and values["weights"] is not None:
            raise ConfigError("--pretrained and --weights exclude each other: choose one starting point")
        if values["pretrained"] and values["model"] not in PUBLISHED_MODELS:
            raise ConfigError(
                f"--pretrained: napari-cellseg3d published no weights for {values['model']}; choose --model "
                + " or ".join(PUBLISHED_MODELS)
            )
        if (values["val_images"] is None) != (values["val_labels"] is None):
            raise ConfigError("--val-images and --val-labels must be given together")
        if values["warmup_epochs"] >= values["epochs"]:
            raise ConfigError(
                f"--warmup-epochs: {values['warmup_epochs']} must be fewer than --epochs {values['epochs']}"
            )

    def reading(self) -> Reading:
        """How this run's files are read (keys, level, label classes, voxel size)."""
        from voxseg.data.checks import Reading
        from voxseg.data.labels import LabelMap

        label_map = LabelMap.parse(self.label_map, self.ignore_label)
        return Reading(self.image_key, self.label_key, self.level, label_map, self.spacing)

    # YAML in and out -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so the YAML is readable and re-loadable with `--config`."""
        out: dict[str, Any] = {}
        for name, _, _ in options_of(TrainConfig):
            value = getattr(self, name)
            out[name] = (
                str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
            )
        return out

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"--config: {path} does not exist") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--config: cannot read {path}: {exc}".splitlines()[0]) from None
        if not isinstance(data, dict):
            raise ConfigError(f"--config: {path} must hold a mapping of option: value")
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def for_resume(cls, run_dir: str | Path, overrides: dict[str, Any]) -> TrainConfig:
        """The run's own config.yaml with the few options a resume may change (`RESUME_OVERRIDES`).

        The one resume rule, for every face: any other option given with `--resume` is refused.
        """
        fixed = sorted(set(overrides) - set(RESUME_OVERRIDES))
        if fixed:
            flags = ", ".join(FLAGS.get(name, flag(name)) for name in fixed)
            raise ConfigError(f"--resume continues a run with its own config.yaml; {flags} cannot change")
        saved = Path(run_dir) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume: {saved} does not exist; give a run folder")
        return cls.from_dict({**cls.from_yaml(saved).to_dict(), **overrides})


#: what may change when a run is resumed: everything else is the run's own config.yaml
RESUME_OVERRIDES = tuple(name for name, opt, _ in options_of(TrainConfig) if opt.resumable)
#: option name -> the flag as typed (`augment` -> `--no-augment`)
FLAGS = {name: typed_flag(name, opt, default) for name, opt, default in options_of(TrainConfig)}

#: `voxseg train` options that are not part of a run's configuration
COMMAND_OPTIONS = {
    "config": Option(
        "YAML file of options (same names, `-` or `_`); flags given on the command line override it",
        "",
        "",
        kind="file",
        metavar="FILE",
        in_form=False,
    ),
    "resume": Option(
        "continue a run from its last completed epoch, with its own config.yaml (only "
        + ", ".join(f"`{FLAGS[n]}`" for n in RESUME_OVERRIDES)
        + " may be given with it)",
        "",
        "",
        kind="folder",
        metavar="RUN_DIR",
        in_form=False,
    ),
}


# -- prediction and evaluation ---------------------------------------------------------------------

MODEL, PREDICTION, INSTANCES = "Model", "Prediction", "Instances"
INSTANCE_METHODS = ("none", "connected", "watershed")
#: objects below this share of a typical object are debris (voxseg.inference.instances.drop_debris)
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
    image_key: str | None = option(
        None,
        help="the dataset of HDF5 inputs (or the array of Zarr groups) to read",
        section=DATA,
        label="Image dataset",
        metavar="KEY",
        optional=True,
        default_text="the file's only volume",
    )
    level: int = option(
        0,
        help="the multiscale level of OME-Zarr inputs (0: full resolution)",
        section=DATA,
        label="OME-Zarr level",
        kind="int",
        metavar="N",
        low=0,
    )
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
        help="one label per object: `connected` (connected components of the mask) or `watershed` "
        "(splits touching nuclei on the distance transform); writes `<name>_labels.tif` and "
        "`<name>_objects.csv`",
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
        help="also drop objects smaller than this share of a typical object, the voxel-weighted median "
        "(debris: specks of noise and slivers of a nucleus's rim; objects the volume's edge cuts are kept; "
        "0 keeps them all)",
        section=INSTANCES,
        label="Minimum relative size",
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
        parse=_spacing,
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
    device: str = option(
        "auto",
        help="`auto` (CUDA, then Apple MPS, then CPU), `cpu`, `cuda`, `cuda:N`, `mps`",
        section=PREDICTION,
        label="Device",
        kind="choice",
        metavar="D",
        choices=DEVICE_CHOICES,
        parse=_device,
    )
    precision: str = option(
        "auto",
        help="as for training: `auto`, `fp32`, `bf16`, `fp16`",
        section=PREDICTION,
        label="Precision",
        kind="choice",
        metavar="P",
        choices=PRECISIONS,
    )
    fast_kernels: bool = option(
        True,
        help="voxseg's CPU kernels (`--no-fast-kernels` runs PyTorch's own)",
        section=PREDICTION,
        label="Fast kernels",
        kind="bool",
    )
    threads: int | None = option(
        None,
        help="PyTorch's CPU compute threads; automatic is one per core, fewer while other processes keep "
        "cores busy",
        section=PREDICTION,
        label="CPU threads",
        kind="int",
        metavar="N",
        low=1,
        optional=True,
        default_text="automatic",
    )
    _extra: dict = field(default_factory=dict, repr=False, compare=False)

    def check(self, values: dict[str, Any]) -> None:
        if values["max_size"] is not None and values["max_size"] < values["min_size"]:
            raise ConfigError(f"--max-size: {values['max_size']} is below --min-size {values['min_size']}")


@dataclass
class EvaluateConfig(Declared):
    """`voxseg evaluate`: predictions against labels."""

    pred: Path | None = option(
        None,
        help="folder of `voxseg predict` outputs (`<name>_labels.tif`, else `<name>_mask.tif`; or their "
        "`.zarr`/`.h5` twins)",
        section=DATA,
        label="Predictions",
        kind="folder",
        metavar="DIR",
        required=True,
    )
    labels: Path | None = option(
        None,
        help="folder of true labels, named like the images (TIFF, Zarr or HDF5)",
        section=DATA,
        label="Labels",
        kind="folder",
        metavar="DIR",
        required=True,
    )
    label_key: str | None = option(
        None,
        help="the dataset of HDF5 labels (or the array of Zarr groups) to read",
        section=DATA,
        label="Label dataset",
        metavar="KEY",
        optional=True,
        default_text="the file's only volume",
    )
    json: Path | None = option(
        None,
        help="also write the scores as JSON",
        section=DATA,
        label="JSON file",
        kind="file",
        metavar="FILE",
        optional=True,
    )
    overwrite: bool = option(
        False, help="replace an existing JSON file", section=DATA, label="Overwrite", kind="bool"
    )


@dataclass
class TuneConfig(Declared):
    """`voxseg tune-threshold`: a finished run folder."""

    run: Path | None = option(
        None,
        help="a voxseg run folder: its best weights are applied to its validation volumes and the "
        "threshold chosen as training chooses it (the best cut where the validation supports it, else "
        "0.5) is written to its summary.json with the reason",
        section=MODEL,
        label="Run folder",
        kind="folder",
        metavar="RUN_DIR",
        required=True,
        positional=True,
    )


@dataclass
class ExportConfig(Declared):
    """`voxseg export`: a run's network as TorchScript or ONNX."""

    run: Path | None = option(
        None,
        help="a voxseg run folder",
        section=MODEL,
        label="Run folder",
        kind="folder",
        metavar="RUN_DIR",
        required=True,
        positional=True,
    )
    format: str = option(
        "onnx",
        help="`torchscript` (traced) or `onnx` (opset 17): (N, 1, Z, Y, X) normalised images in, logits out, "
        "the batch and the sides free (within the model's size rule); or `bioimageio`: a BioImage Model "
        "Zoo package (zip) for Fiji/deepImageJ, ilastik, QuPath and napari",
        section=MODEL,
        label="Format",
        kind="choice",
        metavar="FORMAT",
        choices=("torchscript", "onnx", "bioimageio"),
    )
    output: Path | None = option(
        None,
        help="the file to write (checked against PyTorch's output first)",
        section=DATA,
        label="Output",
        kind="file",
        metavar="PATH",
        required=True,
    )
    weights: str = option(
        "best",
        help="`best` (best.pth) or `last` (last.pth)",
        section=MODEL,
        label="Weights",
        kind="choice",
        metavar="WHICH",
        choices=("best", "last"),
    )
    overwrite: bool = option(
        False, help="replace an existing output file", section=DATA, label="Overwrite", kind="bool"
    )


def readme_tables() -> dict[str, str]:
    """Command -> its README option table: the tables scripts/update_readme_options.py writes."""
    return {
        "train": markdown_table(TrainConfig, COMMAND_OPTIONS),
        "predict": markdown_table(PredictConfig, {}),
        "evaluate": markdown_table(EvaluateConfig, {}),
        "tune-threshold": markdown_table(TuneConfig, {}),
        "export": markdown_table(ExportConfig, {}),
    }
