"""What the machine offers a run, read through psutil on every platform."""

from __future__ import annotations

import time

import psutil
import pytest
import torch

from voxseg.accel.threads import _system_busy_seconds
from voxseg.errors import ConfigError
from voxseg.runtime.hardware import available_memory_bytes, cpu_cores, resolve_device


def test_available_memory_is_a_share_of_the_machines() -> None:
    available = available_memory_bytes()
    assert available is not None and 0 < available <= psutil.virtual_memory().total


def test_the_machines_busy_seconds_count_this_process_work() -> None:
    before = _system_busy_seconds()
    spent = time.process_time()
    while time.process_time() - spent < 0.3:  # keep one core busy
        pass
    after = _system_busy_seconds()
    assert before is not None and after is not None
    assert after - before >= 0.2  # at least most of what this process spent (the clock ticks at 10 ms)


def test_cores_and_devices() -> None:
    assert 1 <= cpu_cores() <= (psutil.cpu_count() or 1)
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device: cuda requested"):
            resolve_device("cuda")
