"""An input of `voxseg predict`, opened as the options say, and the files written for it, by name: one
place for the writer, `evaluate`'s pairing and the napari reader, and for finding what an earlier
prediction of the same input left behind."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from voxseg.config import PredictConfig
from voxseg.io.formats import OUTPUT_SUFFIX, VolumeFile, family, is_volume, open_volume, stem

#: what voxseg predict writes, `<name><suffix>` by kind, declared once (evaluate and the napari reader
#: read them back); never taken as input when a folder is both (its outputs are skipped)
OUTPUT_SUFFIXES = {"mask": "_mask", "labels": "_labels", "probabilities": "_prob", "distance": "_distance"}


def open_input(config: PredictConfig, image: Path) -> VolumeFile:
    """`image` opened for region reads: its dataset, level, channel and time point as the options say."""
    return open_volume(image, config.image_key, config.level, config.channel, config.timepoint, config.series)


def output_name(config: PredictConfig, image: Path) -> str:
    """`<name>` of the outputs of `image`: its own, plus `_s<S>` for an image of several (`--series`)
    and `_t<T>` for a time point (`--timepoint`), so that they predict into one folder side by side."""
    picked = [f"s{config.series}"] if config.series is not None else []
    picked += [f"t{config.timepoint}"] if config.timepoint is not None else []
    return "_".join([stem(image), *picked])


def output_paths(config: PredictConfig, image: Path) -> dict[str, Path]:
    """The files predicting `image` writes, by kind."""
    assert config.output is not None
    name = output_name(config, image)
    written_as = family(image) if config.output_format == "auto" else config.output_format
    suffix = OUTPUT_SUFFIX[written_as or "tiff"]  # type: ignore[index]
    kinds = ["mask"]
    if config.instances != "none":
        kinds.append("labels")
    if config.save_probabilities:
        kinds.append("probabilities")
    if config.instances == "distance":  # its seeds; kept as an output beside the probability
        kinds.append("distance")
    paths = {kind: config.output / f"{name}{OUTPUT_SUFFIXES[kind]}{suffix}" for kind in kinds}
    if config.instances != "none":
        paths["objects"] = config.output / f"{name}_objects.csv"
    return paths


def earlier_outputs(output: Path, names: Iterable[str]) -> list[Path]:
    """Every output a prediction of the volumes `names` may have left in `output`, of any kind and format:
    what a new prediction replaces or removes, so that no other prediction's outputs stay beside its own.
    The folder is listed once, however many volumes."""
    if not output.is_dir():
        return []
    names = list(names)
    volumes = {f"{name}{suffix}" for name in names for suffix in OUTPUT_SUFFIXES.values()}
    tables = {f"{name}_objects.csv" for name in names}
    return sorted(
        path
        for path in output.iterdir()
        if path.name in tables or (stem(path) in volumes and is_volume(path))
    )
