"""Live listen (I/O): ``monitor.listenUrl``, a WebSocket that streams a call's audio to supervisors.

Wire format (what a listener receives; api-compat.md §12):

* URL: ``ws[s]://<host>/call/<callId>/listen?token=<token>``; the token is per call (HMAC-SHA256 of the
  call id with the hub's secret) and may also come as ``Authorization: Bearer <token>``. A bad or
  missing token is refused with HTTP 403, an unknown path with 404, a call already at its listener
  limit with 429.
* First, one text frame: ``{"type":"start","callId":...,"sampleRate":16000,"channels":2,
  "encoding":"pcm_s16le"}``.
* Then binary frames, one per 20 ms of call audio: raw 16-bit little-endian PCM at 16 kHz, 2 channels
  interleaved, the customer on channel 0 (left), the assistant on channel 1 (right; silence when the
  assistant is not speaking). 8 kHz calls are resampled to 16 kHz (``audioop.ratecv``, state kept
  across frames).
* At the end of the call, one text frame ``{"type":"call-ended"}`` and a normal close (1000).
  A listener that falls behind (its queue of ``queue_frames`` frames is full) is dropped: close code
  1013 with reason ``listener too slow``; the call never waits for a listener.
* Anything the listener sends is ignored (pings are answered, a close is acknowledged).

Publishing side: the call's media path calls ``hub.publish(call_id, caller, assistant, rate)`` for every
20 ms frame. With no listener on the call it is one dict lookup; otherwise the frame is resampled (8 kHz
calls), interleaved once and the same ``bytes`` object is put on each listener's bounded queue with
``put_nowait``: O(listeners), never blocking, never switching greenlets. ``hub.close_call(call_id)`` at
hangup ends every listener of the call with ``call-ended``.

Usage::

    hub = default_hub()                       # one per process
    server = ListenServer("127.0.0.1", 0, hub)
    server.start()
    url = listen_url("wss://example.com", call_id)    # -> call.monitor.listenUrl
    ...
    hub.publish(call_id, caller_pcm16, assistant_pcm16_or_None, 8000)   # every frame
    hub.close_call(call_id)                   # at hangup
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.queue import Empty, Full, Queue
from gevent.server import StreamServer
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
)
from wsproto.events import BytesMessage as WsBytes
from wsproto.events import TextMessage as WsText
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from esl_controller.media.codecs import Resampler, stereo_interleave
from esl_controller.media.ws_socket import shutdown_and_close

log = logging.getLogger("esl_controller.media.listen")

OUT_RATE = 16000
START_MESSAGE = {"type": "start", "sampleRate": OUT_RATE, "channels": 2, "encoding": "pcm_s16le"}
END_MESSAGE = {"type": "call-ended"}
CLOSE_SLOW = (1013, "listener too slow")
CLOSE_ENDED = (1000, "call ended")
_END = object()
_RECENTLY_ENDED = 4096
RECV_SIZE = 4096


class Listener:
    """One supervisor connection as the hub sees it: a bounded queue of stereo frames."""

    def __init__(self, call_id: str, queue_frames: int) -> None:
        self.call_id = call_id
        self.queue: Queue = Queue(maxsize=max(1, queue_frames))
        self.dropped_reason: str | None = None
        self.close_code = CLOSE_SLOW[0]
        self.frames_sent = 0
        self.bytes_sent = 0

    def _end(self, flush: bool = False) -> None:
        """Queue the end marker, making room by discarding the oldest frames (all when ``flush``)."""
        while flush:
            try:
                self.queue.get_nowait()
            except Empty:
                break
        while True:
            try:
                self.queue.put_nowait(_END)
                return
            except Full:
                try:
                    self.queue.get_nowait()
                except Empty:
                    pass


class _Tap:
    """The listeners of one call and the call's resampling state."""

    __slots__ = ("listeners", "rate", "left", "right")

    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        self.rate = OUT_RATE
        self.left: Resampler | None = None
        self.right: Resampler | None = None

    def convert(self, caller: bytes, assistant: bytes | None, rate: int) -> bytes:
        if rate != OUT_RATE:
            if self.left is None or rate != self.rate:
                self.rate = rate
                self.left = Resampler(rate, OUT_RATE)
                self.right = Resampler(rate, OUT_RATE)
            caller = self.left.process(caller)
            if assistant:
                assert self.right is not None
                assistant = self.right.process(assistant)
        return stereo_interleave(caller, assistant or b"")


