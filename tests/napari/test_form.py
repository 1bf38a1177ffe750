"""The Train widget's form logic without Qt: same defaults, same checks and wording as the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from voxseg.config import TrainConfig
from voxseg.errors import DataError
from voxseg.napari.form import TRAIN_FORM, field_errors, fields_of, padding_summary
from voxseg.napari.layer_data import safe_name, write_layer_dataset


def test_every_field_shows_the_configs_default():
    values = TRAIN_FORM.default_values()
    config = TRAIN_FORM.config_from_values({**values, "images": "i", "labels": "l"}).resolved()
    defaults = TrainConfig(images="i", labels="l").resolved()
    assert config == defaults


def test_several_bad_values_are_reported_at_once_with_the_cli_wording(tmp_path):
    values = {**TRAIN_FORM.default_values(), "val_interval": 0, "lr": "fast", "batch_size": 0}
    errors = field_errors(values)
    assert errors["val_interval"] == "--val-interval: got 0, but it must be at least 1"
    assert errors["lr"] == "--lr: expected a number, got 'fast'"
    assert errors["batch_size"].startswith("--batch-size:")
    assert errors["images"] == "--images is required"


def test_rules_across_fields_land_on_the_field_they_name():
    values = {**TRAIN_FORM.default_values(), "images": ".", "labels": ".", "epochs": 3, "warmup_epochs": 3}
    assert field_errors(values)["warmup_epochs"].startswith("--warmup-epochs: 3 must be fewer")


def test_folders_must_exist_and_pair(tmp_path, make_dataset):
    images, labels = make_dataset(tmp_path, n=2, size=8)
    values = {**TRAIN_FORM.default_values(), "images": str(images), "labels": str(tmp_path / "missing")}
    assert field_errors(values) == {"labels": f"--labels: {tmp_path / 'missing'} does not exist"}
    (labels / "vol_00_label.tif").rename(labels / "other.tif")
    errors = field_errors({**values, "labels": str(labels)})
    assert list(errors) == ["images"] and "vol_00" in errors["images"]


def test_layer_mode_needs_no_folders():
    assert field_errors(TRAIN_FORM.default_values(), data_from_layers=True) == {}


def test_numbers_typed_as_text_are_saved_as_numbers():
    typed = {"lr": " 5e-4 ", "patch_size": "32,64,64", "workers": "2"}
    config = TRAIN_FORM.config_from_values({**TRAIN_FORM.default_values(), **typed})
    assert (config.lr, config.patch_size, config.workers) == (0.0005, (32, 64, 64), 2)
    assert TRAIN_FORM.config_from_values({**TRAIN_FORM.default_values(), "run_name": "  "}).run_name is None


def test_display_round_trip_of_a_loaded_config():
    config = TrainConfig(model="VNet", patch_size=(32, 64, 64), lr=2e-4, images="a", labels="b")
    shown = TRAIN_FORM.display_values(config)
    assert shown["patch_size"] == "32,64,64" and shown["lr"] == "0.0002" and shown["workers"] == ""
    back = TRAIN_FORM.config_from_values(shown).resolved()
    assert (back.model, back.patch_size, back.lr) == ("VNet", (32, 64, 64), 2e-4)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"model": "SegResNet", "patch_size": "64"}, "patch 64×64×64 needs no padding"),
        ({"model": "VNet", "patch_size": "60,64,64"}, "patch 60×64×64 padded to 64×64×64"),
        ({"model": "SegResNet", "patch_size": "65", "pad_pow2": True}, "padded to 128×128×128"),
        ({"model": "VNet", "whole_volumes": True}, "whole volumes are padded"),
    ],
)
def test_padding_summary_says_what_the_model_needs(values, expected):
    assert expected in padding_summary(values)


def test_fields_cover_every_cli_option_but_the_run_controls():
    from voxseg.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {a.dest for a in train._actions if a.option_strings} - {"help", "config", "resume"}
    assert options == {f.name for f in TRAIN_FORM.fields}


def test_layers_are_written_as_a_pairable_dataset(tmp_path):
    image = np.random.default_rng(0).random((8, 9, 10), dtype=np.float32)
    label = (image > 0.5).astype(np.uint8)
    images, labels = write_layer_dataset(tmp_path, "my cells: 1", image, "lab", label)
    assert (tifffile.imread(images / "my_cells_1.tif") == image).all()
    assert (tifffile.imread(labels / "my_cells_1_label.tif") == label).all()
    again, _ = write_layer_dataset(tmp_path, "my cells: 1", image, "lab", label)
    assert again != images  # never overwritten
    with pytest.raises(DataError, match="does not match"):
        write_layer_dataset(tmp_path, "a", image, "b", label[:4])
    assert safe_name("../..") == "layer"


def test_layer_datasets_keep_the_layer_scale_as_voxel_size(tmp_path):
    """The image layer's scale becomes the files' voxel size; int64 labels (what `np.zeros(shape, int)`
    makes), which OME metadata cannot describe, are still written."""
    from voxseg.io.formats import open_volume

    image = np.random.default_rng(0).random((8, 9, 10), dtype=np.float32)
    label = (image > 0.5).astype(np.int64)
    images, labels = write_layer_dataset(tmp_path, "cells", image, "lab", label, (2.0, 0.5, 0.5))
    assert open_volume(images / "cells.tif").voxel_size == (2.0, 0.5, 0.5)
    assert (tifffile.imread(labels / "cells_label.tif") == label).all()
    unscaled, _ = write_layer_dataset(tmp_path, "cells", image, "lab", label)
    assert open_volume(unscaled / "cells.tif").voxel_size is None  # napari's default 1: unknown


def test_blank_optional_fields_say_what_blank_means() -> None:
    fields = {field.name: field for field in fields_of(TrainConfig)}
    assert fields["label_map"].placeholder == "0 background, > 0 foreground"
    assert fields["spacing"].placeholder == "from the files' metadata"
    assert fields["run_name"].placeholder == "<model>_<YYYYmmdd-HHMMSS>"
    assert fields["images"].placeholder == ""  # required: its error says so
