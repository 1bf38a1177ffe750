"""Speed per device: the arithmetic precision, and the kernels and layouts each device runs fastest.

`--precision auto` chooses what the hardware does natively — bfloat16 autocast on CUDA GPUs that
support it (float16 with loss scaling on older ones) and on CPUs with native bfloat16 (AVX512-BF16 /
AMX), float32 elsewhere: emulated bfloat16 was 15× slower than float32 on an AVX2 CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from voxseg.errors import ConfigError
from voxseg.models.onednn import use_onednn_convolutions
from voxseg.models.upsample import use_separable_upsampling

log = logging.getLogger("voxseg")

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """`name` is fp32, bf16 or fp16; `reason` says why, and `warning` what to know, for the run's log."""

    name: str
    reason: str
    warning: str | None = None

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.name)

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"  # float16's narrow range needs loss scaling; bfloat16's does not


def cpu_has_native_bf16() -> bool:
    """oneDNN's own test for AVX512-BF16 / AMX (what makes CPU bfloat16 fast rather than emulated)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """The precision to train with on `device`; an impossible explicit request is a ConfigError."""
    kind = device.type
    if requested == "auto":
        if kind == "cuda":
            if torch.cuda.is_bf16_supported():
                return Precision("bf16", "auto: this GPU computes bfloat16 natively")
            return Precision("fp16", "auto: float16 with loss scaling (this GPU has no bfloat16)")
        if kind == "cpu" and cpu_has_native_bf16():
            return Precision("bf16", "auto: this CPU computes bfloat16 natively (AVX512-BF16/AMX)")
        where = "this CPU has no native bfloat16" if kind == "cpu" else f"{kind} trains in float32"
        return Precision("fp32", f"auto: {where}")
    if requested == "fp16" and kind == "cpu":
        raise ConfigError("--precision fp16 needs a CUDA or MPS device; on the CPU use bf16 or fp32")
    warning = None
    if requested == "bf16" and kind == "cpu" and not cpu_has_native_bf16():
        warning = "--precision bf16: this CPU has no native bfloat16, so it is emulated and slow"
    return Precision(requested, "as requested (--precision)", warning)


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Mixed precision for the forward pass and the loss; a no-op in float32."""
    if precision.dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=precision.dtype):
        yield


def make_grad_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    """Enabled only for float16; a disabled scaler passes the loss through unchanged."""
    return torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)


def make_optimizer(model: nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam, with its fused kernel on the CPU and CUDA: one pass over all parameters instead of a
    dozen small operations per tensor (SegResNet's 83 tensors: 5.5 ms a step on a 2-core CPU, 1.9 ms
    fused). Same update, up to float rounding."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))


def uses_channels_last(device: torch.device) -> bool:
    """Channels-last 3D layout for the model and its inputs: on CUDA (cuDNN's fast kernels want it);
    on the CPU it made a SegResNet step 2× slower."""
    return device.type == "cuda"


def tune_for_device(model: nn.Module, device: torch.device, precision: Precision, compile: bool) -> nn.Module:
    """Apply what makes `model` fast on `device` (same weights, same state-dict keys); log each choice."""
    if uses_channels_last(device):
        model.to(memory_format=torch.channels_last_3d)
    if device.type == "cpu" and precision.dtype is None:
        switched = use_onednn_convolutions(model)
        if switched:
            log.info("cpu: %d convolution layer(s) run on oneDNN, forward and backward", switched)
        switched = use_separable_upsampling(model)
        if switched:
            log.info("cpu: %d trilinear 2x upsampling layer(s) run as separable passes", switched)
    if device.type == "cuda":
        # The patch shape is fixed, so timing cuDNN's kernels once pays: VNet float32 on an H200,
        # 0.21 -> 0.18 s a step, for a first step of 37 s. Inference uses heuristics (heuristic_kernels).
        torch.backends.cudnn.benchmark = True
        log.info("cuda: cuDNN autotuning on (the first step times each kernel), channels-last 3D layout")
        if compile:
            from torch import _dynamo

            # a graph the compiler cannot handle runs eagerly instead of failing the run
            _dynamo.config.suppress_errors = True
            log.info("cuda: torch.compile (the first steps compile; --no-compile turns it off)")
            return torch.compile(model)  # type: ignore[return-value]
    return model


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None elsewhere."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
