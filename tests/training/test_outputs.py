"""What a run's network outputs: the distance output for packed nuclei with instance ids, the shape of
the starting weights kept, and the contradictions refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile

from voxseg.config import TrainConfig
from voxseg.data.discovery import Pair
from voxseg.errors import ConfigError
from voxseg.models.registry import build_model
from voxseg.training.outputs import resolve_instance_output


def _pair(tmp_path: Path, labels) -> list[Pair]:
    image, label = tmp_path / "a.tif", tmp_path / "a_label.tif"
    tifffile.imwrite(image, labels.astype("float32"))
    tifffile.imwrite(label, labels)
    return [Pair(image, label)]


def _config(tmp_path: Path, **options) -> TrainConfig:
    return TrainConfig(images=tmp_path, labels=tmp_path, model="SegResNet", **options)


def _labels(gap: int):
    import numpy as np

    ids = np.zeros((16, 16, 40), np.uint16)
    ids[4:12, 4:12, 2:10] = 1
    ids[4:12, 4:12, 10 + gap : 18 + gap] = 2
    return ids


def test_auto_learns_the_distance_where_nuclei_are_packed_and_not_where_they_are_apart(tmp_path) -> None:
    packed = _pair(tmp_path, _labels(gap=0))
    chosen, note = resolve_instance_output(_config(tmp_path), True, 4.0, packed, None)
    assert chosen == "distance" and "100% of the nuclei" in note
    apart = _pair(tmp_path, _labels(gap=12))
    chosen, note = resolve_instance_output(_config(tmp_path), True, 4.0, apart, None)
    assert chosen == "none" and "apart" in note
    chosen, note = resolve_instance_output(_config(tmp_path), False, 4.0, packed, None)
    assert chosen == "none" and "a mask" in note


def test_starting_weights_fix_the_outputs(tmp_path) -> None:
    pairs = _pair(tmp_path, _labels(gap=12))
    two = build_model("SegResNet", outputs=2).state_dict()
    chosen, note = resolve_instance_output(_config(tmp_path), False, 4.0, pairs, two)
    assert chosen == "distance" and "only the foreground trains" in note
    one = build_model("SegResNet").state_dict()
    with pytest.raises(ConfigError, match="starting weights have 1 output"):
        resolve_instance_output(_config(tmp_path, instance_output="distance"), True, 4.0, pairs, one)
    with pytest.raises(ConfigError, match="no instance ids"):
        resolve_instance_output(_config(tmp_path, instance_output="distance"), False, 4.0, pairs, None)
    chosen, _ = resolve_instance_output(_config(tmp_path, instance_output="distance"), True, 4.0, pairs, None)
    assert chosen == "distance"  # asked for, also for nuclei apart
