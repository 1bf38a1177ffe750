"""The Predict widget's review loop (offscreen), driven as a user would: predict, correct and mark a few
planes, Fine-tune, and see the new run's prediction with the corrections kept; from no model at all;
and Stop during a round."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from conftest import stop_if_running, synthetic_volume, train_small_run, wait_until_idle  # noqa: E402
from napari.utils.key_bindings import coerce_keybinding  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from voxseg.napari.finetune import child_name  # noqa: E402
from voxseg.napari.predict_widget import PredictWidget  # noqa: E402
from voxseg.napari.review import REVIEW_KEY, Plane  # noqa: E402

SCALE, TRANSLATE = (2.0, 0.5, 0.5), (10.0, 0.0, 5.0)
#: a round as short as a test allows (the default is the fine-tune's schedule, `config.finetune`)
QUICK = {"epochs": 1, "samples_per_image": 2, "workers": 0, "threads": 2}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small trained SegResNet (run folder `m`)."""
    return train_small_run(tmp_path_factory.mktemp("trained"))[0]


@pytest.fixture
def viewer_and_widget(qtbot):
    """A ViewerModel (offscreen Qt cannot draw image layers) with a 20×28×24 image, and the widget."""
    from napari.components import ViewerModel

    viewer = ViewerModel()
    viewer.add_image(
        synthetic_volume((20, 28, 24), seed=7, cells=3)[0], name="nuclei", scale=SCALE, translate=TRANSLATE
    )
    widget = PredictWidget(viewer)
    widget.review_controls.round_options = dict(QUICK)
    qtbot.addWidget(widget)
    yield viewer, widget
    stop_if_running(qtbot, widget)


def wait_for_end(qtbot, widget: PredictWidget) -> None:
    wait_until_idle(qtbot, widget)
    assert widget.last_error is None, widget.last_error


def predict(qtbot, widget: PredictWidget, run_dir) -> None:
    widget.set_values({"source": str(run_dir), "device": "cpu", "threads": "2"})
    assert widget.start()
    wait_for_end(qtbot, widget)


def check_annotated(card: dict, planes: dict[str, list[int]]) -> None:
    """run.json's reviewed planes: all of them, even those crossing a validation block."""
    assert card["lineage"]["annotated"][0]["planes"] == planes


def show(viewer, axis: int, index: int) -> None:
    """Slice the viewer along `axis` at data index `index` of the image."""
    viewer.dims.ndisplay = 2
    viewer.dims.order = (axis, *(a for a in range(3) if a != axis))
    viewer.dims.set_point(axis, TRANSLATE[axis] + SCALE[axis] * index)


def test_a_round_fine_tunes_on_the_reviewed_planes_and_keeps_the_corrections(
    viewer_and_widget, qtbot, run_dir
):
    viewer, widget = viewer_and_widget
    controls, panel = widget.review_controls, widget.review_controls.panel
    assert panel.isHidden() and not controls.finetune_button.isEnabled()
    predict(qtbot, widget, run_dir)
    mask, probability = viewer.layers["nuclei mask"], viewer.layers["nuclei probability"]
    review = controls.review
    assert review is not None and review.layer is mask and not panel.isHidden()
    assert panel.actions.indexOf(controls.finetune_button) >= 0 and not controls.finetune_button.isEnabled()

    show(viewer, 0, 5)
    mask.brush_size = 6
    mask.paint((5, 14, 12), 1)  # a nucleus the model missed
    show(viewer, 1, 10)
    z, x = (a.ravel() for a in np.meshgrid(np.arange(20), np.arange(12), indexing="ij"))
    mask.data_setitem((z, np.full_like(z, 10), x), 0)  # erase half a Y plane
    show(viewer, 0, 12)
    viewer.keymap[coerce_keybinding(REVIEW_KEY)](viewer)  # Shift-R (a ViewerModel has no canvas to press)
    assert review.planes == [Plane(0, 5), Plane(0, 12), Plane(1, 10)] and review.how(Plane(0, 12)) == "marked"
    assert controls.finetune_button.isEnabled()
    truths = {p: mask.data[p.key].copy() for p in review.planes}
    sparse = review.sparse_labels()
    before = {"mask": mask.data, "probability": probability.data.copy()}

    qtbot.mouseClick(controls.finetune_button, Qt.MouseButton.LeftButton)
    assert (
        widget.running and widget.start_button.text() == "Stop" and not controls.finetune_button.isEnabled()
    )
    wait_for_end(qtbot, widget)
    child = run_dir.parent / "m-ft1"
    assert widget.status.text().startswith("Fine-tuned on 3 planes in ") and widget.status.text().endswith(
        ": run m-ft1"
    )
    assert "validation Dice" in widget.log_view.toPlainText()
    assert viewer.layers["nuclei mask"] is mask and viewer.layers["nuclei probability"] is probability
    assert mask.data is not before["mask"] and not np.array_equal(probability.data, before["probability"])
    for plane, truth in truths.items():  # the reviewed planes still hold the user's edits
        np.testing.assert_array_equal(mask.data[plane.key], truth)
    assert controls.review is review and len(review.planes) == 3 and controls.finetune_button.isEnabled()

    assert widget.values()["source"] == str(child) and widget.source_info.text().startswith("SegResNet")
    assert controls.last_round is not None and controls.last_round.run_dir == child
    assert child_name(child) == "m-ft2"
    card = json.loads((child / "run.json").read_text())
    assert card["lineage"]["parent"]["run"] == str(run_dir)
    assert (child / "inputs" / "images" / "nuclei.tif").is_file()
    (labels,) = (child / "inputs" / "labels").iterdir()  # what the round trained on: the review's
    np.testing.assert_array_equal(tifffile.imread(labels), sparse)
    check_annotated(card, {"Z": [5, 12], "Y": [10]})


