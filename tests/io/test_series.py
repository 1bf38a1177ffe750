"""A TIFF of several images (an OME-TIFF of several positions): one is read, by `--series`, never the
first in silence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from voxseg.config import PredictConfig
from voxseg.errors import DataError
from voxseg.inference.paths import output_name
from voxseg.io.formats import open_volume


@pytest.fixture
def positions(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 1000, (6, 8, 10), dtype=np.uint16) for _ in range(2)]
    path = tmp_path / "positions.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        for image, z in zip(images, (2.0, 3.0), strict=True):
            tif.write(
                image,
                metadata={"axes": "ZYX", "PhysicalSizeZ": z, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5},
            )
    return path, images


def test_an_image_of_several_is_read_with_its_own_voxel_size(positions) -> None:
    path, images = positions
    second = open_volume(path, series=1)
    np.testing.assert_array_equal(second[:], images[1])
    np.testing.assert_array_equal(second[2:4], images[1][2:4])
    assert second.voxel_size == (3.0, 0.5, 0.5)
    assert open_volume(path, series=0).voxel_size == (2.0, 0.5, 0.5)


def test_several_volumes_without_a_choice_are_refused_naming_the_option(positions) -> None:
    path, _ = positions
    with pytest.raises(
        DataError, match=r"holds 2 volumes \(0: ZYX \(6, 8, 10\), 1: ZYX .*give --series S \(0 to 1\)"
    ):
        open_volume(path)
    with pytest.raises(DataError, match=r"--series 2: .* holds 2 images \(0 to 1\)"):
        open_volume(path, series=2)


def test_a_file_of_one_image_ignores_the_choice(tmp_path: Path) -> None:
    image = np.arange(6 * 8 * 10, dtype=np.uint16).reshape(6, 8, 10)
    tifffile.imwrite(tmp_path / "one.tif", image)
    np.testing.assert_array_equal(open_volume(tmp_path / "one.tif", series=3)[:], image)


def test_outputs_are_named_by_the_image_and_time_point_read(tmp_path: Path) -> None:
    def named(**picked) -> str:
        config = PredictConfig.from_dict(
            {"source": tmp_path, "input": [tmp_path], "output": tmp_path, **picked}
        )
        return output_name(config, tmp_path / "cells.ome.tif")

    assert named() == "cells"
    assert named(series=1) == "cells_s1" and named(timepoint=4) == "cells_t4"
    assert named(series=1, timepoint=4) == "cells_s1_t4"
