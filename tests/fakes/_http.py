"""A small HTTP/1.1 server on a gevent StreamServer, with full control over the bytes sent back.

pywsgi would hide what these fakes need: a body cut mid-stream, garbage between chunks, a connection
dropped without a terminating chunk. Requests are parsed here (Content-Length bodies, keep-alive);
handlers write the response through :class:`Reply`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import gevent
from gevent.server import StreamServer

MAX_HEADER = 64 * 1024


@dataclass
class Knobs:
    latency: float = 0.0  # before the response starts
    fail_status: int | None = None  # answer with this status ...
    fail_times: int = 1_000_000  # ... this many times, then succeed
    fail_body: dict = field(
        default_factory=lambda: {"error": {"message": "fake failure", "type": "fake"}}
    )
    retry_after: str | None = None
    chunk_delay: float = 0.0  # between streamed chunks
    malformed_after: int | None = None  # a garbage chunk after this many chunks
    disconnect_after: int | None = None  # drop the connection after this many chunks
    error_event_after: int | None = None  # an in-stream {"error": ...} event after this many chunks
    malformed_chunk: bytes = b'data: {"id": "broken", "choices": [{\n\n'


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Disconnect(Exception):
    """Raised by a handler (or by Reply.abort) to drop the connection at once."""


@dataclass
class Reply:
    sock: socket.socket
    started: bool = False
    chunked: bool = False
    closed: bool = False
    sent_chunks: int = 0
    extra: dict = field(default_factory=dict)

    def start(
        self, status: int, headers: dict[str, str] | None = None, *, length: int | None = None
    ) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if length is None:
            lines.append("Transfer-Encoding: chunked")
            self.chunked = True
        else:
            lines.append(f"Content-Length: {length}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.started = True

    def chunk(self, data: bytes) -> None:
        if not data:
            return
        if self.chunked:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.sock.sendall(data)
        self.sent_chunks += 1

    def end(self) -> None:
        if self.chunked:
            self.sock.sendall(b"0\r\n\r\n")

    def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.start(status, headers, length=len(body))
        self.sock.sendall(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        h = {"Content-Type": "application/json", **(headers or {})}
        self.send(status, json.dumps(obj).encode(), h)

    def abort(self) -> None:
        raise Disconnect()


REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

Handler = Callable[[Request, Reply], None]


def _read_request(sock: socket.socket, buf: bytearray) -> Request | None:
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
        if len(buf) > MAX_HEADER:
            return None
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0") or 0)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _read_chunked(sock, buf)
    else:
        while len(buf) < length:
            data = sock.recv(65536)
            if not data:
                return None
            buf += data
        body = bytes(buf[:length])
        del buf[:length]
    url = urlsplit(target)
    return Request(method, url.path, parse_qs(url.query), headers, body)


def _read_chunked(sock: socket.socket, buf: bytearray) -> bytes:
    out = bytearray()
    while True:
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        line, _, rest = bytes(buf).partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        buf[:] = rest
        while len(buf) < size + 2:
            buf += sock.recv(65536)
        out += buf[:size]
        del buf[: size + 2]
        if size == 0:
            return bytes(out)


class FakeHTTPServer:
    """Serves ``handler`` on an ephemeral loopback port; use as a context manager."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.connections = 0
        self.server = StreamServer(("127.0.0.1", 0), self._serve)

    @property
    def port(self) -> int:
        return self.server.server_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeHTTPServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(timeout=1)

    def _serve(self, sock: socket.socket, _addr: object) -> None:
        self.connections += 1
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        try:
            while True:
                req = _read_request(sock, buf)
                if req is None:
                    return
                self.requests.append(req)
                reply = Reply(sock)
                self.handler(req, reply)
                if req.headers.get("connection", "").lower() == "close":
                    return
        except (Disconnect, OSError, gevent.GreenletExit):
            return
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def stream_pieces(k: Knobs, reply: Reply, pieces: list[bytes]) -> None:
    """Send ``pieces`` as chunks, applying the slow/malformed/error/disconnect knobs."""
    for i, piece in enumerate(pieces):
        if k.disconnect_after is not None and i >= k.disconnect_after:
            reply.abort()
        if k.malformed_after is not None and i == k.malformed_after:
            reply.chunk(k.malformed_chunk)
        if k.error_event_after is not None and i == k.error_event_after:
            reply.chunk(b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n')
        if k.chunk_delay and i:
            gevent.sleep(k.chunk_delay)
        reply.chunk(piece)
    reply.end()
