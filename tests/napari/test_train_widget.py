"""The napari Train widget in a real (offscreen) viewer: fill, Start, wait, Stop, layers, bad values."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import tifffile  # noqa: E402
import torch  # noqa: E402
from conftest import FAST, RUN_TIMEOUT_MS, stop_if_running, synthetic_volume, wait_until_idle  # noqa: E402

from voxseg.models.registry import build_model  # noqa: E402
from voxseg.napari.train_widget import TrainWidget  # noqa: E402


def fill(widget: TrainWidget, **values) -> None:
    """Type the FAST settings (plus `values`) into the form, as a user would."""
    settings = {k: v for k, v in FAST.items() if k not in ("patch_size",)}
    settings["patch_size"] = str(FAST["patch_size"])
    settings["workers"] = str(FAST["workers"])
    widget.set_values({**settings, **values})


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, train_widget = viewer.window.add_plugin_dock_widget("voxseg", "Train")
    assert isinstance(train_widget, TrainWidget)
    yield train_widget
    stop_if_running(qtbot, train_widget)


def wait_for_end(qtbot, widget: TrainWidget) -> None:
    wait_until_idle(qtbot, widget)
    assert widget.last_error is None, widget.last_error


def test_defaults_are_the_configs(widget):
    values = widget.values()
    assert values["model"] == "SegResNetDS"
    assert values["epochs"] == "auto" and values["val_interval"] == 1 and values["batch_size"] == "2"
    assert values["patch_size"] == "auto" and values["samples_per_image"] == "auto"
    assert values["augment"] is True and values["results"] == "results"


def test_folder_run_writes_the_run_folder_and_shows_plots_after_two_validations(
    widget, qtbot, tmp_path, make_dataset
):
    images, labels = make_dataset(tmp_path / "data", n=3, size=16)
    results = tmp_path / "results"
    fill(widget, images=str(images), labels=str(labels), results=str(results), run_name="gui", epochs=3)
    seen_validations_when_plotted = []
    original = widget._show_curves

    def spy() -> None:
        seen_validations_when_plotted.append(widget.validations)
        original()

    widget._show_curves = spy
    assert widget.start()
    assert widget.start_button.text() == "Stop"
    wait_for_end(qtbot, widget)

    run = results / "gui"
    expected = ("best.pth", "last.pth", "checkpoint.pt", "metrics.csv", "summary.json", "train.log")
    for name in (*expected, "config.yaml"):
        assert (run / name).is_file(), name
    assert (run / "plots" / "training_curves.png").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    assert widget.progress.value() == widget.progress.maximum() == summary["patches_seen"]  # batch size 1
    assert widget.start_button.text() == "Start"
    assert "Done" in widget.status.text()
    # the plots widget appeared at the second validation, not before, and is docked in napari
    assert seen_validations_when_plotted and min(seen_validations_when_plotted) == 2
    assert widget.curves is not None and widget.curves.updates >= 2
    assert "voxseg training curves" in widget.viewer.window.dock_widgets
    assert "epoch 3/3" in widget.log_view.toPlainText()  # the engine's log reached the panel
    log_copy = tmp_path / "saved.log"
    widget.save_log(log_copy)
    assert "run completed" in log_copy.read_text()


def test_stop_mid_run_saves_loadable_weights(widget, qtbot, tmp_path, make_dataset):
    images, labels = make_dataset(tmp_path / "data", n=3, size=16)
    results = tmp_path / "results"
    fill(widget, images=str(images), labels=str(labels), results=str(results), run_name="s", epochs=200)
    widget.start()
    qtbot.waitUntil(lambda: widget.done_batches >= 3, timeout=RUN_TIMEOUT_MS)
    widget.stop()
    assert widget.start_button.text() == "Stopping…" and not widget.start_button.isEnabled()
    wait_for_end(qtbot, widget)

    assert widget.start_button.text() == "Start" and widget.start_button.isEnabled()
    assert widget.last_end is not None and widget.last_end.status == "stopped"
    assert widget.status.text().startswith("Stopped")
    summary = json.loads((results / "s" / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["epochs_completed"] < 200
    model = build_model("SegResNet", outputs=2)  # the labels hold ids: foreground and distance
    model.load_state_dict(torch.load(results / "s" / "last.pth", weights_only=True))
    assert widget.stop_to_saved_seconds is not None and widget.stop_to_saved_seconds < 30


def test_train_from_layers(qtbot, tmp_path):
    """Layers open in napari are the data. A ViewerModel (napari's viewer without its GL canvas)
    holds them: drawing image layers needs OpenGL, which the offscreen Qt platform lacks."""
    from napari.components import ViewerModel

    viewer = ViewerModel()
    widget = TrainWidget(viewer)
    qtbot.addWidget(widget)
    image, label = synthetic_volume(24, seed=3, cells=4)
    viewer.add_image(image, name="my cells")
    viewer.add_labels(label, name="my cells labels")
    results = tmp_path / "results"
    fill(widget, results=str(results), run_name="layers", epochs=2)
    widget.source.setCurrentText("layers")
    widget.image_layer.setCurrentText("my cells")
    widget.label_layer.setCurrentText("my cells labels")
    widget.show_preview.setChecked(True)
    assert widget.revalidate() == {}
    assert widget.start()
    wait_for_end(qtbot, widget)

    summary = json.loads((results / "layers" / "summary.json").read_text())
    assert summary["status"] == "completed"
    saved = list((results / "layer-data").glob("*/images/my_cells.tif"))
    assert len(saved) == 1 and (tifffile.imread(saved[0]) == image).all()
    # one volume: cut along its longest axis into training and validation parts
    assert summary["train_volumes"] and summary["val_volumes"]
    assert "validation prediction" in viewer.layers
    assert viewer.layers["validation prediction"].data.shape == viewer.layers["validation image"].data.shape


def test_bad_value_blocks_start_with_a_visible_message(widget, tmp_path, make_dataset):
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    fill(widget, images=str(images), labels=str(labels), results=str(tmp_path / "results"), val_interval=0)
    error = widget.error_labels["val_interval"]
    assert not error.isHidden() and error.text() == "--val-interval: got 0, but it must be at least 1"
    assert widget.start() is False
    assert not widget.running
    assert "Cannot start: --val-interval" in widget.status.text()
    assert not (tmp_path / "results").exists()
    widget.set_values({"val_interval": 2})
    assert error.isHidden() and widget.revalidate() == {}


def test_missing_folder_and_unpaired_files_are_shown_before_start(widget, tmp_path, make_dataset):
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    widget.set_values({"images": str(tmp_path / "nowhere"), "labels": str(labels)})
    assert "does not exist" in widget.error_labels["images"].text()
    (labels / "vol_01_label.tif").unlink()
    widget.set_values({"images": str(images)})
    assert "vol_01" in widget.error_labels["images"].text()


def test_engine_error_reaches_the_widget_and_the_button_returns(widget, qtbot, tmp_path):
    """A label that does not match its image passes the form (names pair) but fails on loading."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    image, label = synthetic_volume(16)
    tifffile.imwrite(images / "a.tif", image)
    tifffile.imwrite(labels / "a_label.tif", label[:8])
    fill(widget, images=str(images), labels=str(labels), results=str(tmp_path / "results"))
    assert widget.start()
    wait_until_idle(qtbot, widget)
    assert widget.last_error is not None and widget.last_error.startswith("error: ")
    assert "a_label.tif: shape (8, 16, 16) does not match" in widget.status.text()
    assert widget.start_button.text() == "Start"
    assert not (tmp_path / "results").exists()


def test_settings_round_trip_through_the_cli_yaml(widget, tmp_path):
    from voxseg.config import TrainConfig

    widget.set_values({"model": "VNet", "epochs": 7, "patch_size": "32,64,64", "lr": "0.0005"})
    path = tmp_path / "settings.yaml"
    widget.save_settings(path)
    config = TrainConfig.from_yaml(path)
    assert (config.model, config.epochs, config.lr) == ("VNet", 7, 0.0005)
    reloaded = TrainConfig.from_dict({**config.to_dict(), "images": ".", "labels": "."}).resolved()
    assert reloaded.patch_size == (32, 64, 64)
    widget.set_values({"model": "SegResNet", "epochs": 1})
    widget.load_settings(path)
    assert widget.values()["model"] == "VNet" and widget.values()["epochs"] == "7"
    assert widget.values()["patch_size"] == "32,64,64"
    assert "VNet needs sides divisible by 16" in widget.padding_label.text()


def test_sample_data_is_contributed():
    from voxseg.napari.sample_data import demo_nuclei

    layers = demo_nuclei()
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    assert layers[0][0].shape == layers[1][0].shape and layers[0][0].ndim == 3


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("voxseg")
    assert [w.display_name for w in manifest.contributions.widgets] == ["Train", "Predict"]
    assert manifest.contributions.sample_data[0].key == "demo-nuclei"


def test_a_runtime_error_in_training_is_shown_and_the_button_returns(
    widget, qtbot, tmp_path, make_dataset, monkeypatch
):
    """superqt's generator worker swallows RuntimeError (CUDA out of memory is one); the widget must not."""
    from voxseg.training import engine

    def out_of_memory(self, images, labels):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(engine.Trainer, "train_step", out_of_memory)
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    fill(widget, images=str(images), labels=str(labels), results=str(tmp_path / "results"), run_name="oom")
    assert widget.start()
    wait_until_idle(qtbot, widget)
    assert widget.last_error == "training failed: RuntimeError: CUDA out of memory (simulated)"
    assert widget.start_button.text() == "Start" and widget.start_button.isEnabled()
    summary = json.loads((tmp_path / "results" / "oom" / "summary.json").read_text())
    assert summary["status"] == "failed"


def test_resume_a_run_from_the_widget(widget, qtbot, tmp_path, make_dataset):
    images, labels = make_dataset(tmp_path / "data", n=3, size=16)
    results = tmp_path / "results"
    fill(widget, images=str(images), labels=str(labels), results=str(results), run_name="r", epochs=1)
    assert widget.start()
    wait_for_end(qtbot, widget)
    run = results / "r"

    widget.resume_row.line.setText(str(tmp_path / "not-a-run"))
    assert "does not exist; give a run folder" in widget.error_labels["resume"].text()
    assert widget.start() is False
    widget.resume_row.line.setText(str(run))
    widget.set_values({"images": "", "labels": "", "model": "VNet", "epochs": 3})  # ignored / overridden
    assert widget.revalidate() == {}
    assert widget.start()
    wait_for_end(qtbot, widget)
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["status"] == "completed"
        and summary["epochs_completed"] == 3
        and summary["model"] == "SegResNet"
    )
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3
    assert sorted(p.name for p in results.iterdir()) == ["r"]  # continued in place, no new run folder


