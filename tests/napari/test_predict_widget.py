"""The napari Predict widget (offscreen): an image layer in, probability/mask/labels layers out, through
the command line's engine; bad values and missing runs shown with the CLI's wording; Stop."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import numpy as np  # noqa: E402
from conftest import stop_if_running, synthetic_volume, train_small_run, wait_until_idle  # noqa: E402

import voxseg  # noqa: E402
from voxseg.config import PredictConfig  # noqa: E402
from voxseg.errors import VoxsegError  # noqa: E402
from voxseg.napari.predict_widget import PREDICT_FORM, PredictWidget  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small trained SegResNet (the predictor tests' recipe)."""
    return train_small_run(tmp_path_factory.mktemp("trained"))[0]


@pytest.fixture
def viewer_and_widget(qtbot):
    """A ViewerModel (napari's viewer without its GL canvas: offscreen Qt cannot draw image layers)."""
    from napari.components import ViewerModel

    viewer = ViewerModel()
    widget = PredictWidget(viewer)
    qtbot.addWidget(widget)
    yield viewer, widget
    stop_if_running(qtbot, widget)


def wait_for_end(qtbot, widget: PredictWidget) -> None:
    wait_until_idle(qtbot, widget)


def test_the_widget_is_contributed_with_the_configs_defaults(make_napari_viewer):
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("voxseg")
    assert [w.display_name for w in manifest.contributions.widgets] == ["Train", "Predict"]
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("voxseg", "Predict")
    assert isinstance(widget, PredictWidget)
    values = widget.values()
    files = {"input", "image_key", "level", "channel", "output", "output_format", "save_probabilities"}
    assert set(values).isdisjoint(files | {"overwrite"})  # a layer in, layers out
    typed = PREDICT_FORM.config_from_values({**values, "source": "r", "input": "i", "output": "o"})
    assert typed.resolved() == PredictConfig(source="r", input=("i",), output="o").resolved()
    assert widget.inputs["overlap"].toolTip().startswith("share of a window that overlaps")
    assert widget.error_labels["image_layer"].text() == "choose the image layer to segment"
    assert widget.start() is False and widget.status.text().startswith("Cannot start:")


