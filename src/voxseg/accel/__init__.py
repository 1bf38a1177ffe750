"""Every hand-written fast path, and every process-wide speed setting, behind one entry.

`accelerated(device, fast_kernels, compile)` is entered once per run by the engine. For the run it
keeps freed memory in the process (`heap`), turns cuDNN autotuning on and lets `torch.compile` fall
back to eager (`cuda`), and restores each of those settings when the run ends, whatever ends it.
Its `Acceleration` tunes the model: channels-last and `torch.compile` on CUDA, and on the CPU in
float32 voxseg's own kernels — convolutions on oneDNN (`onednn`) and separable trilinear upsampling
(`upsample`) — unless `fast_kernels` is off (`--no-fast-kernels`), which leaves PyTorch's kernels.
`prefetch` prepares batches ahead in a background thread. On the CPU, `threads` sizes PyTorch's
thread team to the cores other processes leave free (`Acceleration.between_steps`), or to
`--threads`. How much each gains: docs/performance.md.
Under CPU bfloat16, `bf16_guard` runs convolutions whose input is smaller than their kernel in
float32, around a PyTorch bug (a correctness guard, on whatever the switch says).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from voxseg.accel.bf16_guard import guard_small_bf16_convolutions
from voxseg.accel.cuda import cudnn_autotuning, eager_fallback, uses_channels_last
from voxseg.accel.heap import keep_freed_memory, release_fragments
from voxseg.accel.onednn import use_onednn_convolutions
from voxseg.accel.threads import ThreadGovernor, compute_threads
from voxseg.accel.upsample import use_separable_upsampling

__all__ = ["Acceleration", "accelerated"]

log = logging.getLogger("voxseg")


@dataclass(frozen=True)
class Acceleration:
    """What a run may apply to its model and inputs on `device`."""

    device: torch.device
    fast_kernels: bool
    compile: bool
    governor: ThreadGovernor | None = None

    def between_steps(self) -> None:
        """Called between training steps (and prediction batches): follow the machine's load."""
        if self.governor is not None:
            self.governor.tick()

    @staticmethod
    def after_validation() -> None:
        """Called after each validation: the steps keep their freed memory, not what fragments it."""
        release_fragments()

    def tune(self, model: nn.Module, mixed_precision: bool) -> nn.Module:
        """Make `model` fast here (same weights, same state-dict keys); return what runs the steps:
        the model itself, or its compiled form."""
        if uses_channels_last(self.device):
            model.to(memory_format=torch.channels_last_3d)
        if self.device.type == "cpu" and mixed_precision:
            guard_small_bf16_convolutions(model)  # a correctness guard, whatever the switch says
        if self.device.type == "cpu" and not mixed_precision:  # under autocast bfloat16 runs on oneDNN
            if not self.fast_kernels:
                log.info("cpu: PyTorch's own kernels (--no-fast-kernels)")
            else:
                convolutions, upsamplings = use_onednn_convolutions(model), use_separable_upsampling(model)
                log.info(
                    "cpu: %d convolution(s) on oneDNN, forward and backward; %d trilinear 2x upsampling(s) "
                    "as separable passes (--no-fast-kernels turns both off)",
                    convolutions,
                    upsamplings,
                )
        if self.device.type == "cuda":
            log.info("cuda: cuDNN autotuning on (the first step times each kernel), channels-last 3D layout")
            if self.compile:
                log.info("cuda: torch.compile (the first steps compile; --no-compile turns it off)")
                return torch.compile(model)  # type: ignore[return-value]
        return model

    def layout(self, images: torch.Tensor) -> torch.Tensor:
        """Inputs in the model's memory layout."""
        return (
            images.contiguous(memory_format=torch.channels_last_3d)
            if uses_channels_last(self.device)
            else images
        )


@contextlib.contextmanager
def accelerated(
    device: torch.device, fast_kernels: bool = True, compile: bool = True, threads: int | None = None
) -> Iterator[Acceleration]:
    """Process-wide speed settings for the duration of a run, each restored when the block ends.
    `threads`: PyTorch's CPU threads; None follows the load on the CPU and leaves them on a GPU."""
    with contextlib.ExitStack() as settings:
        settings.enter_context(keep_freed_memory())
        governor = None
        if threads is not None or device.type == "cpu":
            governor = settings.enter_context(compute_threads(threads))
        if device.type == "cuda":
            settings.enter_context(cudnn_autotuning())
            if compile:
                settings.enter_context(eager_fallback())
        yield Acceleration(device, fast_kernels, compile and device.type == "cuda", governor)
