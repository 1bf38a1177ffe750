"""napari-cellseg3d 0.2.4's own WNet3D, trained headless on images alone, beside voxseg's WNet3D.

Two subcommands, each for its own interpreter:

    QT_QPA_PLATFORM=offscreen /tmp/voxseg-peer/venv/bin/python benchmarks/peer_wnet.py train \\
        --images DIR --epochs E --out DIR [--patch 64 | --patch 32,64,64] [--samples P] [--batch 2]
    .venv/bin/python benchmarks/peer_wnet.py score --masks OUT/masks [OUT/masks_argmax ...] \\
        --labels DIR

`train` (the peer's Python: napari-cellseg3d, torch, MONAI, no voxseg) builds a
`WNetTrainingWorkerConfig` in code and runs `WNetTrainingWorker.train()` (worker_training.py) to the
end in this thread, no viewer and no Qt event loop (as /work/shared/peer/run_baseline.py does for the
supervised worker); it then predicts every image with the plugin's own `InferenceWorker`
(worker_inference.py) on the trained weights. It prints one JSON line (also in OUT/summary.json):

- `train_seconds`: wall time of `train()` (data set-up, model, all epochs, checkpoints);
  `epoch_seconds`: from each "Epoch i of N" log line to the next (the last to "Training finished");
  `patches_per_second`: patches forward and backward (images x --samples x epochs) over the summed
  epoch seconds; `steps`, `step_seconds_median`: batches, and time between two (loading included).
  The plugin's patches come from MONAI's PatchDataset, an IterableDataset that each DataLoader
  worker shards by image (image i to worker i % workers), so a batch never mixes two workers' images and
  each worker ends on a partial batch: 2 images, 1 patch each, batch 2 -> 2 steps of 1 patch, and
  2 of the 4 workers idle (shuffle is refused for it, so the worker falls back to no shuffle).
- memory, sampled every 0.1 s by a psutil thread during training, and separately during inference:
  peak RSS of this process, and peak of this process plus all its children (DataLoader workers;
  a sum of RSS, so pages shared by fork are counted in each); plus getrusage's ru_maxrss of this
  process (whole life, imports included) and of its largest finished child.
- the settings used, the plugin defaults they come from, the losses per epoch, the foreground class
  chosen per image, inference seconds and whether the CRF ran.

What it writes under OUT: peer_training/ (the worker's wnet.pth, wnet_checkpoint.pth, log.txt),
peer_inference/ (the plugin's own 2-channel outputs and CRF outputs, its file names), and, named as
the images: masks/ (uint8, foreground channel > 0.6), masks_argmax/ (uint8, foreground channel is the
larger), probabilities/ (float32, the foreground channel) and, when the CRF ran, masks_crf/ (uint8,
argmax of the CRF's class probabilities).

Settings (napari-cellseg3d's own unless said; config.py's WNetTrainingWorkerConfig and the Train
widget, plugin_model_training.py): 2 classes, Adam lr 2e-5 (the widget sets 2 x 1e-5 for WNet3D),
weight decay 0.01, dropout 0.65, soft N-cut with intensity sigma 1, spatial sigma 4, radius 2 (the
widget never passes its sigma/radius boxes to the config, so these are always the dataclass's),
MSE reconstruction, loss 0.5 N-cut + 0.5 reconstruction, augmentation on (flips, 90 degree
rotations), deterministic seed 34936339, DataLoader workers 4 (never set by the widget), no
validation (no labels are given). Changed to match voxseg: patches on (the widget's default is whole
images padded to powers of two), patch 64 (the widget's default too), batch 2 (widget: 1),
--samples patches per image per epoch (widget: 2), epochs (widget: 50), torch threads 2. Each
patch is min-max scaled to [0, 100] by the worker (utils.remap_image); the N-cut sees that scale.
`--patch` is given in the images' Z,Y,X order; MONAI's ITK reader loads TIFFs as X,Y,Z, so it is
passed reversed. The voxel size in the ImageJ metadata is not read by the plugin.

Inference is the plugin's: `InferenceWorker` with model WNet3D (`WNet_`: the encoder only, loaded
from wnet.pth without the decoder keys), sliding window 64^3 (forced for WNet3D by the Inference
widget), overlap 0.25, Gaussian blending with sigma_scale 0.01, each window clipped to its 1 and 99
percent quantiles then min-max scaled to [0, 100]. `WNet_` builds its encoder with softmax=False, so
the output is NOT a softmax: each window's two-channel logits are min-max remapped together to
[0, 1] (RemapTensor). The argmax over classes is the same as the softmax's (one affine map per
window), hence masks_argmax/ is what a softmax > 0.5 would give; the "probabilities" written are the
plugin's remapped foreground channel, and masks/ applies the threshold the Inference widget sets
for WNet3D (`WNet_.default_threshold` = 0.6), here after blending rather than per window.

Foreground class: napari-cellseg3d has no rule at inference (it returns every channel and the user
picks one in the viewer; only training-time validation with labels picks the channel of best Dice,
utils.seek_best_dice_coeff_channel, which would use the labels). So, as asked, the class whose
voxels (argmax of the output) are brightest on average in the image is the foreground, per image
(the output-weighted mean intensity when a class holds no voxel).

CRF: if pydensecrf imports (pydensecrf2 is in the peer venv), the worker runs crf.py's
`crf_with_config` with its CRFConfig defaults (sa 10, sb 5, sg 1, w1 10, w2 5, 5 iterations) on the
raw image (not normalised) and its 2-channel output, as the plugin does with "Use CRF" ticked
(pydensecrf's bilateral features, built with chdim=-1 on a 1 x Z x Y x X image, leave X unscaled
by sa: kept as is).

Other departures from a plain GUI run, none of them an edit of the installed plugin: the training
worker turns MONAI's metadata tracking off for the whole process and leaves it off, which makes the
inference loader fail ("Metadata not available"), so it is turned back on between the two. No shim of
ReduceLROnPlateau is needed: the WNet worker has no scheduler. Left as the plugin does it: the
worker calls `loss.backward(loss)`, so gradients are scaled by the loss itself; the reconstruction
MSE is on the [0, 100] scale (hundreds, against an N-cut below 2); training orients patches with
Orientationd("PLI") on tensors without an affine (swaps X and Y, flips all axes), inference does not.
`--weights` skips training and predicts with an earlier wnet.pth.

`score` (voxseg's Python) scores each masks folder against labels named as the images (or
`<stem>_label<ext>`, the synthetic set's naming): pooled Dice and IoU over every voxel of the set
(`self_supervised.scores`) and the mean over volumes of instance F1 at IoU 0.5
(`voxseg.inference.scoring.metrics.match_instances`). The peer gives no instances: its objects are the
connected components of each mask (scipy.ndimage.label, faces only); binary labels are split the
same way. One JSON line per masks folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SUFFIXES = (".tif", ".tiff")


def _images(folder: Path) -> list[Path]:
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not found:
        sys.exit(f"no .tif/.tiff image in {folder}")
    return found


def _patch(text: str) -> list[int]:
    """'64' -> [64, 64, 64]; '32,64,64' (Z,Y,X) -> [32, 64, 64]."""
    sizes = [int(v) for v in text.split(",")]
    if len(sizes) == 1:
        sizes *= 3
    if len(sizes) != 3 or min(sizes) < 8:
        raise argparse.ArgumentTypeError("--patch: one size or three (Z,Y,X), each at least 8")
    return sizes


class MemSampler(threading.Thread):
    """Peak RSS of this process, and of it plus all its children, sampled every 0.1 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_main = 0
        self.peak_total = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._halt.is_set():
            try:
                main = me.memory_info().rss
                total = main
                for child in me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += child.memory_info().rss
                self.peak_main = max(self.peak_main, main)
                self.peak_total = max(self.peak_total, total)
            except psutil.Error:
                pass
            self._halt.wait(0.1)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join()
        return {
            "peak_rss_main_mb": round(self.peak_main / 2**20, 1),
            "peak_rss_main_plus_children_mb": round(self.peak_total / 2**20, 1),
        }


