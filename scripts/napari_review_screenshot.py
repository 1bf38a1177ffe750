"""Screenshot of the Predict widget docked in napari with a predicted mask under review (for the README).

Needs a display; on a headless machine use Xvfb (Debian: xvfb xauth libxcb-icccm4 libxcb-keysyms1
libxcb-image0 libxcb-render-util0 libxcb-cursor0 libxkbcommon-x11-0):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/napari_review_screenshot.py \
        [RUN [IMAGE [OUT.png]]]

RUN is a run folder (default: a SegResNetDS trained on QCANet's 16-cell embryo), IMAGE a 3D image file
(default: QCANet's 8-cell embryo). It predicts the image with the Predict widget (watershed instances,
on the CPU), then reviews the mask as a user would: erases a few pixels at a nucleus's edge on Z plane
25, marks Z plane 12 right with the Review box's button, goes back to plane 25 and saves the window.
Fine-tune is not pressed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication
from scipy import ndimage

from voxseg.io.formats import open_volume, stem
from voxseg.napari.review import Plane

RUN = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ft/r/base")
IMAGE = Path(sys.argv[2] if len(sys.argv) > 2 else "/work/shared/data/qcanet/images/08_cell_stage.tif")
OUT = Path(sys.argv[3] if len(sys.argv) > 3 else "docs/images/napari-review.png")
TIMEOUT_S = 600
EDITED, MARKED = 25, 12  # Z planes
ERASE_POINTS, BRUSH = 4, 4  # brush dabs along a nucleus's edge, brush size in pixels


def wait_until(condition, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the run did not get there in time")
        QApplication.processEvents()
        time.sleep(0.05)


def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.05)


def edge_points(plane: np.ndarray, count: int) -> list[tuple[int, int]]:
    """`count` points a few pixels apart on the outer edge of the plane's largest nucleus."""
    objects, n = ndimage.label(plane > 0)
    if n == 0:
        raise SystemExit(f"no nucleus on Z plane {EDITED} to correct")
    largest = 1 + int(np.argmax(ndimage.sum_labels(objects > 0, objects, range(1, n + 1))))
    nucleus = objects == largest
    edge = np.argwhere(nucleus & ~ndimage.binary_erosion(nucleus))
    top = edge[edge[:, 0] == edge[:, 0].min()]  # the nucleus's top rows: an edge the brush bites into
    start = top[len(top) // 2]
    near = edge[np.argsort(np.abs(edge - start).sum(axis=1))]
    return [tuple(int(c) for c in p) for p in near[: count * 2 : 2]]


def main() -> None:
    volume = open_volume(IMAGE)
    scale = volume.voxel_size or (1.0, 1.0, 1.0)
    viewer = napari.Viewer(title="voxseg")
    viewer.window.resize(1600, 1000)
    data = volume[:]
    bright = float(np.percentile(data, 99.9))  # the nuclei, not the few brightest voxels, set the contrast
    image = viewer.add_image(data, name=stem(IMAGE), scale=scale, contrast_limits=(float(data.min()), bright))
    _, widget = viewer.window.add_plugin_dock_widget("voxseg", "Predict")
    widget.image_layer.setCurrentText(image.name)
    widget.set_values({"source": str(RUN), "instances": "watershed", "device": "cpu"})
    if not widget.start():
        raise SystemExit(widget.status.text())
    wait_until(lambda: not widget.running)
    review = widget.review_controls.review
    if review is None:
        raise SystemExit(widget.status.text())
    print(widget.status.text())
    mask, panel = review.layer, widget.review_controls.panel

    # the user's correction on plane 25: erase a bite at a nucleus's edge with the brush
    panel.go_to(Plane(0, EDITED))
    settle(5)
    viewer.layers.selection.active = mask
    mask.mode = "erase"
    mask.brush_size = BRUSH
    for y, x in edge_points(np.asarray(mask.data[EDITED]), ERASE_POINTS):
        mask.paint((EDITED, y, x), 0)
    # plane 12 is right as predicted: shown, then the Review box's button
    panel.go_to(Plane(0, MARKED))
    settle(5)
    panel.mark_button.click()
    panel.go_to(Plane(0, EDITED))
    print("reviewed:", [item.text() for item in map(panel.plane_list.item, range(panel.plane_list.count()))])

    for layer in viewer.layers:  # the mask over the image: the probability and labels layers hidden
        if layer.name.endswith(("probability", "labels")):
            layer.visible = False
    mask.opacity = 0.5
    review.overlay.visible = True
    widget.scroll.ensureWidgetVisible(panel)
    widget.scroll.horizontalScrollBar().setValue(0)
    settle()
    viewer.reset_view()
    settle(10)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"saved {OUT}")
    viewer.close()


if __name__ == "__main__":
    main()
