"""Reviewing a predicted mask in napari (offscreen): edits with napari's label tools mark the plane shown,
along any axis and at any scale; marks, the overlay, the sparse labels, the truth kept over a
re-prediction, Shift-R, and the Review panel."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import numpy as np  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from voxseg.napari.review import Plane, PlaneReview  # noqa: E402
from voxseg.napari.review_panel import ReviewPanel  # noqa: E402

SHAPE = (10, 12, 14)
SCALE, TRANSLATE = (2.0, 0.5, 0.5), (10.0, 0.0, 5.0)


@pytest.fixture
def viewer_layer_review(make_napari_viewer):
    """A real viewer (offscreen) with a Z×Y×X mask placed like an anisotropic image, under review."""
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="mask", scale=SCALE, translate=TRANSLATE)
    review = PlaneReview(viewer, layer)
    yield viewer, layer, review
    review.close()


def show(viewer, axis: int, index: int) -> None:
    """Slice the (3D) viewer along `axis` at data index `index` of the mask."""
    viewer.dims.ndisplay = 2
    viewer.dims.order = (axis, *(a for a in range(3) if a != axis))
    viewer.dims.set_point(axis, TRANSLATE[axis] + SCALE[axis] * index)


def test_each_label_tool_marks_the_z_plane_shown_as_edited_by_its_data_index(viewer_layer_review):
    viewer, layer, review = viewer_layer_review
    # a finer layer makes the viewer's step half the mask's: current_step is no data index
    viewer.add_labels(
        np.zeros((20, 12, 14), np.uint8), name="finer", scale=(1.0, 0.5, 0.5), translate=TRANSLATE
    )
    viewer.layers.selection.active = layer
    show(viewer, 0, 5)
    assert viewer.dims.current_step[0] == 10 and review.current_plane() == Plane(0, 5)
    edits = {
        "paint": lambda: layer.paint((5, 6, 7), 1),
        "fill": lambda: layer.fill((5, 0, 0), 1),
        "polygon": lambda: layer.paint_polygon([(5, 1, 1), (5, 1, 6), (5, 6, 6)], 1),
        "data_setitem": lambda: layer.data_setitem((np.array([5, 5]), np.array([1, 2]), np.array([3, 3])), 1),
    }
    for name, edit in edits.items():
        layer.data[...] = 0
        review.clear()
        edit()
        assert review.planes == [Plane(0, 5)], name
        assert review.how(Plane(0, 5)) == "edited" and str(review.planes[0]) == "Z 5"
        assert review.overlay.data[5].all() and review.overlay.data.sum() == SHAPE[1] * SHAPE[2], name


def test_an_edit_on_a_y_slice_marks_that_y_plane_and_a_3d_stroke_marks_none(viewer_layer_review):
    viewer, layer, review = viewer_layer_review
    viewer.dims.order = (1, 0, 2)
    viewer.dims.set_point(1, 7 * 0.5)
    assert review.current_plane() == Plane(1, 7)
    layer.paint((4, 7, 3), 1)
    assert review.planes == [Plane(1, 7)] and review.reviewed_summary() == {"Y": [7]}
    assert review.overlay.data[:, 7, :].all() and review.overlay.data.sum() == SHAPE[0] * SHAPE[2]
    layer.n_edit_dimensions, layer.brush_size = 3, 20  # a ball across Z planes (radius 10 × 0.5 / 2)
    show(viewer, 0, 4)
    before = layer.data.copy()
    layer.paint((4, 6, 7), 1)
    assert np.unique(np.nonzero(layer.data != before)[0]).tolist() == [2, 3, 4, 5, 6]
    assert review.planes == [Plane(0, 4), Plane(1, 7)]  # seen on one plane: that one only
    review.clear()
    viewer.dims.ndisplay = 3
    assert review.current_plane() is None and review.mark_current() is None
    before = layer.data.copy()
    layer.paint((7, 6, 7), 1)
    assert len(np.unique(np.nonzero(layer.data != before)[0])) > 1 and review.planes == []


def test_marks_overlay_sparse_labels_and_summary(viewer_layer_review):
    viewer, layer, review = viewer_layer_review
    changes = []
    review.changed.connect(lambda: changes.append(review.planes))
    layer.data[2:6, 3:8, 4:9] = 1
    show(viewer, 0, 2)
    assert review.mark_current() == Plane(0, 2) and review.how(Plane(0, 2)) == "marked"
    review.mark(Plane(2, 4))
    layer.paint((2, 0, 0), 1)  # an edit wins over a mark
    assert review.planes == [Plane(0, 2), Plane(2, 4)] and review.how(Plane(0, 2)) == "edited"
    review.mark(Plane(0, 2))
    assert review.how(Plane(0, 2)) == "edited" and len(changes) == 4
    summary = review.reviewed_summary()
    assert summary == {"Z": [2], "X": [4]} and json.loads(json.dumps(summary)) == summary

    reviewed = np.zeros(SHAPE, bool)
    reviewed[2], reviewed[:, :, 4] = True, True
    assert np.array_equal(review.overlay.data, reviewed.astype(np.uint8))
    sparse = review.sparse_labels()
    assert sparse.dtype == np.uint8 and sparse.shape == SHAPE
    assert np.array_equal(sparse, np.where(reviewed, np.where(layer.data > 0, 2, 1), 0))
    assert set(np.unique(sparse[2])) == {1, 2} and not sparse[3][:, :4].any()

    review.unmark(Plane(0, 2))
    assert review.planes == [Plane(2, 4)] and len(changes) == 5
    assert not review.overlay.data[2][:, :4].any() and review.overlay.data[:, :, 4].all()
    with pytest.raises(ValueError, match="outside the volume"):
        review.mark(Plane(0, SHAPE[0]))
    overlay = review.overlay
    assert overlay.name == "mask reviewed" and overlay.metadata == {"voxseg_output": "review overlay"}
    assert not overlay.editable and viewer.layers.index(overlay) < viewer.layers.index(layer)
    assert viewer.layers.selection.active is layer and np.allclose(overlay.scale, SCALE)


def test_the_users_truth_survives_a_re_prediction(viewer_layer_review):
    viewer, layer, review = viewer_layer_review
    show(viewer, 0, 5)
    layer.paint((5, 6, 7), 1)  # outside a stroke napari fires the paint event before writing
    with layer.block_history():  # a mouse stroke: one paint event, after the writes
        layer.paint((9, 1, 1), 1)
        layer.paint((9, 1, 12), 1)
    review.mark(Plane(1, 3))
    layer.data_setitem((np.array([8]), np.array([3]), np.array([2])), 1)  # a later edit of Y 3
    truth_z5, truth_y3 = layer.data[5].copy(), layer.data[:, 3].copy()
    truth_z9 = layer.data[9].copy()
    assert review.planes == [Plane(0, 5), Plane(0, 9), Plane(1, 3)] and truth_z5.any() and truth_y3[8, 2] == 1

    layer.data = np.ones(SHAPE, np.uint8)  # the widget replaces the data with a new prediction
    review.restore_truth()
    assert np.array_equal(layer.data[5], truth_z5) and np.array_equal(layer.data[:, 3], truth_y3)
    assert np.delete(layer.data[4], 3, axis=0).all() and len(review.planes) == 3

    new = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="mask 2", scale=SCALE, translate=TRANSLATE)
    review.set_layer(new)
    review.restore_truth()
    assert np.array_equal(new.data[5], truth_z5) and np.array_equal(new.data[:, 3], truth_y3)
    assert np.array_equal(new.data[9], truth_z9) and truth_z9[1, 1] == truth_z9[1, 12] == 1
    assert review.overlay.name == "mask 2 reviewed"
    layer.paint((7, 6, 7), 0)  # the old layer is no longer followed
    new.paint((5, 0, 0), 1)
    assert len(review.planes) == 3 and review.sparse_labels()[5, 0, 0] == 2


def test_shift_r_marks_the_plane_shown_and_close_undoes_everything(viewer_layer_review, qtbot):
    viewer, layer, review = viewer_layer_review
    assert viewer.layers.selection.active is layer  # a Labels layer's keys would win over the viewer's
    assert review.bind_key()
    show(viewer, 2, 9)
    qtbot.keyClick(viewer.window._qt_viewer, Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier)
    assert review.planes == [Plane(2, 9)] and review.how(Plane(2, 9)) == "marked"
    review.close()
    assert review.overlay not in viewer.layers and "Shift+R" not in {str(k) for k in viewer.keymap}
    layer.paint((2, 6, 9), 1)
    assert review.planes == [Plane(2, 9)]

    other = PlaneReview(viewer, layer)

    def theirs(viewer):
        pass

    viewer.bind_key("Shift-R", theirs)
    assert other.bind_key() is False
    other.close()
    assert [f for k, f in viewer.keymap.items() if str(k) == "Shift+R"] == [theirs]


def test_the_panel_lists_unmarks_and_goes_to_planes(viewer_layer_review, qtbot):
    viewer, layer, review = viewer_layer_review
    panel = ReviewPanel()
    qtbot.addWidget(panel)
    assert panel.isHidden() and panel.title() == "Review" and panel.actions.count() == 0
    panel.attach(review)
    assert not panel.isHidden() and panel.count.text() == "0 planes reviewed"
    viewer.dims.ndisplay = 3
    panel.mark_button.click()
    assert panel.status.text() == "show a 2D plane first" and review.planes == []
    show(viewer, 0, 3)
    panel.mark_button.click()
    show(viewer, 1, 7)
    layer.paint((4, 7, 3), 1)
    texts = [panel.plane_list.item(i).text() for i in range(panel.plane_list.count())]
    assert texts == ["Z 3 — marked right", "Y 7 — edited"] and panel.count.text() == "2 planes reviewed"

    panel.plane_list.item(0).setSelected(True)
    panel.go_button.click()
    assert viewer.dims.order == (0, 1, 2) and viewer.dims.point[0] == TRANSLATE[0] + SCALE[0] * 3
    assert review.current_plane() == Plane(0, 3)
    viewer.dims.ndisplay = 3
    item = panel.plane_list.item(1)
    rect = panel.plane_list.visualItemRect(item)
    qtbot.mouseClick(panel.plane_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(panel.plane_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert viewer.dims.ndisplay == 2 and viewer.dims.point[1] == 7 * 0.5
    assert review.current_plane() == Plane(1, 7)

    panel.plane_list.clearSelection()
    panel.plane_list.item(0).setSelected(True)
    panel.unmark_button.click()
    assert review.planes == [Plane(1, 7)] and panel.count.text() == "1 plane reviewed"
    panel.detach()
    review.mark(Plane(0, 1))
    assert panel.isHidden() and panel.plane_list.count() == 0


def test_a_viewer_with_more_dims_than_the_mask(viewer_layer_review, qtbot):
    viewer, layer, review = viewer_layer_review
    viewer.add_labels(
        np.zeros((3, *SHAPE), np.uint8), name="time", scale=(1.0, *SCALE), translate=(0, *TRANSLATE)
    )
    viewer.layers.selection.active = layer
    panel = ReviewPanel()
    qtbot.addWidget(panel)
    panel.attach(review)
    panel.go_to(Plane(0, 6))
    assert viewer.dims.not_displayed == (0, 1) and viewer.dims.point[1] == TRANSLATE[0] + SCALE[0] * 6
    assert review.current_plane() == Plane(0, 6)
    layer.paint((6, 2, 2), 1)
    panel.go_to(Plane(1, 2))
    assert viewer.dims.order == (0, 2, 1, 3) and review.current_plane() == Plane(1, 2)
    layer.paint((3, 2, 9), 1)
    assert review.planes == [Plane(0, 6), Plane(1, 2)]