def _worker_train(args: argparse.Namespace, images: list[Path], folder: Path) -> dict[str, Any]:
    """Run WNetTrainingWorker.train() to the end; timings, memory, losses and the config used."""
    import dataclasses

    from napari_cellseg3d import config
    from napari_cellseg3d.code_models.worker_training import WNetTrainingWorker

    defaults = config.WNetTrainingWorkerConfig()
    cfg = config.WNetTrainingWorkerConfig(
        device="cpu",
        max_epochs=args.epochs,
        learning_rate=defaults.learning_rate if args.lr is None else args.lr,
        batch_size=args.batch,
        deterministic_config=config.DeterministicConfig(enabled=True, seed=args.seed),
        weights_info=config.WeightsInfo(use_pretrained=False, use_custom=False),
        results_path_folder=str(folder),
        sampling=True,
        num_samples=args.samples,
        sample_size=list(reversed(args.patch)),  # Z,Y,X -> the X,Y,Z of MONAI's ITK reader
        do_augmentation=not args.no_augment,
        num_workers=args.num_workers,
        train_data_dict=[{"image": str(p)} for p in images],
        eval_volume_dict=None,
    )
    worker = WNetTrainingWorker(cfg)
    log: list[str] = []
    marks: dict[str, float] = {}
    errors: list[str] = []

    def on_log(text: object) -> None:
        now = time.perf_counter()
        line = str(text)
        log.append(f"[{now - T0:8.2f}s] {line}")
        if line.startswith("Epoch ") and " of " in line:
            marks[f"epoch{line.split()[1]}"] = now
        elif line.startswith("Training finished"):
            marks["finished"] = now

    worker.log_signal.connect(on_log)
    worker.warn_signal.connect(lambda w: log.append(f"WARN {w}"))
    worker.error_signal.connect(lambda e, m: errors.append(f"{m}: {type(e).__name__}: {e}"))

    sampler = MemSampler()
    sampler.start()
    started = last = time.perf_counter()
    steps: list[float] = []
    for report in worker.train():  # raises if training fails
        now = time.perf_counter()
        if not report.show_plot:
            steps.append(now - last)
        last = now
    train_seconds = time.perf_counter() - started
    memory = sampler.stop()
    (folder / "log.txt").write_text("\n".join(log) + "\n")
    if errors or "finished" not in marks:
        sys.exit(f"training failed: {errors or 'no Training finished line'} (see {folder / 'log.txt'})")

    starts = [marks[f"epoch{e}"] for e in range(1, args.epochs + 1)]
    epoch_seconds = [b - a for a, b in zip(starts, [*starts[1:], marks["finished"]], strict=True)]
    patches = len(images) * args.samples * args.epochs
    used = dataclasses.asdict(cfg)
    used.pop("train_data_dict")
    return {
        "train_seconds": round(train_seconds, 2),
        "epoch_seconds": [round(s, 2) for s in epoch_seconds],
        "seconds_per_epoch": round(float(np.mean(epoch_seconds)), 2),
        "patches": patches,
        "patches_per_second": round(patches / sum(epoch_seconds), 4),
        "steps": len(steps),
        "step_seconds_median": round(float(np.median(steps)), 3) if steps else None,
        "train_memory": memory,
        "losses": {
            "ncut": [round(v, 5) for v in worker.ncuts_losses],
            "reconstruction": [round(v, 5) for v in worker.rec_losses],
            "weighted_sum": [round(v, 5) for v in worker.total_losses],
        },
        "config": json.loads(json.dumps(used, default=str)),
    }


