"""Screenshot of the Train widget docked in napari during a run, with its live plots (for the README).

Needs a display; on a headless machine use Xvfb (Debian: xvfb xauth libxcb-icccm4 libxcb-keysyms1
libxcb-image0 libxcb-render-util0 libxcb-cursor0 libxkbcommon-x11-0):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/napari_screenshot.py [OUT.png]

It opens the demo nuclei (File > Open Sample), trains SegResNet on those layers and saves the
window once the curves have eight validations, then stops the run (the weights are saved).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/napari-train.png")
TIMEOUT_S = 600
VALIDATIONS = 8


def wait_until(condition, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the run did not get there in time")
        QApplication.processEvents()
        time.sleep(0.05)


def main() -> None:
    viewer = napari.Viewer(title="voxseg")
    viewer.window.resize(1600, 1000)
    viewer.open_sample("voxseg", "demo-nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("voxseg", "Train")
    results = Path(tempfile.mkdtemp(prefix="voxseg-screenshot-"))
    widget.source.setCurrentText("layers")
    widget.image_layer.setCurrentText("nuclei")
    widget.label_layer.setCurrentText("nuclei labels")
    widget.set_values(
        {
            "results": str(results),
            "patch_size": "32,64,64",
            "samples_per_image": 16,
            "batch_size": 2,
            "epochs": 40,
            "val_interval": 1,
            "device": "cpu",
        }
    )
    widget.show_preview.setChecked(True)
    if not widget.start():
        raise SystemExit(widget.status.text())
    wait_until(lambda: widget.validations >= VALIDATIONS and len(widget.losses) >= VALIDATIONS)
    for name in ("nuclei labels", "validation image", "validation labels"):  # the nuclei + prediction
        viewer.layers[name].visible = False
    widget.scroll.ensureWidgetVisible(widget.log_view)
    widget.scroll.horizontalScrollBar().setValue(0)
    for _ in range(20):  # let the dock layout and the canvas settle
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.dims.set_point(0, 28)
    viewer.reset_view()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"saved {OUT} (validation Dice so far: {[round(d, 3) for _, d in widget.dices]})")
    widget.stop()
    wait_until(lambda: not widget.running)
    print(widget.status.text())
    print(f"Stop pressed -> weights saved and button back to Start in {widget.stop_to_saved_seconds:.2f} s")
    viewer.close()


if __name__ == "__main__":
    main()