class ListenHub:
    """Per-process registry of listeners, tokens and the publish fan-out."""

    def __init__(
        self,
        *,
        secret: bytes | str | None = None,
        max_listeners_per_call: int = 4,
        queue_frames: int = 50,
    ) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        self._secret = secret or os.urandom(32)
        self.max_listeners_per_call = max_listeners_per_call
        self.queue_frames = queue_frames
        self._taps: dict[str, _Tap] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self.frames_published = 0
        self.listeners_dropped = 0
        self.listeners_total = 0

    # ---------------------------------------------------------------- tokens and URLs

    def issue_token(self, call_id: str) -> str:
        return hmac.new(self._secret, call_id.lower().encode(), hashlib.sha256).hexdigest()

    def check_token(self, call_id: str, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(self.issue_token(call_id), token)

    def listen_url(self, public_ws_base: str, call_id: str) -> str:
        base = public_ws_base.rstrip("/")
        return f"{base}/call/{call_id}/listen?token={self.issue_token(call_id)}"

    # ---------------------------------------------------------------- the media path

    def publish(
        self, call_id: str, caller_pcm16: bytes, assistant_pcm16: bytes | None, rate: int
    ) -> int:
        """One frame of the call to every listener; returns how many got it. Never blocks."""
        tap = self._taps.get(call_id)
        if tap is None or not tap.listeners:
            return 0
        frame = tap.convert(caller_pcm16, assistant_pcm16, rate)
        self.frames_published += 1
        delivered = 0
        for listener in tuple(tap.listeners):
            try:
                listener.queue.put_nowait(frame)
                delivered += 1
            except Full:
                self._drop(tap, listener, CLOSE_SLOW[1])
        return delivered

    def close_call(self, call_id: str) -> None:
        """The call ended: every listener gets ``call-ended``; later listeners are told at once."""
        self._ended[call_id] = None
        while len(self._ended) > _RECENTLY_ENDED:
            self._ended.popitem(last=False)
        tap = self._taps.pop(call_id, None)
        if tap is None:
            return
        for listener in tap.listeners:
            listener._end()
        tap.listeners.clear()

    def ended(self, call_id: str) -> bool:
        return call_id in self._ended

    def listeners(self, call_id: str) -> int:
        tap = self._taps.get(call_id)
        return len(tap.listeners) if tap else 0

    def stats(self) -> dict[str, int]:
        return {
            "calls": len(self._taps),
            "listeners": sum(len(t.listeners) for t in self._taps.values()),
            "listenersTotal": self.listeners_total,
            "listenersDropped": self.listeners_dropped,
            "framesPublished": self.frames_published,
        }

    # ---------------------------------------------------------------- listener side

    def add_listener(self, call_id: str) -> Listener | None:
        """A new listener for the call, or None when the call has its maximum."""
        tap = self._taps.get(call_id)
        if tap is None:
            tap = self._taps[call_id] = _Tap()
        if len(tap.listeners) >= self.max_listeners_per_call:
            return None
        listener = Listener(call_id, self.queue_frames)
        tap.listeners.append(listener)
        self.listeners_total += 1
        return listener

    def remove_listener(self, listener: Listener) -> None:
        tap = self._taps.get(listener.call_id)
        if tap is None:
            return
        if listener in tap.listeners:
            tap.listeners.remove(listener)
        if not tap.listeners:
            del self._taps[listener.call_id]

    def _drop(self, tap: _Tap, listener: Listener, reason: str, code: int = CLOSE_SLOW[0]) -> None:
        if listener in tap.listeners:
            tap.listeners.remove(listener)
        listener.dropped_reason = reason
        listener.close_code = code
        listener._end(flush=True)
        self.listeners_dropped += 1
        log.warning("call %s: listener dropped (%s)", listener.call_id, reason)

    def drop_all(self, code: int = 1001, reason: str = "server stopping") -> None:
        """Disconnect every listener of every call (the calls are not marked ended)."""
        for call_id, tap in list(self._taps.items()):
            for listener in tuple(tap.listeners):
                self._drop(tap, listener, reason, code)
            self._taps.pop(call_id, None)


_default: ListenHub | None = None


def default_hub() -> ListenHub:
    """The process-wide hub (created on first use with a random secret)."""
    global _default
    if _default is None:
        _default = ListenHub()
    return _default


def set_default_hub(hub: ListenHub) -> None:
    """Install a configured hub (e.g. with a secret shared by all nodes) as the process-wide one."""
    global _default
    _default = hub


def issue_token(call_id: str) -> str:
    return default_hub().issue_token(call_id)


def listen_url(public_ws_base: str, call_id: str) -> str:
    """``call.monitor.listenUrl`` for the call, served by this process's hub."""
    return default_hub().listen_url(public_ws_base, call_id)


def parse_target(target: str, prefix: str = "/call") -> tuple[str, str | None] | None:
    """``/call/<id>/listen?token=...`` -> (call_id, token), or None for any other path."""
    parts = urlsplit(target)
    path = parts.path.rstrip("/")
    if not path.startswith(prefix + "/") or not path.endswith("/listen"):
        return None
    call_id = path[len(prefix) + 1 : -len("/listen")]
    if not call_id or "/" in call_id:
        return None
    token = (parse_qs(parts.query).get("token") or [None])[0]
    return call_id.lower(), token


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                return rest.strip()
    return None


class _ListenConnection:
    """One listener socket: handshake, a reader greenlet (pings, close) and the writer loop."""

    def __init__(self, server: ListenServer, sock: socket.socket, address: Any) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self.ws = WSConnection(ConnectionType.SERVER)
        self._lock = Semaphore()
        self._done = False
        self._peer_closed = False
        self._peer_close_seen = Event()
        self._reader: gevent.Greenlet | None = None
        self.listener: Listener | None = None

    def _write(self, event: Any, timeout: float | None = None) -> None:
        with self._lock:
            data = self.ws.send(event)
            if data:
                limit = self.server.send_timeout if timeout is None else timeout
                with gevent.Timeout(limit, TimeoutError("listen send timed out")):
                    self.sock.sendall(data)

    def _abort(self) -> None:
        if self._done:
            return
        self._done = True
        shutdown_and_close(self.sock)

    def run(self) -> None:
        hub = self.server.hub
        try:
            self._serve()
        except (OSError, TimeoutError, LocalProtocolError, RemoteProtocolError) as exc:
            log.debug("listener %s: %s", self.address, exc)
        except Exception:
            log.exception("listener %s: unexpected error", self.address)
        finally:
            if self.listener is not None:
                hub.remove_listener(self.listener)
            self._abort()

    def _handshake(self) -> Request | None:
        deadline = time.monotonic() + self.server.handshake_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                return None
            if not data:
                return None
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, Request):
                    return event

    def _serve(self) -> None:
        request = self._handshake()
        if request is None:
            return
        parsed = parse_target(request.target, self.server.path_prefix)
        if parsed is None:
            self._write(RejectConnection(status_code=404))
            return
        call_id, token = parsed
        hub = self.server.hub
        if not hub.check_token(call_id, token or _bearer(list(request.extra_headers))):
            log.warning("listener %s: bad token for call %s", self.address, call_id)
            self._write(RejectConnection(status_code=403))
            return
        ended = hub.ended(call_id)
        if not ended and self.server.is_live is not None and not self.server.is_live(call_id):
            self._write(RejectConnection(status_code=404))
            return
        if not ended:
            self.listener = hub.add_listener(call_id)
            if self.listener is None:
                self._write(RejectConnection(status_code=429))
                return
        self._write(AcceptConnection())
        self.sock.settimeout(None)
        if ended:
            self._finish(CLOSE_ENDED, json.dumps(END_MESSAGE))
            return
        self._write(WsText(data=json.dumps({**START_MESSAGE, "callId": call_id})))
        log.info("call %s: listener connected from %s", call_id, self.address)
        self._reader = gevent.spawn(self._read_loop)
        try:
            self._write_loop(self.listener)
        finally:
            self._reader.kill(block=False)

    def _write_loop(self, listener: Listener) -> None:
        idle = self.server.idle_timeout
        last = time.monotonic()
        while not self._peer_closed:
            try:
                item = listener.queue.get_nowait()  # no timer when audio is waiting
            except Empty:
                item = None
            if item is None:
                try:
                    item = listener.queue.get(timeout=min(1.0, idle))
                except Empty:
                    item = None
            if item is None:
                if time.monotonic() - last > idle:
                    self._finish((1001, "no audio"), None)
                    return
                continue
            if item is _END:
                if listener.dropped_reason:
                    self._finish((listener.close_code, listener.dropped_reason), None)
                else:
                    self._finish(CLOSE_ENDED, json.dumps(END_MESSAGE))
                return
            last = time.monotonic()
            self._write(WsBytes(data=item))
            listener.frames_sent += 1
            listener.bytes_sent += len(item)

    def _finish(self, close: tuple[int, str], text: str | None) -> None:
        """Last text (if any) and a close frame, each bounded by ``close_timeout``; then the socket goes."""
        if self._peer_closed:
            return
        limit = self.server.close_timeout
        try:
            if text is not None:
                self._write(WsText(data=text), timeout=limit)
            self._write(CloseConnection(code=close[0], reason=close[1]), timeout=limit)
        except (OSError, TimeoutError, LocalProtocolError) as exc:
            log.debug("listener %s: close not sent: %s", self.address, exc)
            return
        # wait (bounded) for the peer's close so that it reads everything before the FIN
        if self._reader is not None and not self._reader.dead:
            self._peer_close_seen.wait(timeout=limit)
            return
        self.sock.settimeout(limit)
        try:
            while not self._peer_closed:
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    return
                self._feed(data)
        except (OSError, TimeoutError, RemoteProtocolError):
            return

    def _read_loop(self) -> None:
        try:
            while not self._peer_closed:
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    self._peer_closed = True
                    break
                self._feed(data)
        except (OSError, RemoteProtocolError, LocalProtocolError, TimeoutError):
            self._peer_closed = True
        self._peer_close_seen.set()
        if self.listener is not None:
            self.server.hub.remove_listener(self.listener)
            self.listener._end()  # wake the writer

    def _feed(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Ping):
                self._write(event.response())
            elif isinstance(event, CloseConnection):
                if not self._peer_closed:
                    self._peer_closed = True
                    try:
                        self._write(event.response(), timeout=self.server.close_timeout)
                    except (OSError, TimeoutError, LocalProtocolError):
                        pass


