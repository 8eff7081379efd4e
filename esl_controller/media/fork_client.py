"""A mod_audio_fork look-alike client (I/O): what FreeSWITCH does on the fork WebSocket.

For tests, the benchmark and the FreeSWITCH test peer: connect with the ``audio.drachtio.org``
subprotocol, send the metadata text frame, binary L16 audio, ``send_text`` texts, the
zero-length end-of-audio frame, and read the server's text messages. Every wait has a timeout.
Works with plain or gevent-patched sockets.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from esl_controller.media.fork_codec import DEFAULT_SUBPROTOCOL


class ForkRejected(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"fork WebSocket rejected with HTTP {status}")
        self.status = status


class ForkClosed(Exception):
    def __init__(self, code: int | None, reason: str | None = None) -> None:
        super().__init__(f"fork WebSocket closed ({code} {reason or ''})".strip())
        self.code = code
        self.reason = reason


class ForkClient:
    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        subprotocol: str | None = DEFAULT_SUBPROTOCOL,
        timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.requested_subprotocol = subprotocol
        self.timeout = timeout
        self.subprotocol: str | None = None
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock: socket.socket | None = None
        self.messages: deque[str | bytes] = deque()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._text: list[str] = []
        self._bin: list[bytes] = []
        self.pongs: list[bytes] = []

    def connect(self) -> ForkClient:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        protos = [self.requested_subprotocol] if self.requested_subprotocol else []
        self._send(
            self.ws.send(
                Request(host=f"{self.host}:{self.port}", target=self.path, subprotocols=protos)
            )
        )
        deadline = time.monotonic() + self.timeout
        while True:
            data = self._recv(deadline)
            if data is None:
                raise TimeoutError("fork handshake timed out")
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self.subprotocol = event.subprotocol
                    return self
                if isinstance(event, RejectConnection):
                    raise ForkRejected(event.status_code)
            if not data:
                raise ForkClosed(None, "closed during handshake")

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def _recv(self, deadline: float) -> bytes | None:
        assert self.sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            return None

    # ------------------------------------------------------------------ FreeSWITCH -> server

    def send_metadata(self, metadata: dict[str, Any] | str) -> None:
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        self.send_text(text)

    def send_text(self, text: str) -> None:
        self._send(self.ws.send(TextMessage(data=text)))

    def send_audio(self, pcm: bytes) -> None:
        if not pcm:
            raise ValueError("use send_end_of_audio() for the zero-length marker")
        self._send(self.ws.send(BytesMessage(data=pcm)))

    def send_end_of_audio(self) -> None:
        self._send(self.ws.send(BytesMessage(data=b"")))

    def ping(self, payload: bytes = b"hi") -> None:
        self._send(self.ws.send(Ping(payload=payload)))

    # ------------------------------------------------------------------ server -> FreeSWITCH

    def recv(self, timeout: float | None = None) -> str | bytes | None:
        """Next complete message (text as str), None on timeout; ForkClosed when closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.messages:
            if self.close_code is not None:
                raise ForkClosed(self.close_code, self.close_reason)
            data = self._recv(deadline)
            if data is None:
                return None
            self._feed(data)
        return self.messages.popleft()

    def recv_json(self, timeout: float | None = None) -> dict[str, Any] | None:
        message = self.recv(timeout)
        if message is None:
            return None
        if not isinstance(message, str):
            raise ValueError("expected a text message")
        return json.loads(message)

    def _feed(self, data: bytes) -> None:
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.messages.append("".join(self._text))
                    self._text = []
            elif isinstance(event, BytesMessage):
                self._bin.append(event.data)
                if event.message_finished:
                    self.messages.append(b"".join(self._bin))
                    self._bin = []
            elif isinstance(event, Ping):
                self._send(self.ws.send(event.response()))
            elif isinstance(event, Pong):
                self.pongs.append(event.payload)
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                self.close_reason = event.reason
                try:
                    self._send(self.ws.send(event.response()))
                except (OSError, LocalProtocolError):  # the peer may be gone already
                    pass

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Clean close: close frame, wait (bounded) for the server's close, shut the socket."""
        if self.sock is None:
            return
        try:
            if self.close_code is None:
                self._send(self.ws.send(CloseConnection(code=code, reason=reason)))
                deadline = time.monotonic() + self.timeout
                while self.close_code is None:
                    data = self._recv(deadline)
                    if not data:
                        break
                    self._feed(data)
        except OSError:
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a crash or a network cut)."""
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
