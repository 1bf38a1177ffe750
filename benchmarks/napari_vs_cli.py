"""Training speed inside napari against the command line, on the same data with the same settings.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/napari_vs_cli.py [--epochs 6]

The napari run is the screenshot script's (scripts/napari_screenshot.py): the demo nuclei opened as
layers, the Train widget docked, SegResNet on 32×64×64 patches, 16 per volume, batch 2, validation
(and its preview layers) every epoch, nothing clicked while it trains, napari's event loop running.
The command-line run then trains on the dataset the widget wrote from those layers. Prints one
JSON line: both runs' patches/s, their ratio, and the share of one core napari's GUI thread used
while training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "patch_size": "32,64,64",
    "samples_per_image": 16,
    "batch_size": 2,
    "val_interval": 1,
    "device": "cpu",
}


def _napari_run(results: Path, epochs: int, preview: bool) -> tuple[float, float, Path, Path]:
    """(patches/s, GUI thread's CPU share, images folder, labels folder) of a run from the widget."""
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="voxseg")
    viewer.window.resize(1600, 1000)
    viewer.open_sample("voxseg", "demo-nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("voxseg", "Train")
    widget.source.setCurrentText("layers")
    widget.image_layer.setCurrentText("nuclei")
    widget.label_layer.setCurrentText("nuclei labels")
    widget.set_values({"results": str(results), "epochs": epochs, **SETTINGS})
    widget.show_preview.setChecked(preview)
    started_cpu, started = time.thread_time(), time.perf_counter()
    if not widget.start():
        raise SystemExit(widget.status.text())
    app = QApplication.instance()
    check = QTimer()  # napari's own event loop runs while it trains; it ends when the run has
    check.timeout.connect(lambda: app.quit() if widget.worker is None else None)
    check.start(200)
    app.exec_()
    gui_share = (time.thread_time() - started_cpu) / (time.perf_counter() - started)
    summary = widget.last_end.summary
    data = sorted((results / "layer-data").iterdir())[-1]
    return summary["patches_per_second"], gui_share, data / "images", data / "labels"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--no-preview", action="store_true", help="without the validation preview layers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        results = Path(scratch)
        in_napari, gui_share, images, labels = _napari_run(results, args.epochs, not args.no_preview)
        voxseg = str(Path(sys.executable).with_name("voxseg"))
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()]
        command = [
            voxseg,
            "train",
            "--images",
            str(images),
            "--labels",
            str(labels),
            "--results",
            str(results),
        ]
        command += ["--run-name", "cli", "--epochs", str(args.epochs), *flags]
        subprocess.run(command, check=True, capture_output=True)
        cli = json.loads((results / "cli" / "summary.json").read_text())["patches_per_second"]
    print(
        json.dumps(
            {
                "benchmark": "napari_vs_cli",
                "epochs": args.epochs,
                "preview": not args.no_preview,
                "napari_patches_per_second": in_napari,
                "cli_patches_per_second": cli,
                "ratio": round(in_napari / cli, 3),
                "gui_thread_core_share": round(gui_share, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
