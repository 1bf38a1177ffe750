"""Keep freed memory in the process while training, so each step reuses the last step's pages.

By default glibc's malloc gives large freed blocks straight back to the kernel (blocks above its
mmap threshold are unmapped; the top of the heap is trimmed). A training step frees and re-allocates
the same activations every time, so every step then faults in and zeroes hundreds of MB of fresh
pages: on a 2-core CPU that was ~10% system time and 20-30% of SegResNet's 64³ throughput. Raising
both thresholds for the duration of training keeps those pages (the process's peak does not change:
it is what the step needs anyway); afterwards the thresholds go back down and the retained memory is
returned, so a long-lived napari session does not keep it. A no-op off glibc, and when the user set
malloc's own environment variables.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import platform
import threading
from collections.abc import Iterator

log = logging.getLogger("voxseg")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks up to this size are kept for reuse while training (3D activations at 128³ are 64+ MB)
KEPT_BLOCK_BYTES = 1 << 30
#: after training: the ceiling glibc's own dynamic thresholds reach in a long-running process
_MMAP_THRESHOLD_AFTER = 32 << 20
_TRIM_THRESHOLD_AFTER = 2 * _MMAP_THRESHOLD_AFTER

_lock = threading.Lock()
_active = 0  # trainings inside keep_freed_memory(); the last one out restores the thresholds


def _glibc() -> ctypes.CDLL | None:
    """glibc, if this process runs on it and the user has not tuned malloc themselves."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if "GLIBC_TUNABLES" in os.environ or any(name.startswith("MALLOC_") for name in os.environ):
        return None
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[None]:
    """For the duration of the block, freed blocks up to KEPT_BLOCK_BYTES stay in the process."""
    global _active
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _active == 0:
            kept = libc.mallopt(_M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES) and libc.mallopt(
                _M_TRIM_THRESHOLD, KEPT_BLOCK_BYTES
            )
            if not kept:
                log.debug("malloc refused the thresholds; freed memory goes back to the kernel")
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_AFTER)
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_AFTER)
                libc.malloc_trim(0)
