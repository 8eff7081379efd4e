"""Many sockets read by one greenlet (I/O): one epoll, one wake-up per tick instead of one per frame.

A mod_audio_fork stream delivers 50 small frames a second. Read by a greenlet of its own, every frame costs a
hub wake-up, a watcher callback and two greenlet switches around a ``recv``, which at hundreds of calls is most of
a core. Here the sockets of all calls sit in one level-triggered ``select.epoll``; a single greenlet takes what is
ready, reads each ready socket once, hands the bytes to that socket's ``BatchTarget`` and then sleeps out the rest
of ``interval`` so the next tick finds many sockets ready at once. When nothing at all is ready it blocks on the
epoll descriptor (through the hub, bounded by a timeout), so an idle reader costs nothing.

A target's ``on_data`` runs in the reader's greenlet: it must not block (writes it triggers are the caller's
business to hand to another greenlet). Its exceptions are logged and end that socket's reading, never the loop's.
A target ends its own reading by returning False from ``on_data``; the reader calls ``on_closed`` exactly once
with the reason when the peer closed, the socket failed, or the target returned False, and forgets the socket.

Linux only (``select.epoll``), as is the FreeSWITCH box this runs on.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time
from typing import Protocol

import gevent
from gevent.event import Event
from gevent.monkey import get_original
from gevent.socket import wait_read

log = logging.getLogger("esl_controller.media.reader")

RECV_SIZE = 65536
# monkey-patching hides select.epoll (a blocking poll would freeze the hub); this one is only ever polled
# with a zero timeout, and waited on through the hub.
_epoll_class = get_original("select", "epoll")
_IDLE_WAIT = 1.0
_MIN_PAUSE = 0.0005  # the shortest pause between ticks: the hub's timers and other I/O get their turn  # longest block on the epoll descriptor before the loop looks at its flags again


class BatchTarget(Protocol):
    def on_data(self, data: bytes, received_at: float) -> bool:
        """Bytes read from the socket; False to stop reading it."""

    def on_closed(self, reason: str) -> None:
        """Reading has ended: "eof" (the peer closed), "stopped" (on_data returned False or the target was
        removed), "error: ..." (the socket failed) or "reader stopped"."""


class _Entry:
    __slots__ = ("sock", "target", "fd", "on_data")

    def __init__(self, sock: socket.socket, target: BatchTarget, fd: int) -> None:
        self.sock = sock
        self.target = target
        self.fd = fd
        self.on_data = target.on_data  # bound once: one lookup less per read


class BatchReader:
    """One greenlet that reads every registered socket, a tick at a time."""

    def __init__(
        self, interval: float = 0.005, recv_size: int = RECV_SIZE, name: str = "media"
    ) -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self.interval = interval
        self.recv_size = recv_size
        self.name = name
        self._epoll = _epoll_class()
        self._entries: dict[int, _Entry] = {}
        self._greenlet: gevent.Greenlet | None = None
        self._running = False
        self._wake = Event()
        # counters (read by diagnostics and the benchmark)
        self.ticks = 0
        self.reads = 0
        self.largest_batch = 0
        self.target_errors = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def greenlet(self) -> gevent.Greenlet | None:
        return self._greenlet

    def in_reader(self) -> bool:
        """True when called from the reader's own greenlet (where nothing may block)."""
        return self._greenlet is not None and gevent.getcurrent() is self._greenlet

    def start(self) -> None:
        if self._greenlet is not None:
            return
        if self._epoll.closed:
            raise RuntimeError("a stopped batch reader cannot be started again")
        self._running = True
        self._greenlet = gevent.spawn(self._run)
        self._greenlet.name = f"batch-reader-{self.name}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; every registered target gets ``on_closed("reader stopped")``."""
        self._running = False
        self._wake.set()
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None and greenlet is not gevent.getcurrent():
            # it holds no state of its own: stop it where it waits (up to a second on an idle epoll)
            greenlet.kill(block=True, timeout=timeout)
        for entry in list(self._entries.values()):
            self._forget(entry)
            self._closed(entry, "reader stopped")
        self._epoll.close()

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ registration
    def add(self, sock: socket.socket, target: BatchTarget) -> None:
        """Start reading ``sock`` (a non-blocking socket: gevent's always are underneath).

        Call ``remove(sock)`` before closing it. (A socket closed without that leaves the epoll with the
        close, so it is never read again; its entry is dropped, with ``on_closed("error: socket closed")``,
        when its number comes back in ``add``.)"""
        if not self._running:
            raise RuntimeError("batch reader is not running")
        fd = sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "socket is closed")
        old = self._entries.get(fd)
        if old is not None:
            if old.sock is sock:
                raise ValueError(f"socket {fd} is already being read")
            # closed without remove() and its number reused: the kernel has dropped it from the epoll
            self._forget(old)
            self._closed(old, "error: socket closed")
        entry = _Entry(sock, target, fd)
        self._epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        self._entries[fd] = entry
        self._wake.set()

    def remove(self, sock: socket.socket) -> bool:
        """Stop reading ``sock`` without calling its target (call before closing the socket). False when it
        was not registered."""
        fd = sock.fileno()
        entry = self._entries.get(fd) if fd >= 0 else None
        if entry is None or entry.sock is not sock:  # closed already: look for it
            entry = next((e for e in self._entries.values() if e.sock is sock), None)
        if entry is None:
            return False
        self._forget(entry)
        return True

    def _forget(self, entry: _Entry) -> None:
        if self._entries.get(entry.fd) is entry:
            del self._entries[entry.fd]
            try:
                self._epoll.unregister(entry.fd)
            except (OSError, ValueError):  # closed underneath us: the kernel dropped it already
                pass

    def _closed(self, entry: _Entry, reason: str) -> None:
        try:
            entry.target.on_closed(reason)
        except Exception:
            log.exception("%s reader: on_closed failed", self.name)

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        interval = self.interval
        while self._running:
            if not self._entries:
                self._wake.clear()
                self._wake.wait(timeout=_IDLE_WAIT)
                continue
            ready = self._poll()
            if not ready:
                try:
                    wait_read(self._epoll.fileno(), timeout=_IDLE_WAIT)
                except (
                    TimeoutError,
                    OSError,
                ):  # socket.timeout is TimeoutError; a closed epoll is OSError
                    pass
                continue
            started = time.monotonic()
            self._read_all(ready, started)
            # Always a real (timer) sleep, even after a tick longer than the interval: sleep(0) only
            # lets other runnable greenlets in, and the hub's timers and I/O would wait behind us.
            gevent.sleep(max(_MIN_PAUSE, interval - (time.monotonic() - started)))

    def _poll(self) -> list[tuple[int, int]]:
        try:
            return self._epoll.poll(0)
        except InterruptedError:
            return []
        except (OSError, ValueError):  # the epoll was closed by stop()
            self._running = False
            return []

    def _read_all(self, ready: list[tuple[int, int]], now: float) -> None:
        self.ticks += 1
        if len(ready) > self.largest_batch:
            self.largest_batch = len(ready)
        entries = self._entries
        size = self.recv_size
        for fd, _mask in ready:
            entry = entries.get(fd)
            if entry is None:
                continue
            try:
                # os.read on the descriptor: gevent keeps it non-blocking, and gevent's own recv would park
                # this greenlet (and every other socket with it) on a spurious readiness.
                data = os.read(fd, size)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self._forget(entry)
                self._closed(entry, f"error: {exc}")
                continue
            if not data:
                self._forget(entry)
                self._closed(entry, "eof")
                continue
            self.reads += 1
            try:
                keep = entry.on_data(data, now)
            except Exception:
                self.target_errors += 1
                log.exception("%s reader: target failed; its socket is no longer read", self.name)
                keep = False
            if not keep:
                self._forget(entry)
                self._closed(entry, "stopped")
