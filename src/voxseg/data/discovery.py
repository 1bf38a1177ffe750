"""Find volumes (TIFF, Zarr, HDF5; a folder may mix them) and pair images with labels by name,
never by sort order: `a.tif` pairs with `a_label.zarr` or `a.h5` in the labels folder, and with
`mask_a.tif` when `--label-name mask_{name}` says how the labels are named."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg.errors import ConfigError, DataError, shorten_list
from voxseg.io.formats import DESCRIPTION, is_volume, stem, suffix

#: suffixes a label's name may carry after the image's name, e.g. `vol_03_label.tif`
LABEL_SUFFIXES = ("labels", "label", "masks", "mask", "gt", "seg")
#: what a `--label-name` pattern holds where the image's name goes
NAME_FIELD = "{name}"
_SEPARATORS = ("_", "-", ".", " ")
_MAX_LISTED = 10


@dataclass(frozen=True)
class Pair:
    """One training example: an image file and its label file (None: the image trains alone, see
    voxseg.data.self_labels)."""

    image: Path
    label: Path | None

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


def label_name_pattern(value: Any) -> str:
    """`--label-name` checked when the options are: `{name}` exactly once, a file name (no folder), no
    other braces. A volume extension is dropped (`mask_{name}.tif`), as labels of every format pair."""
    text = str(value).strip()
    example = "e.g. mask_{name} for mask_vol01.tif, the label of vol01.tif"
    if text.count(NAME_FIELD) != 1:
        raise ConfigError(
            f"--label-name: {text!r} must hold {NAME_FIELD} once, for the image's name ({example})"
        )
    if "/" in text or "\\" in text:
        raise ConfigError(f"--label-name: {text!r} names a folder; give a file name ({example})")
    if "{" in text.replace(NAME_FIELD, "") or "}" in text.replace(NAME_FIELD, ""):
        raise ConfigError(f"--label-name: {text!r} has braces other than {NAME_FIELD} ({example})")
    found = suffix(Path(text))
    return text[: -len(found)] if found else text


def _stem(path: Path) -> str:
    return stem(path).lower()


def label_keys(path: Path, label_name: str | None = None) -> list[str]:
    """Image names this label file may belong to: the name it holds in `label_name`'s `{name}`, or
    without a pattern its own stem and its stem minus a label suffix."""
    name = _stem(path)
    if label_name is not None:
        head, _, tail = label_name.lower().partition(NAME_FIELD)
        fits = name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail)
        return [name[len(head) : len(name) - len(tail)]] if fits else []
    keys = [name]
    for label_suffix in LABEL_SUFFIXES:
        for sep in _SEPARATORS:
            tail = sep + label_suffix
            if name.endswith(tail) and len(name) > len(tail):
                keys.append(name[: -len(tail)])
    return keys


def _place(name: str, written: str) -> int | None:
    """Where `name` stands in the longer `written`, between separators or at an end (`vol_1` is not in
    `vol_10_gt`), ignoring case; None where it does not."""
    start = written.lower().find(name.lower())
    end = start + len(name)
    if start < 0 or len(name) >= len(written):
        return None
    return None if written[start - 1 : start].isalnum() or written[end : end + 1].isalnum() else start


def _guess_label_name(names: Sequence[str], labels: Sequence[Path]) -> str | None:
    """The one `--label-name` pattern that the unpaired labels agree on (`mask_a` for the name `a`:
    `mask_{name}`), or None; in each label, the longest name it holds stands for `{name}`."""
    guesses = set()
    for label in labels:
        written = stem(label)
        found = [(len(name), start) for name in names if (start := _place(name, written)) is not None]
        if not found:
            return None
        size, start = max(found)
        guesses.add(written[:start] + NAME_FIELD + written[start + size :])
    return guesses.pop() if len(guesses) == 1 else None


def naming_hint(label_name: str | None, names: Sequence[str] = (), labels: Sequence[Path] = ()) -> str:
    """How labels must be named, for a pairing error; with the pattern the unpaired `labels` suggest
    for the unpaired image `names`, when they agree on one."""
    if label_name is not None:
        rule = f"label names must be {label_name} (--label-name), {NAME_FIELD} standing for the image's name"
    else:
        rule = (
            f"label names must be the image's name, optionally followed by _{'/_'.join(LABEL_SUFFIXES)}; "
            f"for other names give --label-name, e.g. --label-name 'mask_{NAME_FIELD}'"
        )
    guess = _guess_label_name(names, labels) if names and labels else None
    if guess is not None and guess != label_name:
        rule += f"; these look like --label-name '{guess}'"
    return f" ({rule})"


def listing(paths: Sequence[Path], limit: int = _MAX_LISTED) -> str:
    """File names for a one-line message: `a.tif, b.tif (and 7 more)`."""
    return shorten_list([p.name for p in paths], limit)


def pair_files(
    images_dir: Path,
    labels_dir: Path,
    image_option: str = "--images",
    label_option: str = "--labels",
    label_name: str | None = None,
) -> list[Pair]:
    """Pair every image with exactly one label by name; list whatever cannot be paired.

    `label_name` (`--label-name`, checked by `label_name_pattern`) says how labels are named, e.g.
    `mask_{name}`; None: the image's name, optionally plus a label suffix. One folder may hold
    both: then a file is a label when its name is another file's name as a label (`vol.tif` +
    `vol_label.tif`), and no file is ever paired with itself.
    """
    images = list_volumes(images_dir, image_option)
    labels = list_volumes(labels_dir, label_option)
    if Path(images_dir).resolve() == Path(labels_dir).resolve():
        stems = {_stem(p) for p in images}
        labels = [p for p in images if any(k in stems and k != _stem(p) for k in label_keys(p, label_name))]
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
        image = next((by_stem[k] for k in label_keys(label, label_name) if k in by_stem), None)
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
        problems.append(f"images without a label in {labels_dir}: {listing(unmatched_images)}")
    if unmatched_labels:
        problems.append(f"labels without an image in {images_dir}: {listing(unmatched_labels)}")
    if problems:
        hint = naming_hint(label_name, [stem(p) for p in unmatched_images], unmatched_labels)
        raise DataError("; ".join(problems) + hint)
    return [Pair(image, matched[image]) for image in images]