def test_train_from_an_image_layer_without_labels(qtbot, tmp_path):
    """ "No labels": WNet3D is chosen and trains on the image layer alone; no labels folder is written."""
    from napari.components import ViewerModel

    viewer = ViewerModel()
    widget = TrainWidget(viewer)
    qtbot.addWidget(widget)
    image, _ = synthetic_volume(24, seed=3, cells=4)
    viewer.add_image(image, name="raw")
    results = tmp_path / "results"
    fill(widget, results=str(results), run_name="alone", epochs=1, loss="auto", samples_per_image=2)
    widget.source.setCurrentText("image layer, no labels (self-supervised, WNet3D)")
    assert widget.values()["model"] == "WNet3D" and not widget.label_layer.isEnabled()
    widget.image_layer.setCurrentText("raw")
    assert widget.revalidate() == {}
    assert widget.start()
    wait_for_end(qtbot, widget)

    summary = json.loads((results / "alone" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"] == "WNet3D"
    assert summary["validated_against"] == "partitions"
    assert not list((results / "layer-data").glob("*/labels"))
    widget.source.setCurrentText("layers")  # back to labelled data: back to the default model
    assert widget.values()["model"] == "SegResNetDS"


def test_an_image_folder_without_labels_needs_no_labels_folder(widget, tmp_path, make_dataset):
    images, labels = make_dataset(tmp_path / "data", n=2, size=16)
    widget.set_values({"images": str(images), "labels": str(labels), "results": str(tmp_path / "r")})
    widget.source.setCurrentText("image folder, no labels (self-supervised, WNet3D)")
    assert "labels" not in widget.revalidate()  # the labels folder is left out, not refused
    assert widget.values()["labels"] == ""
