"""Iterating in a background thread, a few items ahead of the consumer.

Used for batches that are copied to the GPU and augmented there: the CPU side of that work
(random deformation fields, noise, kernel launches) then overlaps the previous training step
instead of adding to it. Both threads enqueue on the same CUDA stream, so the GPU sees the work
in a safe order without any stream bookkeeping.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from queue import Empty, Full, Queue
from typing import TypeVar

T = TypeVar("T")

_END = object()
_POLL_SECONDS = 0.05
_JOIN_SECONDS = 30.0


@dataclass
class _Failure:
    error: BaseException


def in_background(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield `items`, produced by a daemon thread up to `depth` ahead; its errors re-raise here.

    Closing the generator (or leaving a `with contextlib.closing(...)` block) stops the thread.
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(queue, item, stop):
                    return
            _put(queue, _END, stop)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            _put(queue, _Failure(exc), stop)

    thread = threading.Thread(target=produce, name="voxseg-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = _get(queue, thread)
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(_JOIN_SECONDS)  # it finishes the item in hand, then sees `stop`


def _put(queue: Queue, item: object, stop: threading.Event) -> bool:
    """Put unless asked to stop first; False when stopped."""
    while not stop.is_set():
        try:
            queue.put(item, timeout=_POLL_SECONDS)
            return True
        except Full:
            continue
    return False


def _get(queue: Queue, thread: threading.Thread) -> object:
    """The next item; a producer that died without a word ends the iteration with an error."""
    while True:
        try:
            return queue.get(timeout=_POLL_SECONDS)
        except Empty:
            if not thread.is_alive() and queue.empty():
                raise RuntimeError("the background batch producer stopped unexpectedly") from None
