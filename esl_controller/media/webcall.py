"""Web-call WebSocket transport (I/O): gevent StreamServer + wsproto, shaped like Vapi's websocket transport.

A client connects to ``/call/<call_id>/ws?token=...`` (optionally ``&sampleRate=8000|16000&format=pcm_s16le|mulaw``).
The ``on_connect(call_id, token)`` hook decides access: it returns a :class:`WebCallSession` or None (HTTP 403).
Then, on the socket:

* client -> server: an optional first text frame ``{"type": "start", "sampleRate": 16000, "format": "pcm_s16le"}``
  (or ``"audioFormat": {format, sampleRate}`` as in Vapi's ``transport``); binary frames of caller audio of any
  size (cut into 20 ms frames for ``on_audio``); JSON text frames with control bodies (the same as
  ``POST /call/:id/control``) and ``{"type": "hangup"}``;
* server -> client: binary frames of assistant audio paced in real time (:class:`~esl_controller.media.playout.
  Playout`), and JSON text frames: ``{"type": "transcript", role, transcriptType, transcript}``,
  ``{"type": "speech-update", status, role, turn}``, ``{"type": "clear"}`` on barge-in (drop buffered audio),
  ``{"type": "user-interrupted"}``, ``{"type": "error", message}`` and finally
  ``{"type": "call-ended", "endedReason": ...}`` before the close.

:class:`WebCallPort` is the pipeline's :class:`~esl_controller.pipeline.ports.MediaPort` for one such socket;
:class:`PipelineWebCallSession` wires a pipeline to it (what the call session does for real calls).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import gevent
from gevent.event import Event
from gevent.server import StreamServer
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from esl_controller.media.codecs import FrameChunker, ulaw_decode, ulaw_encode
from esl_controller.media.playout import Playout
from esl_controller.media.stream_clock import StreamClock
from esl_controller.media.ws_socket import ServerSocket
from esl_controller.pipeline.ports import PipelineNotice

log = logging.getLogger("esl_controller.media.webcall")

RECV_SIZE = 65536
FORMATS = ("pcm_s16le", "mulaw")
RATES = (8000, 16000)
MAX_TEXT = 64 * 1024


class WebCallClosed(Exception):
    pass


class WebCallSession(Protocol):
    """What the transport drives for one connected web call (returned by the ``on_connect`` hook)."""

    def on_start(self, port: WebCallPort) -> None: ...

    def on_audio(self, pcm16: bytes, at: float) -> None: ...

    def on_control(self, body: dict[str, Any]) -> None: ...

    def on_hangup(self) -> None: ...

    def on_close(self, reason: str) -> None: ...


ConnectHook = Callable[[str, str], "WebCallSession | None"]


def parse_path(target: str, prefix: str = "/call") -> tuple[str, dict[str, str]] | None:
    """``/call/<id>/ws?token=..`` -> (call id, query); None when the path is not a web-call socket."""
    parts = urlsplit(target)
    segments = [s for s in parts.path.split("/") if s]
    pre = [s for s in prefix.split("/") if s]
    if len(segments) != len(pre) + 2 or segments[: len(pre)] != pre or segments[-1] != "ws":
        return None
    call_id = segments[len(pre)]
    if not call_id or len(call_id) > 128:
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return call_id, query


def audio_format(options: dict[str, Any], default_rate: int) -> tuple[str, int]:
    """(format, sample rate) from a start message or the query string; ValueError when unsupported."""
    nested = options.get("audioFormat") if isinstance(options.get("audioFormat"), dict) else {}
    fmt = str(nested.get("format") or options.get("format") or "pcm_s16le")
    rate_value = nested.get("sampleRate") or options.get("sampleRate") or options.get("sample_rate")
    rate = int(rate_value) if rate_value else (8000 if fmt == "mulaw" else default_rate)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if rate not in RATES:
        raise ValueError(f"sampleRate must be one of {', '.join(map(str, RATES))}")
    return fmt, rate


class WebCallPort:
    """MediaPort of one web call. ``notice_sink`` (set by the session) also receives every notice."""

    def __init__(self, conn: _Connection, call_id: str, sample_rate: int, fmt: str) -> None:
        self._conn = conn
        self.call_id = call_id
        self.sample_rate = sample_rate
        self.format = fmt
        self.notice_sink: Callable[[PipelineNotice], None] | None = None
        self.playout = Playout(sample_rate, self._send_frame, name=call_id)
        self.ended_reason: str | None = None
        #: a ``media.background.BackgroundMixer`` mixed under every chunk of speech (backgroundSound;
        #: web calls default to off, the pipeline factory sets it when the assistant asks for one)
        self.background: Any = None

    def _send_frame(self, frame: bytes) -> None:
        self._conn.send_bytes(ulaw_encode(frame) if self.format == "mulaw" else frame)

    # MediaPort
    def play(self, pcm16: bytes, *, text: str = "") -> None:
        if self.background is not None and pcm16:
            pcm16 = self.background.mix(pcm16)
        self.playout.enqueue(pcm16)

    def stop_playback(self) -> float:
        heard = self.playout.stop()
        self.send_json({"type": "clear"})
        return heard

    def playing(self) -> bool:
        return self.playout.playing()

    def unplayed_seconds(self) -> float:
        """At least this long until the client has heard all the speech queued so far."""
        return self.playout.unplayed_seconds()

    def notify(self, notice: PipelineNotice) -> None:
        message = client_message(notice)
        if message is not None:
            self.send_json(message)
        if self.notice_sink is not None:
            try:
                self.notice_sink(notice)
            except Exception:  # noqa: BLE001 - never raise into the pipeline
                log.exception("call %s: notice sink failed", self.call_id)

    # transport
    def send_json(self, message: dict[str, Any]) -> None:
        try:
            self._conn.send_text(json.dumps(message, separators=(",", ":")))
        except (WebCallClosed, OSError, TimeoutError) as exc:
            log.debug("call %s: web message not sent: %s", self.call_id, exc)

    def end(self, reason: str, grace: float = 0.0) -> None:
        """The call ended: tell the client why and close the socket (after ``grace`` seconds of audio)."""
        if self.ended_reason is not None:
            return
        self.ended_reason = reason
        if grace > 0:
            deadline = time.monotonic() + grace
            while self.playout.playing() and time.monotonic() < deadline:
                gevent.sleep(0.02)
        self.playout.close()
        self.send_json({"type": "call-ended", "endedReason": reason})
        self._conn.close(1000, "call ended")


def client_message(notice: PipelineNotice) -> dict[str, Any] | None:
    """The JSON a web client gets for a pipeline notice (None: not sent to the client)."""
    data = notice.data
    if notice.kind == "transcript":
        return {"type": "transcript", **data}
    if notice.kind == "speech":
        return {"type": "speech-update", **data}
    if notice.kind == "interrupted":
        return {"type": "user-interrupted", "turn": data.get("turn")}
    if notice.kind == "error":
        return {
            "type": "error",
            "message": data.get("message", ""),
            "endedReason": data.get("endedReason"),
        }
    if notice.kind == "message":
        return {"type": "conversation-update", "message": data}
    return None


class _Connection(ServerSocket):
    what = "web call"

    def __init__(self, server: WebCallServer, sock: socket.socket, address: Any) -> None:
        super().__init__(server, sock, address)
        self.call_id = ""
        self.query: dict[str, str] = {}
        self.session: WebCallSession | None = None
        self.port: WebCallPort | None = None
        self._chunker: FrameChunker | None = None
        self._clock: StreamClock | None = None
        self._text: list[str] = []
        self._bin: list[bytes] = []
        self._t0 = time.monotonic()
        self.end_reason = "open"

    def send_bytes(self, data: bytes) -> None:
        if self._closing or self._done:
            raise WebCallClosed("closing")
        try:
            self._write(self.ws.send(BytesMessage(data=data)))
        except LocalProtocolError as exc:
            raise WebCallClosed(str(exc)) from exc

    def send_text(self, text: str) -> None:
        if self._closing or self._done:
            raise WebCallClosed("closing")
        try:
            self._write(self.ws.send(TextMessage(data=text)))
        except LocalProtocolError as exc:
            raise WebCallClosed(str(exc)) from exc

    # ------------------------------------------------------------------ reading

    def run(self) -> None:
        reason = "closed"
        try:
            reason = self._run()
        except (OSError, TimeoutError) as exc:
            reason = "idle timeout" if isinstance(exc, TimeoutError) else f"socket error: {exc}"
        except RemoteProtocolError as exc:
            reason = f"protocol error: {exc}"
        except Exception:
            reason = "internal error"
            log.exception("web call %s: unexpected error", self.call_id)
        finally:
            if self.port is not None:
                self.port.playout.close()
            if self.session is not None:
                try:
                    self.session.on_close(reason)
                except Exception:  # noqa: BLE001 - the session's bug must not leak the socket
                    log.exception("web call %s: on_close failed", self.call_id)
            if self.port is not None:
                self.server.active.pop(self.call_id, None)
            log.info("web call %s ended (%s)", self.call_id, reason)
            self._abort()

    def _run(self) -> str:
        self.sock.settimeout(self.server.handshake_timeout)
        while True:
            data = self.sock.recv(RECV_SIZE)
            if not data:
                return "closed during handshake"
            self.ws.receive_data(data)
            request = next((e for e in self.ws.events() if isinstance(e, Request)), None)
            if request is not None:
                break
        if not self._accept(request):
            return "rejected"
        self.sock.settimeout(self.server.idle_timeout)
        if not self._events():
            return self.end_reason
        while True:
            data = self.sock.recv(RECV_SIZE)
            if not data:
                self.ws.receive_data(None)
                self._events()
                return self.end_reason if self.end_reason != "open" else "abrupt disconnect"
            self.ws.receive_data(data)
            if not self._events():
                return self.end_reason

    def _accept(self, request: Request) -> bool:
        parsed = parse_path(request.target, self.server.path_prefix)
        if parsed is None:
            self._write(self.ws.send(RejectConnection(status_code=404)))
            return False
        self.call_id, self.query = parsed
        token = self.query.get("token", "")
        try:
            session = self.server.on_connect(self.call_id, token)
        except Exception:  # noqa: BLE001 - a failing hook denies access
            log.exception("web call %s: on_connect failed", self.call_id)
            session = None
        if session is None:
            log.info("web call %s: access denied", self.call_id)
            self._write(self.ws.send(RejectConnection(status_code=403)))
            return False
        self.session = session
        self._write(self.ws.send(AcceptConnection()))
        return True

    def _events(self) -> bool:
        for event in self.ws.events():
            if isinstance(event, BytesMessage):
                self._bin.append(event.data)
                if event.message_finished:
                    data, self._bin = b"".join(self._bin), []
                    self._on_audio(data)
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if sum(map(len, self._text)) > MAX_TEXT:
                    self.close(1009, "message too big")
                    self.end_reason = "message too big"
                    return False
                if event.message_finished:
                    text, self._text = "".join(self._text), []
                    self._on_text(text)
            elif isinstance(event, Ping):
                self._write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if not self._closing and event.code != 1006:
                    try:
                        self._write(self.ws.send(event.response()))
                    except LocalProtocolError:
                        pass
                self.end_reason = (
                    "abrupt disconnect" if event.code == 1006 else f"closed ({event.code})"
                )
                return False
            if self.end_reason != "open":
                return False
        return True

    def _ensure_port(self, options: dict[str, Any]) -> bool:
        if self.port is not None:
            return True
        try:
            fmt, rate = audio_format({**self.query, **options}, self.server.default_sample_rate)
        except ValueError as exc:
            self.send_text(json.dumps({"type": "error", "message": str(exc)}))
            self.close(1003, "unsupported audio format")
            self.end_reason = "unsupported audio format"
            return False
        self.port = WebCallPort(self, self.call_id, rate, fmt)
        self._chunker = FrameChunker(rate)
        self._clock = StreamClock(self._chunker.frame_ms / 1000.0)
        self._t0 = time.monotonic()
        self.server.active[self.call_id] = self.port
        assert self.session is not None
        self.session.on_start(self.port)
        return True

    def _on_audio(self, data: bytes) -> None:
        if not data or not self._ensure_port({}):
            return
        assert self._chunker is not None and self._clock is not None
        assert self.port is not None and self.session is not None
        pcm = ulaw_decode(data) if self.port.format == "mulaw" else data
        # each frame at its place in the stream, not at its chunk's arrival (see media.stream_clock)
        self._clock.arrived(time.monotonic() - self._t0, len(pcm) / (2.0 * self.port.sample_rate))
        for frame in self._chunker.push(pcm):
            self.session.on_audio(frame, self._clock.next_frame())

    def _on_text(self, text: str) -> None:
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.send_text(
                json.dumps({"type": "error", "message": "text frames must be JSON objects"})
            )
            return
        kind = body.get("type")
        if kind == "start":
            self._ensure_port(body)
            return
        if not self._ensure_port({}):
            return
        assert self.session is not None
        if kind in ("hangup", "end-call"):
            self.session.on_hangup()
        else:
            self.session.on_control(body)


class WebCallServer:
    """The web-call WebSocket server. ``on_connect(call_id, token)`` returns a session or None (403)."""

    def __init__(
        self,
        host: str,
        port: int,
        on_connect: ConnectHook,
        *,
        path_prefix: str = "/call",
        default_sample_rate: int = 16000,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        send_timeout: float = 5.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.on_connect = on_connect
        self.path_prefix = path_prefix
        self.default_sample_rate = default_sample_rate
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.active: dict[str, WebCallPort] = {}
        self._server = StreamServer((host, port), self._handle)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_host, self._server.server_port

    def start(self) -> None:
        self._server.start()
        log.info("web-call server listening on %s:%d", *self.address)

    def stop(self, timeout: float = 5.0) -> None:
        for port in list(self.active.values()):
            port.end("worker-shutdown")
        self._server.stop(timeout=timeout)

    def _handle(self, sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _Connection(self, sock, address).run()


class PipelineWebCallSession:
    """A ready-made :class:`WebCallSession` that runs one pipeline: ``factory(port) -> Pipeline``.

    End-call, transfer and fatal error notices end the web call (``call-ended`` with the Vapi reason; a
    transfer cannot be carried out on a web call and ends it with ``assistant-forwarded-call``); a hangup from
    the client ends it with ``customer-ended-call``. ``on_notice`` also gets every notice (for call logs).
    """

    def __init__(
        self,
        factory: Callable[[WebCallPort], Any],
        on_notice: Callable[[PipelineNotice], None] | None = None,
    ) -> None:
        self.factory = factory
        self.on_notice = on_notice
        self.pipeline: Any = None
        self.port: WebCallPort | None = None
        self.closed_reason: str | None = None
        self.closed = Event()

    def on_start(self, port: WebCallPort) -> None:
        self.port = port
        port.notice_sink = self._notice
        self.pipeline = self.factory(port)
        self.pipeline.start()

    def _notice(self, notice: PipelineNotice) -> None:
        if self.on_notice is not None:
            self.on_notice(notice)
        assert self.port is not None
        reason = None
        if notice.kind == "end-call":
            reason = str(notice.data.get("reason") or "assistant-ended-call")
        elif notice.kind == "transfer":
            reason = "assistant-forwarded-call"
        elif notice.kind == "error" and notice.data.get("fatal"):
            reason = str(notice.data.get("endedReason") or "pipeline-error")
        if reason is not None:
            gevent.spawn(self.port.end, reason, 10.0)

    def on_audio(self, pcm16: bytes, at: float) -> None:
        self.pipeline.feed(pcm16, at)

    def on_control(self, body: dict[str, Any]) -> None:
        from esl_controller.calls.control import ControlError, EndCallCommand, parse_control

        assert self.port is not None
        try:
            command = parse_control(body)
        except ControlError as exc:
            self.port.send_json({"type": "error", "message": str(exc)})
            return
        if isinstance(command, EndCallCommand):
            gevent.spawn(self.port.end, "manually-canceled")
            return
        self.pipeline.control(command)

    def on_hangup(self) -> None:
        assert self.port is not None
        gevent.spawn(self.port.end, "customer-ended-call")

    def on_close(self, reason: str) -> None:
        self.closed_reason = reason
        if self.pipeline is not None:
            self.pipeline.stop()
        self.closed.set()
