"""The arithmetic precision of a run, and what it takes: autocast, and loss scaling for float16.

`--precision auto` chooses what the hardware does natively — bfloat16 autocast on CUDA GPUs that
support it (float16 with loss scaling on older ones) and on CPUs with AMX, float32 elsewhere: emulated
bfloat16 was 15× slower than float32 on an AVX2 CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from voxseg.errors import ConfigError

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
    """Whether the CPU has AMX, where bfloat16 training was measured well worth it (a Xeon: 4.16
    against 2.27 patches/s in float32, same Dice).

    AVX512-BF16 alone is not enough to choose it: on an AMD EPYC with it (no AMX), SegResNet 64³
    trained at 5.42 patches/s in bfloat16 against 5.19 in float32 with voxseg's kernels, the same
    Dice, and bfloat16 there first met a PyTorch bug (see `voxseg.accel.bf16_guard`). Reads PyTorch's
    CPU feature table; an unknown answer means no.
    """
    try:
        return bool(torch._C._cpu._get_cpu_capability().get("amx_bf16"))
    except (AttributeError, RuntimeError):
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
            return Precision("bf16", "auto: this CPU computes bfloat16 natively (AMX)")
        where = "this CPU has no native bfloat16" if kind == "cpu" else f"{kind} trains in float32"
        return Precision("fp32", f"auto: {where}")
    if requested == "fp16" and kind == "cpu":
        raise ConfigError("--precision fp16 needs a CUDA or MPS device; on the CPU use bf16 or fp32")
    warning = None
    if requested == "bf16" and kind == "cpu" and not cpu_has_native_bf16():
        warning = "--precision bf16: this CPU has no native bfloat16 (AMX), so it is slow or emulated"
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
