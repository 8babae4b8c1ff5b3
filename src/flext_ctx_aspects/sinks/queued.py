"""Keep a slow sink off the caller's path: a bounded queue drained by a background thread.

`QueuedSink` wraps any sink. ``emit`` appends the record to a bounded queue and
returns (a ``deque.append``, no lock, no wake-up call); a daemon flusher thread hands queued
records to the wrapped sink every ``interval`` seconds. When the queue is full the record is
dropped and counted (`QueuedSink.dropped`): memory stays bounded and the caller never
waits. The queue is flushed on demand (`QueuedSink.flush`), at interpreter exit
(``atexit``), and a forked child starts with an empty queue and its own flusher.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Final

from flext_ctx_aspects._diagnostics import report_internal_error
from flext_ctx_aspects.errors import ConfigError
from flext_ctx_aspects.records import FIELD_NAMES, OperationRecord
from flext_ctx_aspects.sinks._sketch import describe

if TYPE_CHECKING:
    from flext_ctx_aspects.typing import Sink

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_INTERVAL_S", "QueuedSink"]

DEFAULT_CAPACITY: Final = 65_536
DEFAULT_INTERVAL_S: Final = 0.05
_ALL_FIELDS: Final = frozenset(FIELD_NAMES)

_live: weakref.WeakSet[QueuedSink] = weakref.WeakSet()


class QueuedSink:
    """Hands records to ``sink`` on a background thread, through a bounded queue.

    Args:
        sink: The wrapped sink (any object with ``emit(record)``).
        capacity: Most records waiting; further ones are dropped and counted. Concurrent
            producers may overshoot it by at most one record each.
        interval: Seconds between two drains of the queue by the flusher.

    Raises:
        ConfigError: ``capacity`` or ``interval`` is not a positive number; TypeError if
            ``sink`` has no ``emit``.
    """

    def __init__(
        self,
        sink: Sink,
        capacity: int = DEFAULT_CAPACITY,
        interval: float = DEFAULT_INTERVAL_S,
    ) -> None:
        if not callable(getattr(sink, "emit", None)):
            raise TypeError(f"QueuedSink needs a sink with emit(record), got {type(sink)!r}")
        if type(capacity) is not int or capacity < 1:
            raise ConfigError("QueuedSink()", "capacity", "a positive int", describe(capacity))
        if type(interval) not in (int, float) or not interval > 0:
            raise ConfigError("QueuedSink()", "interval", "a positive number", describe(interval))
        self.sink = sink
        self.capacity = capacity
        self.interval = float(interval)
        # What the wrapped sink reads: the record builder may give this sink lighter records.
        self.needs: frozenset[str] = getattr(sink, "needs", _ALL_FIELDS)
        self._start_lock = threading.Lock()
        self._reset_state()
        _live.add(self)

    def _reset_state(self) -> None:
        self._queue: deque[OperationRecord | threading.Event] = deque()
        self._drops = itertools.count()  # next() is atomic: no lost drop under contention
        self._dropped_base = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        """How many records were dropped because the queue was full."""
        # Reading an itertools.count's position: its repr is "count(N)".
        return int(repr(self._drops)[6:-1]) + self._dropped_base

    @property
    def pending(self) -> int:
        """How many records wait for the flusher."""
        return len(self._queue)

    def emit(self, record: OperationRecord) -> None:
        """Queue one record, or drop and count it when the queue is full. Never blocks."""
        queue = self._queue
        if len(queue) >= self.capacity:
            next(self._drops)
            return
        queue.append(record)
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopping:
                thread = threading.Thread(
                    target=self._run, name=f"flext-ctx-queue-{type(self.sink).__name__}"
                )
                thread.daemon = True
                self._thread = thread
                thread.start()

    def _run(self) -> None:
        wake = self._wake
        while not self._stopping:
            wake.wait(self.interval)
            wake.clear()
            self._drain()

    def _drain(self) -> None:
        queue = self._queue
        emit = self.sink.emit
        while queue:
            try:
                item = queue.popleft()
            except IndexError:  # another drainer (close() racing the flusher) took it
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                emit(item)
            except Exception as exc:
                report_internal_error(f"queued sink {type(self.sink).__qualname__}.emit", exc)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Hand every record queued so far to the wrapped sink, then return.

        Args:
            timeout: Most seconds to wait for the flusher (None: no limit).

        Returns:
            True when everything queued before the call was handed over in time.
        """
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            self._drain()
            _flush_inner(self.sink)
            return True
        marker = threading.Event()
        self._queue.append(marker)
        self._wake.set()
        done = marker.wait(timeout)
        if done:
            _flush_inner(self.sink)
        return done

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the flusher, hand over what is queued, and close the wrapped sink if it can.

        Records emitted after ``close()`` are handed over synchronously by the next
        ``flush()``/``close()``; the flusher does not restart.
        """
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._drain()
        close = getattr(self.sink, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:
                report_internal_error(f"queued sink {type(self.sink).__qualname__}.close", exc)
        else:
            _flush_inner(self.sink)

    def _after_fork_in_child(self) -> None:
        # The parent's pending records are the parent's to write; its flusher thread does
        # not exist here. Start over empty; the flusher restarts on the next emit.
        self._start_lock = threading.Lock()
        self._reset_state()


def _flush_inner(sink: object) -> None:
    flush = getattr(sink, "flush", None)
    if callable(flush):
        try:
            flush()
        except Exception as exc:
            report_internal_error(f"queued sink {type(sink).__qualname__}.flush", exc)


def _flush_all_at_exit() -> None:
    for sink in list(_live):
        try:
            sink.close(timeout=1.0)
        except Exception as exc:
            report_internal_error("QueuedSink.close at exit", exc)


def _after_fork_in_child() -> None:
    for sink in list(_live):
        sink._after_fork_in_child()


atexit.register(_flush_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