def test_a_new_model_from_painted_planes_without_any_run(viewer_and_widget, qtbot, tmp_path):
    viewer, widget = viewer_and_widget
    controls = widget.review_controls
    controls.scratch_results = tmp_path / "results"
    controls.round_options = {**QUICK, "model": "SegResNet", "patch_size": 16}  # fast on a CPU
    _, truth = synthetic_volume((20, 28, 24), seed=7, cells=3)
    controls.new_mask_button.click()
    mask = viewer.layers["nuclei mask"]
    assert type(mask).__name__ == "Labels" and not mask.data.any()
    assert mask.metadata == {"voxseg_output": "prediction mask"} and controls.review.layer is mask
    np.testing.assert_allclose(mask.scale, SCALE)
    for axis, index in ((0, 9), (2, 11)):  # paint the nuclei of two planes
        show(viewer, axis, index)
        where = (slice(None),) * axis + (index,)
        on = np.nonzero(truth[where] > 0)
        mask.data_setitem(tuple(np.insert(np.stack(on), axis, index, axis=0)), 1)
    assert controls.review.reviewed_summary() == {"Z": [9], "X": [11]}

    assert controls.finetune()
    wait_for_end(qtbot, widget)
    (run,) = (tmp_path / "results").iterdir()
    assert widget.status.text().endswith(f": run {run.name} in {tmp_path / 'results'}")
    assert widget.status.text().startswith("Trained a new model on 2 planes")
    assert {"nuclei probability", "nuclei mask"} <= {layer.name for layer in viewer.layers}
    assert viewer.layers["nuclei mask"] is mask and widget.values()["source"] == str(run)
    np.testing.assert_array_equal(mask.data[9] > 0, truth[9] > 0)
    check_annotated(json.loads((run / "run.json").read_text()), {"Z": [9], "X": [11]})


def test_stop_during_a_round_changes_no_layer(viewer_and_widget, qtbot, run_dir):
    viewer, widget = viewer_and_widget
    predict(qtbot, widget, run_dir)
    controls = widget.review_controls
    controls.round_options = {**QUICK, "epochs": 3}
    mask = viewer.layers["nuclei mask"]
    show(viewer, 0, int(np.argmax(mask.data.sum(axis=(1, 2)))))  # the plane with the most nucleus
    controls.panel.mark_button.click()
    layers = {layer.name: (layer.data, np.array(layer.data)) for layer in viewer.layers}
    # Stop as the first epoch is reported, in the worker's thread (the GUI's Stop would land later)
    controls.relay.progress.connect(lambda *_: widget.stop_event.set(), Qt.ConnectionType.DirectConnection)
    assert controls.finetune()
    wait_for_end(qtbot, widget)
    assert widget.status.text().startswith("Stopped: no layer was changed")
    stopped = controls.last_round
    assert stopped is not None and stopped.status == "stopped" and stopped.run_dir is not None
    assert json.loads((stopped.run_dir / "summary.json").read_text())["status"] == "stopped"
    assert widget.status.text().endswith(f"; run folder {stopped.run_dir}")
    assert {layer.name for layer in viewer.layers} == set(layers)
    for name, (data, values) in layers.items():
        assert viewer.layers[name].data is data
        np.testing.assert_array_equal(data, values)
    assert widget.values()["source"] == str(run_dir) and widget.start_button.text() == "Start"


def test_the_review_follows_the_predicted_image_and_refuses_rounds_it_cannot_run(
    viewer_and_widget, qtbot, run_dir
):
    viewer, widget = viewer_and_widget
    controls = widget.review_controls
    predict(qtbot, widget, run_dir)
    mask, review = viewer.layers["nuclei mask"], controls.review
    show(viewer, 0, 3)
    controls.panel.mark_button.click()  # a plane without any nucleus
    assert not controls.finetune() and "no reviewed plane holds a nucleus" in widget.status.text()
    mask.brush_size = 4
    mask.paint((3, 10, 10), 1)
    truth = mask.data[3].copy()
    widget.set_values({"source": str(run_dir / "best.pth"), "model": "SegResNet"})
    assert not controls.finetune() and "not a weights file" in widget.status.text() and not widget.running

    widget.set_values({"source": str(run_dir), "model": "", "threshold": "0.9"})  # the same image again
    predict(qtbot, widget, run_dir)
    assert controls.review is review and review.planes == [Plane(0, 3)]
    np.testing.assert_array_equal(mask.data[3], truth)

    viewer.add_image(synthetic_volume((16, 20, 20), seed=3)[0], name="other")
    widget.image_layer.setCurrentText("other")
    predict(qtbot, widget, run_dir)  # another image: a new review, the old one closed
    assert controls.review is not review and controls.image_name == "other" and controls.review.planes == []
    assert "nuclei mask reviewed" not in viewer.layers and "other mask reviewed" in viewer.layers
    viewer.layers.remove("other mask")  # its mask gone: no review
    assert controls.review is None and "other mask reviewed" not in viewer.layers
    assert controls.panel.isHidden() and not controls.finetune_button.isEnabled()