def _foreground(image: np.ndarray, output: np.ndarray) -> tuple[int, list[float]]:
    """The class whose voxels (argmax of `output`, K x image) are brightest on average in `image`."""
    winner = output.argmax(0)
    means = []
    for k in range(output.shape[0]):
        inside = winner == k
        if inside.any():
            means.append(float(image[inside].mean()))
        else:  # no voxel is k's: its output-weighted mean intensity
            means.append(float((output[k] * image).sum() / max(float(output[k].sum()), 1e-12)))
    return int(np.argmax(means)), [round(m, 3) for m in means]


def _predict(args: argparse.Namespace, images: list[Path], weights: Path, out: Path) -> dict[str, Any]:
    """The plugin's InferenceWorker on every image; masks, probabilities and CRF masks under `out`."""
    from monai.data.meta_obj import set_track_meta
    from napari_cellseg3d import config
    from napari_cellseg3d.code_models.crf import CRF_INSTALLED
    from napari_cellseg3d.code_models.models.model_WNet import WNet_
    from napari_cellseg3d.code_models.worker_inference import InferenceWorker

    # The training worker turned MONAI's metadata tracking off for the whole process and never turns
    # it back on; the inference loader's EnsureChannelFirstd needs it (MONAI's default, as in a fresh
    # napari session), else every image fails with "Metadata not available".
    set_track_meta(True)
    threshold = WNet_.default_threshold if args.threshold is None else args.threshold
    cfg = config.InferenceWorkerConfig(
        device="cpu",
        model_info=config.ModelInfo(name="WNet3D", num_classes=2),
        weights_config=config.WeightsInfo(path=str(weights), use_custom=True, use_pretrained=False),
        results_path=str(out / "peer_inference"),
        filetype=".tif",
        post_process_config=config.PostProcessConfig(),  # no thresholding, no instances
        sliding_window_config=config.SlidingWindowConfig(window_size=args.window, window_overlap=0.25),
        use_crf=CRF_INSTALLED and not args.no_crf,
        crf_config=config.CRFConfig(),
        images_filepaths=[str(p) for p in images],
    )
    worker = InferenceWorker(cfg)
    errors: list[str] = []
    crf_log: list[str] = []
    worker.error_signal.connect(lambda e, m: errors.append(f"{m}: {type(e).__name__}: {e}"))
    worker.log_signal.connect(lambda t: crf_log.append(str(t)) if "CRF" in str(t) else None)

    kinds = ["masks", "masks_argmax", "probabilities"] + (["masks_crf"] if cfg.use_crf else [])
    for kind in kinds:
        (out / kind).mkdir(parents=True, exist_ok=True)
    sampler = MemSampler()
    sampler.start()
    started = time.perf_counter()
    per_image: dict[str, Any] = {}
    crf_done = 0
    last = started
    for result in worker.inference():
        if result is None or result.semantic_segmentation is None:
            break
        took = time.perf_counter() - last
        path = images[result.image_id - 1]
        image = tifffile.imread(path).astype(np.float32)
        output = np.asarray(result.semantic_segmentation, dtype=np.float32)
        if output.shape != (2, *image.shape):
            sys.exit(f"{path.name}: output {output.shape} is not 2 x {image.shape}")
        fg, means = _foreground(image, output)
        tifffile.imwrite(out / "probabilities" / path.name, output[fg])
        tifffile.imwrite(out / "masks" / path.name, (output[fg] > threshold).astype(np.uint8))
        tifffile.imwrite(out / "masks_argmax" / path.name, (output.argmax(0) == fg).astype(np.uint8))
        record: dict[str, Any] = {"foreground_class": fg, "mean_intensity_per_class": means}
        record["seconds"] = round(took, 2)  # network, blending and CRF of this image
        if result.crf_results is not None:
            crf = np.asarray(result.crf_results)
            tifffile.imwrite(out / "masks_crf" / path.name, (crf.argmax(0) == fg).astype(np.uint8))
            crf_done += 1
        record["foreground_fraction"] = round(float((output[fg] > threshold).mean()), 4)
        per_image[path.name] = record
        last = time.perf_counter()
    seconds = time.perf_counter() - started
    memory = sampler.stop()
    if errors or len(per_image) != len(images):
        sys.exit(f"inference failed: {errors or f'{len(per_image)} of {len(images)} images predicted'}")
    return {
        "inference_seconds": round(seconds, 2),
        "inference_memory": memory,
        "threshold": threshold,
        "window": args.window,
        "crf": {
            "importable": CRF_INSTALLED,
            "asked": cfg.use_crf,
            "volumes_refined": crf_done,
            "log": crf_log[-4:],
        },
        "per_image": per_image,
    }