class ListenServer:
    """WebSocket server for ``/call/<id>/listen`` (gevent StreamServer + wsproto)."""

    def __init__(
        self,
        host: str,
        port: int,
        hub: ListenHub | None = None,
        *,
        path_prefix: str = "/call",
        is_live: Callable[[str], bool] | None = None,
        handshake_timeout: float = 10.0,
        send_timeout: float = 5.0,
        close_timeout: float = 2.0,
        idle_timeout: float = 60.0,
        send_buffer: int | None = 65536,
    ) -> None:
        self.hub = hub or default_hub()
        self.path_prefix = path_prefix
        #: optional check that the call is live on this node (unknown calls are refused with 404)
        self.is_live = is_live
        self.handshake_timeout = handshake_timeout
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.idle_timeout = idle_timeout
        self.send_buffer = send_buffer
        self._server = StreamServer((host, port), self._handle)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_host, self._server.server_port

    def start(self) -> None:
        self._server.start()
        log.info("listen server on %s:%d", *self.address)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting; listeners are closed with 1001 (their handlers finish within ``timeout``)."""
        self._server.close()
        self.hub.drop_all()
        self._server.stop(timeout=timeout)

    def _handle(self, sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.send_buffer:
            # bounds what the kernel holds for a slow listener: then its queue fills and it is dropped
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        _ListenConnection(self, sock, address).run()
