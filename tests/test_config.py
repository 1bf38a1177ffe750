"""TrainConfig: every bad option is refused with its CLI name; YAML files round-trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voxseg.config import TrainConfig
from voxseg.errors import ConfigError
from voxseg.options import parse_size


def _config(**overrides: Any) -> TrainConfig:
    return TrainConfig(images="data/images", labels="data/labels", **overrides)


def test_defaults_validate_and_normalise_types() -> None:
    config = _config(results="out", patch_size="32", model="segresnet", loss="Dice-CE loss").resolved()
    assert config.images == Path("data/images").resolve() and config.images.is_absolute()
    assert config.results == Path("out").resolve()
    assert config.patch_size == (32, 32, 32)
    assert config.model == "SegResNet" and config.loss == "dice-ce"
    assert config.val_images is None and config.device == "auto"


@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        ({"val_interval": 0}, "--val-interval"),
        ({"train_fraction": 1.5}, "--train-fraction"),
        ({"train_fraction": 0}, "--train-fraction"),
        ({"train_fraction": 1.0}, "--train-fraction"),
        ({"lr": 0}, "--lr"),
        ({"lr": -1e-3}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"batch_size": 0}, "--batch-size"),
        ({"batch_size": 2.5}, "--batch-size"),
        ({"batch_size": "two"}, "--batch-size"),
        ({"epochs": 0}, "--epochs"),
        ({"samples_per_image": 0}, "--samples-per-image"),
        ({"foreground_share": 1.5}, "--foreground-share"),
        ({"seed": -1}, "--seed"),
        ({"workers": -1}, "--workers"),
        ({"patch_size": "0"}, "--patch-size"),
        ({"patch_size": "1,2"}, "--patch-size"),
        ({"patch_size": "a,b,c"}, "--patch-size"),
        ({"patch_size": [8, 8, 8, 8]}, "--patch-size"),
        ({"device": "gpu"}, "--device"),
        ({"device": "cpu:0"}, "--device"),
        ({"model": "NoSuchNet"}, "--model"),
        ({"loss": "nosuchloss"}, "--loss"),
        ({"zip": "yes"}, "--zip"),
        ({"run_name": "a/b"}, "--run-name"),
        ({"run_name": ".."}, "--run-name"),
        ({"val_images": "val/images"}, "--val-images"),
        ({"val_labels": "val/labels"}, "--val-labels"),
        ({"images": None}, "--images"),
        ({"model": "WNet3D"}, "--labels"),  # trains on images alone: labels are refused
    ],
)
def test_bad_option_is_named(overrides: dict[str, Any], option: str) -> None:
    config = TrainConfig(**{"images": "data/images", "labels": "data/labels", **overrides})
    with pytest.raises(ConfigError, match=option.replace("-", r"\-")):
        config.resolved()


def test_labels_are_required_when_a_run_starts_unless_the_model_trains_without() -> None:
    config = TrainConfig(images="data/images", labels="").resolved()  # a form may still be blank
    with pytest.raises(ConfigError, match="--labels is required"):
        config.check_labels_given()
    TrainConfig(images="data/images", model="WNet3D").resolved().check_labels_given()


def test_unknown_yaml_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("images: a\nlabels: b\nepocs: 3\n")
    config = TrainConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="unknown option.*epocs"):
        config.resolved()


def test_infinite_epochs_is_a_config_error() -> None:
    """`epochs: .inf` in a YAML file must be a usage error (exit 2), not a crash (exit 1)."""
    with pytest.raises(ConfigError, match="--epochs"):
        _config(epochs=float("inf")).resolved()


def test_device_with_empty_index_is_refused() -> None:
    with pytest.raises(ConfigError, match="--device"):
        _config(device="cuda:").resolved()


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps", " CPU "])
def test_good_devices(device: str) -> None:
    assert _config(device=device).resolved().device == device.strip().lower()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("32,48,64", (32, 48, 64)),
        ("32x48x64", (32, 48, 64)),
        (" 32, 48 ,64", (32, 48, 64)),
        ("64", (64, 64, 64)),
        (64, (64, 64, 64)),
        ([16, 24, 32], (16, 24, 32)),
        ((16, 24, 32), (16, 24, 32)),
    ],
)
def test_parse_size(value: Any, expected: tuple[int, int, int]) -> None:
    assert parse_size(value, "--patch-size") == expected


def test_patch_size_in_config_is_z_y_x() -> None:
    assert _config(patch_size="32,48,64").resolved().patch_size == (32, 48, 64)


def test_numbers_given_as_strings_are_converted() -> None:
    """YAML or GUIs may hand over strings; validate() turns them into the field's type."""
    config = _config(epochs="3", lr="0.01", train_fraction="0.5").resolved()
    assert config.epochs == 3 and isinstance(config.epochs, int)
    assert config.lr == 0.01 and config.train_fraction == 0.5


def _non_default_config(tmp_path: Path) -> TrainConfig:
    return TrainConfig(
        images=tmp_path / "images",
        labels=tmp_path / "labels",
        results=tmp_path / "results",
        val_images=tmp_path / "val_images",
        val_labels=tmp_path / "val_labels",
        train_fraction=0.6,
        run_name="my_run",
        zip=True,
        whole_volumes=True,
        patch_size=(16, 32, 48),
        samples_per_image=3,
        foreground_share=1 / 3,
        pad_pow2=True,
        augment=False,
        model="TRAILMAP_MS",
        loss="tversky",
        lr=3.3e-4,
        batch_size=4,
        epochs=7,
        val_interval=2,
        seed=11,
        device="cpu",
        workers=1,
    ).resolved()


def test_yaml_round_trip(tmp_path: Path) -> None:
    original = _non_default_config(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(original.to_yaml())
    loaded = TrainConfig.from_yaml(path)
    assert loaded.to_yaml() == original.to_yaml()
    assert loaded.resolved() == original


def test_default_yaml_round_trip(tmp_path: Path) -> None:
    original = TrainConfig()
    path = tmp_path / "config.yaml"
    path.write_text(original.to_yaml())
    loaded = TrainConfig.from_yaml(path)
    assert loaded.to_dict() == original.to_dict()
    path.write_text(TrainConfig(foreground_share=1 / 3).to_yaml())
    assert TrainConfig.from_yaml(path).foreground_share == 1 / 3  # floats survive YAML exactly


def test_yaml_accepts_dashed_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("images: a\nlabels: b\nval-interval: 3\npatch-size: 16,32,32\n")
    config = TrainConfig.from_yaml(path).resolved()
    assert config.val_interval == 3 and config.patch_size == (16, 32, 32)


def test_from_yaml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config") as info:
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)


@pytest.mark.parametrize("text", ["- just\n- a list\n", "images: [unclosed\n"])
def test_from_yaml_bad_content(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="--config") as info:
        TrainConfig.from_yaml(path)
    assert "\n" not in str(info.value)


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert TrainConfig.from_yaml(path).to_dict() == TrainConfig().to_dict()


def test_pretrained_needs_a_model_with_published_weights(tmp_path: Path) -> None:
    """The default SegResNetDS has none: refused before any data are read, naming those that have."""
    config = TrainConfig(images=tmp_path, labels=tmp_path, pretrained=True)
    with pytest.raises(ConfigError, match="no weights for SegResNetDS; choose --model SegResNet or VNet"):
        config.resolved()
    TrainConfig(images=tmp_path, labels=tmp_path, pretrained=True, model="SegResNet").resolved()
