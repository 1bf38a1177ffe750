"""Iterating in a background thread, a few items ahead of the consumer.

Used for batches that are copied to the GPU and augmented there: the CPU side of that work
(random deformation fields, noise, kernel launches) then overlaps the previous training step
instead of adding to it. On CUDA that thread works on a stream of its own: on the training step's
stream, each copy of a random field from pageable memory waited for the step queued before it, so
the thread could barely run ahead. SegResNet 128³, batch 2, bfloat16 on an H200: 21.2 patches/s
with batches prepared in the step's thread, 24.1 in this thread on the step's stream, 28.8 on its
own stream.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from queue import Empty, Full, Queue
from typing import TypeVar

import torch

T = TypeVar("T")
Tensors = tuple[torch.Tensor, ...]

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
        iterator = iter(items)
        try:
            for item in iterator:
                if not _put(queue, item, stop):
                    return
            _put(queue, _END, stop)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            _put(queue, _Failure(exc), stop)
        finally:  # a generator's clean-up runs here, on the thread that ran it
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

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


def prepared_ahead(batches: Iterable[Tensors], side: torch.cuda.Stream | None = None) -> Iterator[Tensors]:
    """`in_background(batches)`; with a CUDA `side` stream, the batches are made on it and handed over.

    The step's stream waits for each batch's event before using it, and the batch's memory is
    marked as used by that stream, so the allocator does not reuse it while the step still runs.
    Give the same `side` stream every epoch: the allocator keeps each stream's freed blocks apart.
    """
    if side is None:
        yield from in_background(batches)
        return

    def on_side_stream() -> Iterator[tuple[Tensors, torch.cuda.Event]]:
        for batch in _each_on(side, iter(batches)):
            ready = torch.cuda.Event()
            ready.record(side)
            yield batch, ready

    with contextlib.closing(in_background(on_side_stream())) as handed_over:
        for batch, ready in handed_over:
            step_stream = torch.cuda.current_stream(side.device)
            step_stream.wait_event(ready)
            for tensor in batch:
                if tensor.is_cuda:
                    tensor.record_stream(step_stream)
            yield batch


def _each_on(stream: torch.cuda.Stream, items: Iterator[T]) -> Iterator[T]:
    """Each item made with `stream` current; not held across the yield, so whichever thread ends
    the generator, no thread is left on a stream it did not choose."""
    while True:
        with torch.cuda.stream(stream):
            item = next(items, _END)
        if item is _END:
            return
        yield item  # type: ignore[misc]


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
