"""The socket side shared by the media WebSocket servers (mod_audio_fork, web calls, live listen).

One connection's writes are serialised under a lock and bounded by a send timeout; ``close`` starts the closing
handshake and aborts the socket if the peer does not finish it within ``close_timeout``; ``abort`` shuts the socket
down once. The protocol state is a wsproto server ``WSConnection``; reading stays with each server.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import gevent
from gevent.lock import Semaphore
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection
from wsproto.utilities import LocalProtocolError

log = logging.getLogger("esl_controller.media")


def shutdown_and_close(sock: socket.socket) -> None:
    """Shut a socket down both ways (waking any reader) and close it; errors of a dead socket are ignored."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class ServerSocket:
    """Base for one server-side WebSocket connection. Subclasses set ``server`` (with ``send_timeout`` and
    ``close_timeout``) and read from ``sock`` through ``ws``."""

    #: named in timeout errors and logs, e.g. "fork" or "web call"
    what = "websocket"

    def __init__(self, server: Any, sock: socket.socket, address: Any) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self.ws = WSConnection(ConnectionType.SERVER)
        self._write_lock = Semaphore()
        self._closing = False
        self._done = False

    def _write(self, data: bytes) -> None:
        if not data or self._done:
            return
        with self._write_lock:
            with gevent.Timeout(
                self.server.send_timeout, TimeoutError(f"{self.what} send timed out")
            ):
                self.sock.sendall(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closing or self._done:
            return
        self._closing = True
        try:
            self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
        except (OSError, TimeoutError, LocalProtocolError) as exc:
            log.debug("%s close send failed: %s", self.what, exc)
            self._abort()
            return
        gevent.spawn_later(self.server.close_timeout, self._abort)

    def _abort(self) -> None:
        if self._done:
            return
        self._done = True
        shutdown_and_close(self.sock)
