"""Iterator plumbing for the readers: read ahead on a thread, hand dlt bigger tables."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, List, TypeVar

import pyarrow as pa

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate `items` on a background thread, up to `depth` items ahead of the consumer.

    Decompressing and parsing the next batches (pyarrow, outside the GIL) then overlaps with dlt writing the
    current one. An exception in the producer is raised in the consumer; a consumer that stops early (an error
    downstream, Ctrl-C) stops and joins the producer before returning, so its files can be removed.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator: Iterator[T] = iter(())
        try:
            iterator = iter(items)
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()

    worker = threading.Thread(target=produce, name="taxi-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()


def coalesce(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Group batches into tables of at least `rows` rows (zero-copy), so dlt handles fewer, bigger items."""
    pending: List[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending)
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending)