def test_an_image_layer_becomes_probability_mask_and_labels_layers(viewer_and_widget, qtbot, run_dir):
    viewer, widget = viewer_and_widget
    image, truth = synthetic_volume((20, 28, 24), seed=7, cells=3)
    scale, translate = (2.0, 0.5, 0.5), (10.0, 0.0, 5.0)
    viewer.add_image(image, name="nuclei", scale=scale, translate=translate)
    assert widget.image_layer.currentText() == "nuclei"
    widget.set_values({"source": str(run_dir), "instances": "auto", "device": "cpu"})
    assert widget.revalidate() == {}
    assert widget.source_info.text().startswith("SegResNet, best.pth, window 16×16×16, threshold ")
    assert widget.start() and widget.start_button.text() == "Stop"
    wait_for_end(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert widget.start_button.text() == "Start" and widget.status.text().startswith("Done")
    assert "3 objects: 'nuclei probability', 'nuclei mask', 'nuclei labels', 'nuclei distance'" in (
        widget.status.text()
    )  # the run trained on instance ids: its distance output seeds the objects (`auto`)
    assert widget.progress.value() == widget.progress.maximum() > 0  # over the windows
    assert "threshold" in widget.log_view.toPlainText()  # the engine's log reached the panel

    probability, mask, labels = (viewer.layers[f"nuclei {k}"] for k in ("probability", "mask", "labels"))
    assert type(probability).__name__ == "Image" and probability.colormap.name == "magenta"
    assert tuple(probability.contrast_limits) == (0.0, 1.0) and probability.blending == "additive"
    assert type(mask).__name__ == type(labels).__name__ == "Labels"
    distance = viewer.layers["nuclei distance"]
    assert type(distance).__name__ == "Image" and not distance.visible and distance.colormap.name == "cyan"
    for layer in (probability, mask, labels, distance):
        assert layer.data.shape == image.shape
        np.testing.assert_allclose(layer.scale, scale)
        np.testing.assert_allclose(layer.translate, translate)
    threshold = json.loads((run_dir / "summary.json").read_text())["threshold"]  # tuned on validation
    np.testing.assert_array_equal(mask.data, probability.data >= threshold)
    np.testing.assert_array_equal(labels.data > 0, mask.data > 0)
    dice = 2 * (mask.data.astype(bool) & (truth > 0)).sum() / (mask.data.sum() + (truth > 0).sum())
    assert dice > 0.5
    # the same volume predicted by `voxseg.predict` (files): the widget runs the command line's engine
    # (the layer's scale is its voxel size: the instances measure distances in it)
    np.testing.assert_array_equal(
        labels.data, voxseg.predict(run_dir, image, instances="auto", spacing=scale)
    )
    assert widget.image_layer.count() == 1  # its own probability layer is not offered as an input

    # a new run replaces the layers; without instances the old labels go
    count = len(viewer.layers)
    widget.set_values({"instances": "none", "threshold": "0.9"})
    assert widget.start()
    wait_for_end(qtbot, widget)
    assert len(viewer.layers) == count - 1 and "nuclei labels" not in viewer.layers
    assert viewer.layers["nuclei probability"] is probability
    np.testing.assert_array_equal(viewer.layers["nuclei mask"].data, probability.data > 0.9)


def test_stop_ends_after_the_windows_in_progress_and_changes_no_layer(viewer_and_widget, qtbot, run_dir):
    viewer, widget = viewer_and_widget
    viewer.add_image(synthetic_volume(64, seed=1)[0], name="big")
    widget.set_values({"source": str(run_dir), "device": "cpu", "batch_size": 1, "overlap": "0.5"})
    widget.progress_relay.progress.connect(lambda *_: widget.stop())  # at the first batch
    assert widget.start()
    wait_for_end(qtbot, widget)
    assert widget.last_outcome is not None and widget.last_outcome.stopped
    assert widget.status.text().startswith("Stopped") and widget.start_button.isEnabled()
    assert widget.done_windows < widget.progress.maximum()
    assert [layer.name for layer in viewer.layers] == ["big"]


def test_a_bad_value_is_shown_as_typed_and_refuses_start(viewer_and_widget, tmp_path, run_dir):
    viewer, widget = viewer_and_widget
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="img")
    widget.set_values({"source": str(run_dir), "overlap": "1"})
    error = widget.error_labels["overlap"]
    with pytest.raises(VoxsegError) as cli:  # what `voxseg predict --overlap 1` says
        PredictConfig(source=run_dir, input=("x",), output="o", overlap="1").resolved()
    assert (
        not error.isHidden()
        and error.text() == str(cli.value) == "--overlap: got 1, but it must be between 0 and 0.9"
    )
    assert widget.start() is False and not widget.running
    assert widget.status.text() == f"Cannot start: {cli.value}"
    widget.set_values({"overlap": "0.5"})
    assert error.isHidden() and widget.revalidate() == {}
    viewer.add_image(np.zeros((8, 8), np.float32), name="flat")
    widget.image_layer.setCurrentText("flat")
    assert "not a 3D volume" in widget.error_labels["image_layer"].text()
    viewer.add_image(np.zeros((4, 2, 8, 8), np.float32), name="two channels")
    widget.image_layer.setCurrentText("two channels")
    assert "has 4 axes (shape (4, 2, 8, 8)): split its channels" in widget.error_labels["image_layer"].text()
    viewer.layers["img"].name = "renamed"  # the list is made afresh when it opens
    widget.image_layer.showPopup()
    widget.image_layer.hidePopup()
    names = [widget.image_layer.itemText(i) for i in range(widget.image_layer.count())]
    assert names == ["renamed", "flat", "two channels"]


def test_a_missing_or_unfit_source_shows_the_cli_message(viewer_and_widget, qtbot, tmp_path, run_dir):
    from voxseg.inference.model.trained import load_trained_model

    viewer, widget = viewer_and_widget
    viewer.add_image(synthetic_volume(16)[0], name="img")
    missing = tmp_path / "no-such-run"
    with pytest.raises(VoxsegError) as cli:  # the engine's own message
        load_trained_model(PredictConfig(source=missing, input=("x",), output="o").resolved())
    widget.set_values({"source": str(missing)})
    assert widget.error_labels["source"].text() == str(cli.value)
    assert str(cli.value).startswith("RUN_DIR_OR_WEIGHTS:") and "does not exist" in str(cli.value)
    assert widget.start() is False and "does not exist" in widget.status.text()

    widget.set_values({"source": str(tmp_path)})
    assert "is not a voxseg run folder" in widget.error_labels["source"].text()
    widget.set_values({"source": str(run_dir / "best.pth")})
    assert widget.error_labels["model"].text().startswith("--model:") and "weights file" in (
        widget.error_labels["model"].text()
    )

    # weights that do not fit the model pass the form but fail in the engine: the status says so
    widget.set_values({"model": "VNet", "device": "cpu"})
    assert widget.revalidate() == {}
    assert widget.start()
    wait_for_end(qtbot, widget)
    assert widget.last_error is not None and widget.last_error.startswith("error: ")
    assert "not VNet's: give --model SegResNet" in widget.status.text()
    assert widget.start_button.text() == "Start" and widget.start_button.isEnabled()
    assert [layer.name for layer in viewer.layers] == ["img"]