def train(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    images = _images(args.images)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.out / "peer_training"
    folder.mkdir(exist_ok=True)
    import napari_cellseg3d

    if args.weights is None:
        trained = _worker_train(args, images, folder)
        weights = folder / "wnet.pth"
    else:  # predict only, with weights of an earlier run
        trained, weights = {"weights": str(args.weights)}, args.weights
    predicted = _predict(args, images, weights, args.out)
    summary = {
        "benchmark": "peer_wnet",
        "peer": f"napari-cellseg3d {napari_cellseg3d.__version__}",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "images": [p.name for p in images],
        "epochs": args.epochs,
        "patch_zyx": args.patch,
        "samples_per_image": args.samples,
        "batch": args.batch,
        "num_workers": args.num_workers,
        **trained,
        **predicted,
        "ru_maxrss_self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ru_maxrss_largest_child_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "out": str(args.out),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)


def _label_for(name: str, labels: Path) -> Path:
    path = labels / name
    if path.exists():
        return path
    stem, suffix = Path(name).stem, Path(name).suffix
    path = labels / f"{stem}_label{suffix}"
    if not path.exists():
        sys.exit(f"no label for {name} in {labels}")
    return path


def score(args: argparse.Namespace) -> None:
    from scipy import ndimage

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from self_supervised import scores

    for folder in args.masks:
        masks, instances, truths, volumes = [], [], [], {}
        for path in _images(folder):
            mask = tifffile.imread(path) > 0
            truth = tifffile.imread(_label_for(path.name, args.labels))
            if mask.shape != truth.shape:
                sys.exit(f"{path.name}: mask {mask.shape} but label {truth.shape}")
            if truth.max() <= 1:  # binary labels: their connected components are the objects
                truth = ndimage.label(truth > 0)[0]
            masks.append(mask)
            instances.append(ndimage.label(mask)[0])
            truths.append(truth)
            volumes[path.name] = scores(masks[-1:], instances[-1:], truths[-1:])
        print(
            json.dumps(
                {
                    "benchmark": "peer_wnet",
                    "masks": str(folder),
                    "labels": str(args.labels),
                    **scores(masks, instances, truths),
                    "instances": "connected components of each mask (scipy.ndimage.label)",
                    "volumes": volumes,
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and predict with napari-cellseg3d (the peer's Python)")
    t.add_argument("--images", type=Path, required=True, help="folder of 3D TIFF volumes (no labels)")
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--patch", type=_patch, default=[64, 64, 64], help="64 or Z,Y,X as 32,64,64")
    t.add_argument("--samples", type=int, default=2, help="patches per image per epoch (widget: 2)")
    t.add_argument("--batch", type=int, default=2, help="voxseg's 2 (widget: 1)")
    t.add_argument("--lr", type=float, default=None, help="default: the plugin's 2e-5")
    t.add_argument("--seed", type=int, default=34936339, help="the plugin's default seed")
    t.add_argument("--num-workers", type=int, default=4, help="DataLoader workers (plugin: 4)")
    t.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    t.add_argument("--no-augment", action="store_true", help="the plugin augments by default")
    t.add_argument("--window", type=int, default=64, help="inference window (plugin: 64 for WNet3D)")
    t.add_argument("--threshold", type=float, default=None, help="masks/ (default WNet_'s 0.6)")
    t.add_argument("--no-crf", action="store_true", help="skip the CRF even if pydensecrf imports")
    t.add_argument("--weights", type=Path, help="skip training: predict with this wnet.pth")
    s = sub.add_parser("score", help="Dice, IoU and F1@0.5 of masks against labels (voxseg's Python)")
    s.add_argument("--masks", type=Path, nargs="+", required=True, help="one or more masks folders")
    s.add_argument("--labels", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "train":
        train(args)
    else:
        score(args)


T0 = time.perf_counter()

if __name__ == "__main__":
    main()
