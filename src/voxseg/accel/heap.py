"""Keep freed memory in the process while training, so each step reuses the last step's pages.

By default glibc's malloc gives large freed blocks straight back to the kernel (blocks above its
mmap threshold are unmapped; the top of the heap is trimmed). A training step frees and re-allocates
the same activations every time, so every step then faults in and zeroes hundreds of MB of fresh
pages: on a 2-core CPU that was ~10% system time and 20-30% of SegResNet's 64³ throughput. Raising
both thresholds for the duration of training keeps those pages (the process's peak does not change:
it is what the step needs anyway); afterwards the thresholds go down to fixed values (glibc has no
way back to its own dynamic ones: 32 and 64 MiB are where those end up in a long-running process)
and the retained memory is returned, so a long-lived napari session does not keep it.

What is kept is bounded: freed blocks of many sizes fragment the heap, and a run that allocates
in one arena (one compute thread, or a thread count that drops to 1 when the machine gets busy) grew
its free-but-kept heap from 120 to 660 MB over 200 short epochs (RSS +22 % after the first
validation, in steps, while the memory in use stayed at 210 MB; `benchmarks/memory_soak.py`). So
after each validation the free pages are handed back (`release_fragments`: `malloc_trim`, which
also returns free pages from the middle of the heap): once per validation the next step faults its
working set in again, and fragmentation cannot pile up across validations.

Limits: older glibc versions cap the mmap threshold at 32 MiB, so larger blocks are still
unmapped there. In threads other than the main one, malloc serves blocks from arenas of at most
64 MiB, so larger blocks are mapped afresh whatever the thresholds: SegResNet 64³ trained in a
worker thread (as napari does) still had 60-75% fewer page faults and ran ~8% faster. A no-op off
glibc, and when the user set malloc's thresholds through its environment variables.
"""

from __future__ import annotations

import contextlib
import ctypes
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
#: the largest mmap threshold older glibc versions accept
_OLD_GLIBC_MMAP_CAP = 32 << 20
#: after training: the ceiling glibc's own dynamic thresholds reach in a long-running process
_MMAP_THRESHOLD_AFTER = 32 << 20
_TRIM_THRESHOLD_AFTER = 2 * _MMAP_THRESHOLD_AFTER
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_lock = threading.Lock()
_active = 0  # trainings inside keep_freed_memory(); the last one out restores the thresholds
_kept_bytes = 0  # the largest block kept while _active


def _glibc() -> ctypes.CDLL | None:
    """glibc, if this process runs on it and the user has not set malloc's thresholds themselves."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(name in os.environ for name in _USER_SETTINGS) or "threshold" in tunables:
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _keep(libc: ctypes.CDLL) -> int:
    """Raise both thresholds as far as this glibc allows; return the largest block now kept."""
    for kept in (KEPT_BLOCK_BYTES, _OLD_GLIBC_MMAP_CAP):
        if libc.mallopt(_M_MMAP_THRESHOLD, kept) and libc.mallopt(_M_TRIM_THRESHOLD, KEPT_BLOCK_BYTES):
            log.debug("malloc keeps freed blocks up to %d MiB while training", kept >> 20)
            return kept
    log.debug("malloc refused the thresholds; freed memory goes back to the kernel")
    return 0


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[int]:
    """For the duration of the block, freed blocks stay in the process; yields the largest size
    kept (0 where nothing changed)."""
    global _active, _kept_bytes
    libc = _glibc()
    if libc is None:
        yield 0
        return
    with _lock:
        if _active == 0:
            _kept_bytes = _keep(libc)
        _active += 1
    try:
        yield _kept_bytes
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _kept_bytes:
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_AFTER)
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_AFTER)
                libc.malloc_trim(0)


def release_fragments() -> None:
    """Hand the heap's free pages back while memory is kept (after a validation); a no-op otherwise."""
    libc = _glibc()
    if _active and _kept_bytes and libc is not None:
        libc.malloc_trim(0)
