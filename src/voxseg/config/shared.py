"""Options that several commands share, declared once: where a volume is read (keys, level, voxel
size) and how a model is run (device, threads, precision, kernels). A command's schema takes each
as a field with its own section (and whether a resume may change it)."""

from __future__ import annotations

from typing import Any

from voxseg.errors import ConfigError
from voxseg.options import option

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def parse_device(device: Any) -> str:
    text = str(device).strip().lower()
    kind, sep, index = text.partition(":")
    if kind not in DEVICE_CHOICES or (sep and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"--device: {device!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return text


def parse_spacing(value: Any) -> tuple[float, float, float]:
    text = value if isinstance(value, str) else ",".join(map(str, value))
    try:
        sides = tuple(float(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--spacing: expected Z,Y,X in µm, got {value!r}") from None
    if len(sides) != 3 or not all(side > 0 for side in sides):
        raise ConfigError(f"--spacing: expected three positive numbers Z,Y,X in µm, got {value!r}")
    return (sides[0], sides[1], sides[2])


def run_folder(help: str, section: str) -> Any:
    """The run folder a command reads (`voxseg tune-threshold`, `export`, `info`): typed without a flag."""
    return option(
        None,
        help=help,
        section=section,
        label="Run folder",
        kind="folder",
        metavar="RUN_DIR",
        required=True,
        positional=True,
    )


def image_key(what: str, section: str) -> Any:
    return option(
        None,
        help=f"the dataset of HDF5 {what} (or the array of Zarr groups) to read, e.g. `raw`",
        section=section,
        label="Image dataset",
        metavar="KEY",
        optional=True,
        default_text="the file's only volume",
    )


def label_key(section: str) -> Any:
    return option(
        None,
        help="the dataset of HDF5 labels (or the array of Zarr groups) to read, e.g. `label`",
        section=section,
        label="Label dataset",
        metavar="KEY",
        optional=True,
        default_text="the file's only volume",
    )


def level(section: str) -> Any:
    return option(
        0,
        help="the multiscale level of OME-Zarr volumes to read (0: full resolution)",
        section=section,
        label="OME-Zarr level",
        kind="int",
        metavar="N",
        low=0,
    )


def channel(section: str) -> Any:
    return option(
        None,
        help="the channel to read from images with several (an ImageJ hyperstack's C, an OME-Zarr "
        "channel axis, ilastik's c), counted from 0; images with one channel need none",
        section=section,
        label="Channel",
        kind="int",
        metavar="N",
        low=0,
        optional=True,
    )


def timepoint(section: str) -> Any:
    return option(
        None,
        help="the time point to read from time series (an ImageJ hyperstack's T, an OME-Zarr time axis), "
        "counted from 0; volumes with one time point need none",
        section=section,
        label="Time point",
        kind="int",
        metavar="T",
        low=0,
        optional=True,
    )


def series(section: str) -> Any:
    return option(
        None,
        help="the image to read from TIFFs holding several (an OME-TIFF of several positions), counted "
        "from 0; HDF5 and Zarr name theirs with the key. Files with one image need none",
        section=section,
        label="TIFF image",
        kind="int",
        metavar="S",
        low=0,
        optional=True,
    )


def spacing(what: str, section: str) -> Any:
    return option(
        None,
        help=f"voxel size `Z,Y,X` in µm of {what}, overriding the files' metadata",
        section=section,
        label="Voxel size (µm)",
        metavar="Z,Y,X",
        optional=True,
        parse=parse_spacing,
        default_text="from the files' metadata",
    )


def device(section: str, training: bool = False) -> Any:
    return option(
        "auto",
        help="`auto` (CUDA, then Apple MPS, then CPU), `cpu`, `cuda`, `cuda:N`, `mps`",
        section=section,
        label="Device",
        kind="choice",
        metavar="D",
        choices=DEVICE_CHOICES,
        parse=parse_device,
        resumable=training,
    )


def threads(section: str, training: bool = False) -> Any:
    """`training`: an option of `voxseg train` (a resume may change it; its help speaks of training)."""
    measured = " (beside one busy process on 2 cores this trains 1.7× faster than a fixed 2)"
    return option(
        None,
        help="PyTorch's CPU compute threads; automatic is one per core, fewer while other processes keep "
        f"cores busy{measured if training else ''}",
        section=section,
        label="CPU threads",
        kind="int",
        metavar="N",
        low=1,
        optional=True,
        default_text="automatic",
        resumable=training,
    )


def precision(section: str, training: bool = False) -> Any:
    return option(
        "auto",
        help="`auto`: bfloat16 autocast where the hardware computes it natively (CUDA GPUs with bf16, "
        "CPUs with AMX), float16 with loss scaling on older GPUs, float32 otherwise; or force `fp32`, "
        "`bf16`, `fp16` (GPU only)" + (". Validation runs under the same precision" if training else ""),
        section=section,
        label="Precision",
        kind="choice",
        metavar="P",
        choices=PRECISIONS,
        resumable=training,
    )


def fast_kernels(section: str, training: bool = False) -> Any:
    return option(
        True,
        help="voxseg's hand-written CPU kernels (oneDNN convolutions, separable upsampling; same results "
        "up to float rounding) instead of PyTorch's own",
        section=section,
        label="Fast kernels",
        kind="bool",
        resumable=training,
    )
