"""CUDA settings that are process-wide in PyTorch, each set for a block and restored after it:
napari hosts other plugins in the same process, and they must find the settings they had."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch


class _HeldSetting:
    """A process-wide setting held at one value while any run needs it. Runs may overlap (the napari
    worker and a console `voxseg.train()`): the value from before the first comes back after the last."""

    def __init__(self, read: Callable[[], Any], write: Callable[[Any], None]) -> None:
        self.read, self.write = read, write
        self.lock = threading.Lock()
        self.holders = 0
        self.before: Any = None

    @contextlib.contextmanager
    def held(self, value: Any) -> Iterator[None]:
        with self.lock:
            if self.holders == 0:
                self.before = self.read()
            self.holders += 1
            self.write(value)
        try:
            yield
        finally:
            with self.lock:
                self.holders -= 1
                if self.holders == 0:
                    self.write(self.before)


def _set_cudnn_benchmark(value: bool) -> None:
    torch.backends.cudnn.benchmark = value


def _dynamo_config() -> Any:
    from torch import _dynamo

    return _dynamo.config


def _set_suppress_errors(value: bool) -> None:
    _dynamo_config().suppress_errors = value


_AUTOTUNING = _HeldSetting(lambda: torch.backends.cudnn.benchmark, _set_cudnn_benchmark)
_EAGER_FALLBACK = _HeldSetting(lambda: _dynamo_config().suppress_errors, _set_suppress_errors)


def cudnn_autotuning() -> contextlib.AbstractContextManager[None]:
    """cuDNN times every candidate kernel for each new shape, for the run.

    Training's patch shape is fixed, so timing once pays: VNet float32 on an H200, 0.21 -> 0.18 s a
    step, for a first step of 37 s.
    """
    return _AUTOTUNING.held(True)


@contextlib.contextmanager
def heuristic_kernels() -> Iterator[None]:
    """cuDNN picks kernels by its heuristics for the block, then the setting is as it was.

    Inference shapes are not fixed (the last sliding-window batch is smaller, volumes differ): with
    autotuning, each new shape cost 9-12 s of timing on an H200 against 0.1 s without.
    """
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def eager_fallback() -> contextlib.AbstractContextManager[None]:
    """A graph `torch.compile` cannot handle runs eagerly instead of failing the run."""
    return _EAGER_FALLBACK.held(True)


def uses_channels_last(device: torch.device) -> bool:
    """Channels-last 3D layout for the model and its inputs: on CUDA (cuDNN's fast kernels want it);
    on the CPU it made a SegResNet step 2× slower."""
    return device.type == "cuda"
