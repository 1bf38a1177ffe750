"""Find volumes (TIFF, Zarr, HDF5; a folder may mix them) and pair images with labels by name,
never by sort order: `a.tif` pairs with `a_label.zarr` or `a.h5` in the labels folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voxseg.errors import DataError, shorten_list
from voxseg.io.formats import DESCRIPTION, is_volume, stem

#: suffixes a label's name may carry after the image's name, e.g. `vol_03_label.tif`
LABEL_SUFFIXES = ("labels", "label", "masks", "mask", "gt", "seg")
_SEPARATORS = ("_", "-", ".", " ")
_MAX_LISTED = 10


@dataclass(frozen=True)
class Pair:
    """One training example: an image file and its label file."""

    image: Path
    label: Path

    @property
    def name(self) -> str:
        return self.image.name


def list_volumes(folder: Path, option: str) -> list[Path]:
    """The volumes of a folder (files, and Zarr folders), sorted; a clear error if there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{option}: folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"{option}: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if is_volume(p))
    if not files:
        raise DataError(f"{option}: no volumes ({DESCRIPTION}) in {folder}")
    return files


def _stem(path: Path) -> str:
    return stem(path).lower()


def _label_keys(path: Path) -> list[str]:
    """Image names this label file may belong to: its own stem, and its stem minus a label suffix."""
    stem = _stem(path)
    keys = [stem]
    for suffix in LABEL_SUFFIXES:
        for sep in _SEPARATORS:
            tail = sep + suffix
            if stem.endswith(tail) and len(stem) > len(tail):
                keys.append(stem[: -len(tail)])
    return keys


def _listing(paths: list[Path]) -> str:
    return shorten_list([p.name for p in paths], _MAX_LISTED)


def pair_files(
    images_dir: Path, labels_dir: Path, image_option: str = "--images", label_option: str = "--labels"
) -> list[Pair]:
    """Pair every image with exactly one label by name; list whatever cannot be paired.

    One folder may hold both: then a file is a label when its name is another file's name plus a
    label suffix (`vol.tif` + `vol_label.tif`), and no file is ever paired with itself.
    """
    images = list_volumes(images_dir, image_option)
    labels = list_volumes(labels_dir, label_option)
    if Path(images_dir).resolve() == Path(labels_dir).resolve():
        stems = {_stem(p) for p in images}
        labels = [p for p in images if any(key in stems for key in _label_keys(p)[1:])]
        images = [p for p in images if p not in labels]
        if not images:
            raise DataError(f"{image_option}: no images in {images_dir}, only label files")
    by_stem: dict[str, Path] = {}
    for image in images:
        if _stem(image) in by_stem:
            raise DataError(
                f"{image_option}: {by_stem[_stem(image)].name} and {image.name} in {images_dir} are both "
                f"named {_stem(image)}; keep one"
            )
        by_stem[_stem(image)] = image
    matched: dict[Path, Path] = {}
    unmatched_labels = []
    for label in labels:
        image = next((by_stem[k] for k in _label_keys(label) if k in by_stem), None)
        if image is None:
            unmatched_labels.append(label)
        elif image in matched:
            raise DataError(
                f"{label_option}: {matched[image].name} and {label.name} both match image {image.name}"
            )
        else:
            matched[image] = label
    unmatched_images = [p for p in images if p not in matched]
    problems = []
    if unmatched_images:
        problems.append(f"images without a label in {labels_dir}: {_listing(unmatched_images)}")
    if unmatched_labels:
        problems.append(f"labels without an image in {images_dir}: {_listing(unmatched_labels)}")
    if problems:
        hint = f" (label names must be the image's name, optionally followed by _{'/_'.join(LABEL_SUFFIXES)})"
        raise DataError("; ".join(problems) + hint)
    return [Pair(image, matched[image]) for image in images]
