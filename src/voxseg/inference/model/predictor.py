"""`voxseg.Predictor`: a trained model loaded once, applied to arrays in memory.

`voxseg predict` (files of any size, written plane by plane) and a script that segments hundreds of
arrays share this object: it reads the run folder or weights file once, holds the network on its
device, tuned for it, and applies it window by window with the run's window, normalisation and
threshold. Nothing of the array path touches the disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from voxseg.config import PredictConfig
from voxseg.errors import DataError

if TYPE_CHECKING:
    from voxseg.data.normalise import Normalisation
    from voxseg.inference.model.sliding import Predict, RingState

log = logging.getLogger("voxseg")


@dataclass(frozen=True)
class Segmentation:
    """What one array gives: the foreground probability, the mask (probability ≥ the threshold, minus
    the debris the instance filters dropped), when asked for one label per object, and the predicted
    distance to each nucleus's boundary when the network learned it (`data.distance`)."""

    probability: np.ndarray  # float32, Z×Y×X
    mask: np.ndarray  # uint8, 0/1
    labels: np.ndarray | None  # uint32 object ids (0: background); None without instances
    threshold: float
    distance: np.ndarray | None = None  # float32, Z×Y×X, 0 at a boundary and 1 at a centre


class Predictor:
    """A run folder (or a weights file with `model=`) ready to segment arrays.

    `options` are `voxseg predict`'s (`threshold`, `tta`, `overlap`, `batch_size`, `instances`,
    `min_size`, `device`, `threads`, ...); `input` and `output` belong to `predict_files`.

        predictor = voxseg.Predictor("results/SegResNetDS_20261202-101010", instances="watershed")
        for volume in volumes:
            labels = predictor(volume).labels
    """

    def __init__(self, source: str | Path, **options: Any) -> None:
        config = PredictConfig.from_dict({"source": source, **options})
        self.config = config.resolved(optional=("input", "output"))
        self._load()

    @classmethod
    def of(cls, config: PredictConfig) -> Predictor:
        """From a resolved `voxseg predict` configuration (the command line's)."""
        predictor = cls.__new__(cls)
        predictor.config = config
        predictor._load()
        return predictor

    def _load(self) -> None:
        from voxseg.accel import accelerated
        from voxseg.inference.model.instances import resolve_method
        from voxseg.inference.model.trained import load_trained_model
        from voxseg.runtime.hardware import resolve_device
        from voxseg.runtime.precision import resolve_precision

        config = self.config
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.trained = load_trained_model(config)
        if config.instances != "none":  # `auto`: the method the run was trained for
            method = resolve_method(config.instances, self.trained.outputs)
            if method != config.instances:
                log.info("instances: %s (%s: %s)", method, config.instances, ", ".join(self.trained.outputs))
            self.config = config = dataclasses.replace(config, instances=method)
        with accelerated(self.device, config.fast_kernels, False, config.threads) as acceleration:
            self._runner = acceleration.tune(
                self.trained.model.to(self.device), mixed_precision=self.precision.dtype is not None
            )
        log.info(
            "threshold %.3f (%s), overlap %g, %s, precision %s on %s",
            self.trained.threshold,
            self.trained.threshold_from,
            config.overlap,
            "test-time augmentation (8 flips)" if config.tta else "no test-time augmentation",
            self.precision.name,
            self.device,
        )

    @property
    def threshold(self) -> float:
        return self.trained.threshold

    @contextlib.contextmanager
    def windows(self) -> Iterator[Predict]:
        """(B, 1, Z, Y, X) normalised windows -> probabilities, with the process-wide speed settings
        (threads that follow the machine's load, kernels) held only while the block runs."""
        from voxseg.accel import accelerated
        from voxseg.inference.model.sliding import window_predictor
        from voxseg.runtime.precision import autocast

        config = self.config
        with accelerated(self.device, config.fast_kernels, False, config.threads) as acceleration:
            predict = window_predictor(
                self._runner, self.device, lambda: autocast(self.device, self.precision), config.tta
            )

            def between_batches(tiles: torch.Tensor) -> torch.Tensor:
                acceleration.between_steps()
                return predict(tiles)

            yield between_batches

    def probabilities(
        self,
        volume: Any,
        spacing: tuple[float, float, float] | None,
        predict: Predict,
        report: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
        region: tuple[int, int] | None = None,
        normalisation: Normalisation | None = None,
        computed: Mapping[tuple[int, int], np.ndarray] | None = None,
        resume_from: RingState | None = None,
        on_row: Callable[[RingState], None] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(z, planes) of the blended probabilities of `volume` (an array or a volume file, read window
        by window), in order, planes (C, n, Y, X) of the network's outputs (`trained.outputs`): what
        `voxseg predict` streams into its writers. `report`,
        `stop`, `region` (a Z range), `computed`, `resume_from` and `on_row` are
        `streamed_probabilities`'; `normalisation` is the volume's (computed here unless given: ranks
        sharing a volume share one)."""
        from voxseg.data.normalise import Normalisation
        from voxseg.inference.model.sliding import assembled, streamed_probabilities

        config, trained = self.config, self.trained
        normalisation = normalisation or Normalisation.of(volume)

        def blended(
            image: Any, normalisation: Normalisation, region=None
        ) -> Iterator[tuple[int, np.ndarray]]:
            return streamed_probabilities(
                image,
                normalisation,
                trained.window,
                config.overlap,
                predict,
                config.batch_size,
                report,
                stop,
                region,
                computed,
                resume_from,
                on_row,
            )

        if trained.isotropic is None:
            yield from blended(volume, normalisation, region)
            return
        from voxseg.data.resample import back_to, to_isotropic

        if spacing is None:
            raise DataError(
                f"the run trained on isotropic {trained.isotropic:g} µm voxels (--resample isotropic): "
                "give the volume's voxel size (spacing=Z,Y,X)"
            )
        if region not in (None, (0, volume.shape[0])):
            raise ValueError("a run trained on isotropic voxels predicts whole volumes only")
        image = to_isotropic(normalisation(np.asarray(volume[:])), spacing, trained.isotropic)
        planes = blended(image, Normalisation.already_done(image))
        yield 0, np.stack([back_to(output, volume.shape) for output in assembled(planes, image.shape)])

    def object_radius(self, spacing: tuple[float, float, float] | None) -> float | None:
        """The run's typical object radius in the units the watershed measures this volume in: µm when
        both voxel sizes are known, voxels when neither is (else unknown: the watershed's defaults)."""
        trained = self.trained
        if trained.object_radius is None or (trained.voxel_size is None) != (spacing is None):
            return None
        return trained.object_radius

    def __call__(
        self,
        image: Any,
        spacing: tuple[float, float, float] | None = None,
        progress: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Segmentation:
        """Segment a Z×Y×X array (numpy, or anything indexed like one: a Zarr or dask array is read
        window by window); `spacing` is its voxel size in µm where known (default the `spacing` option);
        `progress(windows done, windows in all)` is called after each batch of windows; once `stop` is
        set, `voxseg.errors.Stopped` is raised before the next batch."""
        from voxseg.data.checks import check_image
        from voxseg.inference.model.sliding import assembled

        if getattr(image, "ndim", None) != 3 or 0 in image.shape:
            shape = getattr(image, "shape", None)
            hint = "; pass one channel, e.g. image[:, 0] of a Z×C×Y×X array" if len(shape or ()) == 4 else ""
            raise DataError(f"need a non-empty Z×Y×X array, got shape {shape}{hint}")
        if isinstance(image, np.ndarray):
            check_image("the array", image)
        spacing = spacing or self.config.spacing
        with self.windows() as predict:
            outputs = assembled(self.probabilities(image, spacing, predict, progress, stop), image.shape)
        probability, distance = outputs[0], (outputs[1] if len(outputs) > 1 else None)  # OUTPUT_NAMES
        mask = (probability >= self.threshold).astype(np.uint8)
        labels = None
        if self.config.instances != "none":
            labels = self._instances(mask, probability, spacing, distance)
            mask = (labels > 0).astype(np.uint8)
        return Segmentation(probability, mask, labels, self.threshold, distance)

    def _instances(
        self, mask: np.ndarray, probability: np.ndarray, spacing, distance: np.ndarray | None
    ) -> np.ndarray:
        """Instance labels of the whole mask, filtered as `voxseg predict` filters them."""
        from voxseg.inference.job.block_instances import on_the_edge
        from voxseg.inference.model.instances import drop_debris, label_instances, watershed_scale

        config = self.config
        h, smoothing = watershed_scale(self.object_radius(spacing))
        labels = label_instances(
            mask,
            config.instances,
            probability=probability,
            spacing=spacing or (1.0, 1.0, 1.0),
            min_size=config.min_size,
            max_size=config.max_size,
            h=h,
            smoothing=smoothing,
            distance=distance,
        )
        if config.min_relative_size > 0:
            sizes = np.bincount(labels.ravel())
            cut = np.zeros(sizes.size, dtype=bool)
            cut[on_the_edge(labels, first=True, last=True)] = True
            labels = drop_debris(sizes, config.min_relative_size, cut)[labels]
        return labels.astype(np.uint32, copy=False)
