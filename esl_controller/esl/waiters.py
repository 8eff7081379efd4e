"""gevent helpers shared by the inbound connection and the outbound server.

* ``ReplyFifo``: writes a command and waits (with a timeout) for its reply; FreeSWITCH answers
  commands strictly in order, so replies are matched first-in first-out. A timed-out waiter keeps
  its place in the queue (the late reply is consumed and dropped), so later replies stay matched.
* ``KeyedWaiters``: waits keyed by an id (Job-UUID, Application-UUID).
* ``EventPump``: a bounded queue and one greenlet that runs handlers, so handlers may send
  commands without blocking the socket reader; handler exceptions are logged and contained.

Every waiter is failed with ``ConnectionLost`` when the connection drops (``fail_all``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.lock import Semaphore
from gevent.queue import Full, Queue

from .errors import CommandTimeout, ConnectionLost, NotConnected
from .protocol import Frame

log = logging.getLogger("esl_controller.esl")


class ReplyFifo:
    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self._lock = Semaphore()
        self._fifo: deque[AsyncResult] = deque()
        self._failed: BaseException | None = None

    def request(self, data: bytes, timeout: float, what: str = "command") -> Frame:
        """Send ``data`` and return the reply frame; ``CommandTimeout``/``ConnectionLost``."""
        if self._failed is not None:
            raise NotConnected(str(self._failed))
        result: AsyncResult = AsyncResult()
        if not self._lock.acquire(timeout=timeout):
            raise CommandTimeout(f"{what}: could not write within {timeout}s")
        try:
            if self._failed is not None:
                raise NotConnected(str(self._failed))
            self._fifo.append(result)
            try:
                self._send(data)
            except OSError as exc:
                self.fail_all(ConnectionLost(f"write failed: {exc}"))
                raise ConnectionLost(f"{what}: write failed: {exc}") from exc
        finally:
            self._lock.release()
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            raise CommandTimeout(f"{what}: no reply within {timeout}s") from None

    def send_only(self, data: bytes) -> None:
        """Write a frame that gets no reply we wait for (its reply slot is still reserved)."""
        with self._lock:
            self._fifo.append(AsyncResult())
            self._send(data)

    def resolve(self, frame: Frame) -> bool:
        if not self._fifo:
            return False
        self._fifo.popleft().set(frame)
        return True

    @property
    def pending(self) -> int:
        return len(self._fifo)

    def fail_all(self, exc: BaseException) -> None:
        self._failed = exc
        while self._fifo:
            self._fifo.popleft().set_exception(exc)


class KeyedWaiters:
    def __init__(self) -> None:
        self._waiting: dict[str, AsyncResult] = {}
        self._failed: BaseException | None = None

    def add(self, key: str) -> AsyncResult:
        if self._failed is not None:
            raise NotConnected(str(self._failed))
        result: AsyncResult = AsyncResult()
        self._waiting[key] = result
        return result

    def resolve(self, key: str, value: Any) -> bool:
        result = self._waiting.pop(key, None)
        if result is None:
            return False
        result.set(value)
        return True

    def discard(self, key: str) -> None:
        self._waiting.pop(key, None)

    def fail_all(self, exc: BaseException) -> None:
        self._failed = exc
        waiting, self._waiting = self._waiting, {}
        for result in waiting.values():
            result.set_exception(exc)

    def reset(self) -> None:
        self._failed = None


_STOP = object()


class EventPump:
    """Runs ``dispatch(item)`` for each queued item in one greenlet; drops (and counts) items
    when the queue is full rather than blocking the socket reader."""

    def __init__(self, dispatch: Callable[[Any], None], name: str, maxsize: int = 10000) -> None:
        self._dispatch = dispatch
        self._name = name
        self._queue: Queue = Queue(maxsize=maxsize)
        self.dropped = 0
        self._greenlet = gevent.spawn(self._run)

    def put(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("%s: event queue full, %d events dropped", self._name, self.dropped)

    def stop(self, timeout: float = 5.0) -> None:
        """Process what is queued, then end the greenlet."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except Full:
            self._greenlet.kill(block=False)
        self._greenlet.join(timeout=timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._dispatch(item)
            except Exception:
                log.exception("%s: event handler failed", self._name)
