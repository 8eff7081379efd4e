"""mod_audio_fork WebSocket server (I/O): gevent StreamServer + wsproto + a lean frame parser.

wsproto does the handshake, every frame the server sends and the received control frames; the
received data frames (the audio, at 50 a second per call) go through ``ws_lean``, which costs a
fraction of wsproto per frame.

A greenlet per connection does the handshake and then hands the socket to the server's
``BatchReader`` (one greenlet reads every call's socket, a few milliseconds at a time, instead of one
hub wake-up per frame per call) and waits, enforcing the idle timeout. Frames are decoded with the
pure fork codec into fixed 20 ms audio frames and either handed inline to the stream's frame
handler or put on a bounded per-call queue (when the consumer falls behind, the oldest frame is
dropped and counted): the ``ForkStream`` (``media.fork_stream``). ``on_stream(stream)`` runs in its
own greenlet once the first message (the metadata, or audio) has arrived, so ``stream.metadata`` is
known when it starts.

Usage::

    server = ForkServer("127.0.0.1", 0, on_stream)
    server.start()
    ...  # uuid_audio_fork <uuid> start ws://127.0.0.1:<port>/fork/<call_id>?rate=16000 mono 16k
    server.stop()
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import AsyncResult
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

from esl_controller.media import fork_codec, ws_lean
from esl_controller.media.batch_reader import BatchReader
from esl_controller.media.fork_codec import (
    AudioFrame,
    ClientText,
    EndOfAudio,
    ForkStreamDecoder,
    ForkTarget,
    Metadata,
)
from esl_controller.media.fork_stream import ForkStream, StreamClosed, describe
from esl_controller.media.ws_socket import ServerSocket

__all__ = ["ForkServer", "ForkStream", "StreamClosed", "describe"]

log = logging.getLogger("esl_controller.media.fork")

RECV_SIZE = 65536


class _Connection(ServerSocket):
    """The socket side of one fork: handshake, read loop, serialized writes."""

    what = "fork"

    def __init__(self, server: ForkServer, sock: socket.socket, address: Any) -> None:
        super().__init__(server, sock, address)
        self.stream: ForkStream | None = None
        self.target: ForkTarget | None = None
        self.subprotocol: str | None = None
        self.decoder: ForkStreamDecoder | None = None
        self._text_parts: list[str] = []
        self._binary_len = 0
        self._end_reason = "open"
        self.path = ""
        self._idle = False
        self._last_rx = time.monotonic()
        self._parser = ws_lean.ClientFrameParser()
        self._ended: AsyncResult = AsyncResult()
        self._pending_close: tuple[int, str] | None = None

    # ---------------------------------------------------------------- writes

    def send_text(self, text: str) -> None:
        if self._closing or self._done:
            raise StreamClosed("fork connection is closing")
        try:
            self._write(self.ws.send(TextMessage(data=text)))
        except LocalProtocolError as exc:
            raise StreamClosed(str(exc)) from exc

    # ---------------------------------------------------------------- reading

    def run(self) -> None:
        reason = "closed"
        try:
            reason = self._run()
            if self._pending_close is not None:
                self.close(*self._pending_close)
        except (OSError, TimeoutError) as exc:
            reason = f"socket error: {exc}"
        except RemoteProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.warning("fork %s: %s", self.address, exc)
        except Exception:
            reason = "internal error"
            log.exception("fork %s: unexpected error", self.address)
        finally:
            if self.stream is not None:
                self.stream._finish(reason)
                self.server._forget(self.stream)
                log.info(
                    "call %s: fork ended (%s) %s",
                    self.stream.call_id,
                    reason,
                    self.stream.counters(),
                )
            self._abort()
            self.stream = None  # the session keeps its own; no cycle keeps an ended connection

    def _recv(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(RECV_SIZE)
        except TimeoutError:
            return None

    def _run(self) -> str:
        deadline = time.monotonic() + self.server.handshake_timeout
        while self.target is None:
            remaining = deadline - time.monotonic()
            data = self._recv(max(0.01, remaining)) if remaining > 0 else None
            if data is None:
                return "handshake timeout"
            if not data:
                return "closed during handshake"
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, Request):
                    if not self._accept(event):
                        return "rejected"
                    break  # frames that came with the handshake stay buffered in wsproto
        # Bytes that followed the handshake in the same read (h11 keeps them; wsproto's server
        # side does not pass them on) go to the lean parser first.
        leftover = self._handshake_leftover()
        self.sock.settimeout(None)
        self._last_rx = time.monotonic()
        return self._read_batched(leftover)

    def _handshake_leftover(self) -> bytes:
        handshake = getattr(self.ws, "handshake", None)
        h11_conn = getattr(handshake, "_h11_connection", None)
        trailing = getattr(h11_conn, "trailing_data", None)
        if trailing and trailing[0]:
            return bytes(trailing[0])
        return b""

    def _read_batched(self, leftover: bytes) -> str:
        """Hand the socket to the server's batch reader and wait (enforcing the idle timeout) until
        reading ends; the reason it ended."""
        reader = self.server.reader
        if leftover and not self.on_data(leftover, time.monotonic()):
            return self._ended.get(block=False)  # on_data ends the read before it says False
        reader.add(self.sock, self)
        period = max(0.05, min(self.server.idle_timeout / 4.0, 5.0))
        try:
            while True:
                try:
                    return self._ended.get(timeout=period)
                except gevent.Timeout:
                    pass
                if not self._idle and time.monotonic() - self._last_rx > self.server.idle_timeout:
                    self._idle = True
                    self.close(1001, "idle timeout")  # forced shut after close_timeout
        finally:
            reader.remove(self.sock)

    def _end_read(self, reason: str) -> None:
        if not self._ended.ready():
            self._ended.set(reason)

    # BatchTarget: runs in the batch reader's greenlet, so nothing here may block (see _write).
    def on_data(self, data: bytes, received_at: float) -> bool:
        """Bytes from the socket: data frames through the lean parser, control frames through wsproto."""
        self._last_rx = received_at
        if self._idle:
            self._end_read("idle timeout")
            return False
        decoder = self.decoder
        if decoder is not None and not self._binary_len:  # one whole 20 ms frame: the usual case
            payload = self._parser.single_binary(data)
            if payload is not None:
                frame = decoder.whole_frame(payload)
                if frame is not None:
                    stream = self.stream
                    stream.bytes_in += len(payload)  # type: ignore[union-attr]
                    stream._put_frame(frame, received_at)  # type: ignore[union-attr]
                    return True
                self._binary_part(payload, True, received_at)
                return self._end_reason == "open" or self._finish_read()
        try:
            events = self._parser.feed(data)
        except ws_lean.ParseError as exc:
            log.warning("fork %s: protocol error: %s", self.address, exc)
            self._pending_close = (exc.code, str(exc)[:100])
            self._end_read(f"protocol error: {exc}")
            return False
        if self._handle_lean(events, received_at):
            return True
        return self._finish_read()

    def _finish_read(self) -> bool:
        self._end_read(self._end_reason)
        return False

    def on_closed(self, reason: str) -> None:
        if self._ended.ready():
            return
        if self._idle:
            self._end_read("idle timeout")
        elif reason == "eof":
            self.ws.receive_data(None)
            self._handle_events()
            self._end_read(self._end_reason if self._end_reason != "open" else "abrupt disconnect")
        elif reason.startswith("error: "):
            self._end_read(f"socket {reason}")
        elif reason == "reader stopped":
            self._end_read("server stopping")
        else:
            self._end_read(self._end_reason if self._end_reason != "open" else reason)

    def _write(self, data: bytes) -> None:
        # From the batch reader's greenlet (a pong, a close reply, a frame handler's send_text), a
        # write that has to wait would stall every call's audio: hand it to a greenlet of its own.
        if self.server.reader.in_reader():
            gevent.spawn(self._write_detached, data)
            return
        super()._write(data)

    def _write_detached(self, data: bytes) -> None:
        try:
            super()._write(data)
        except (OSError, TimeoutError) as exc:
            log.debug("fork %s: write failed: %s", self.address, exc)
            self._abort()

    def _abort(self) -> None:
        if self._done:
            return
        self.server.reader.remove(
            self.sock
        )  # before the descriptor is closed and its number reused
        super()._abort()
        self._end_read("idle timeout" if self._idle else "aborted")

    def _handle_lean(self, events: list[ws_lean.LeanEvent], received_at: float) -> bool:
        """Process lean-parser events; False once the connection is finished."""
        for event in events:
            if type(event) is ws_lean.BinaryData:
                self._binary_part(event.data, event.message_finished, received_at)
            elif type(event) is ws_lean.TextData:
                self._text_part(event.data, event.message_finished)
            else:  # a control frame: wsproto keeps the close handshake state
                self.ws.receive_data(event.raw)
                if not self._handle_events():
                    return False
            if self._end_reason != "open":
                return False
        return True

    def _binary_part(self, data: bytes, finished: bool, received_at: float) -> None:
        """Part of a binary message (from either parser); an empty message is the end-of-audio marker."""
        if finished and data and not self._binary_len:
            self._on_binary(data, received_at)  # a whole message: the usual case
            return
        self._binary_len += len(data)
        if data:
            self._on_binary(data, received_at)
        if finished:
            if self._binary_len == 0:
                self._on_binary(b"", received_at)
            self._binary_len = 0

    def _text_part(self, data: str, finished: bool) -> None:
        self._text_parts.append(data)
        if finished:
            text = "".join(self._text_parts)
            self._text_parts = []
            self._on_text(text)

    def _accept(self, request: Request) -> bool:
        try:
            target = fork_codec.parse_target(request.target, self.server.path_prefix)
        except ValueError as exc:
            log.warning("fork %s: bad target %r: %s", self.address, request.target, exc)
            target = None
        if target is None:
            self._write(self.ws.send(RejectConnection(status_code=404)))
            return False
        self.target = target
        self.subprotocol = fork_codec.choose_subprotocol(list(request.subprotocols))
        self._write(self.ws.send(AcceptConnection(subprotocol=self.subprotocol)))
        self.path = request.target
        return True

    def _handle_events(self) -> bool:
        """Process queued wsproto events; False once the connection is finished."""
        received_at = time.monotonic()
        for event in self.ws.events():
            if isinstance(event, BytesMessage):
                self._binary_part(event.data, event.message_finished, received_at)
            elif isinstance(event, TextMessage):
                self._text_part(event.data, event.message_finished)
            elif isinstance(event, Ping):
                self._write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if event.code == 1006:  # wsproto's marker for EOF without a close frame
                    self._end_reason = "abrupt disconnect"
                elif not self._closing:
                    try:
                        self._write(self.ws.send(event.response()))
                    except LocalProtocolError:
                        pass
                    self._end_reason = f"closed by peer ({event.code})"
                else:
                    self._end_reason = "closed by server"
                return False
            if self._end_reason != "open":
                return False
        return True

    def _ensure_stream(self, metadata: dict[str, Any] | str | None) -> bool:
        if self.stream is not None:
            return True
        assert self.target is not None
        call_id = self.target.call_id or fork_codec.metadata_call_id(metadata)
        if not call_id:
            log.warning("fork %s: no call id in path or metadata", self.address)
            self.close(1008, "no call id")
            self._end_reason = "no call id"
            return False
        try:
            rate = (
                self.target.sample_rate
                or fork_codec.metadata_rate(metadata)
                or self.server.default_sample_rate
            )
        except ValueError as exc:
            self.close(1003, str(exc)[:100])
            self._end_reason = "bad sample rate"
            return False
        mix = self.target.mix or fork_codec.metadata_mix(metadata) or self.server.default_mix
        self.decoder = ForkStreamDecoder(rate, mix)
        self.stream = ForkStream(
            self,
            call_id,
            metadata,
            rate,
            mix,
            self.path,
            self.subprotocol,
            self.server.queue_frames,
        )
        self.server._register(self.stream)
        return True

    def _on_text(self, text: str) -> None:
        if self.decoder is None:
            metadata = fork_codec.parse_metadata(text)
            if not self._ensure_stream(metadata):
                return
            assert self.decoder is not None
        for event in self.decoder.receive_text(text):
            if isinstance(event, ClientText):
                assert self.stream is not None
                self.stream._put_text(event.text)
            elif isinstance(event, Metadata):
                log.debug("call %s: fork metadata %s", self.stream.call_id, event.raw[:200])

    def _on_binary(self, data: bytes, received_at: float) -> None:
        if self.decoder is None and not self._ensure_stream(None):
            return
        assert self.decoder is not None and self.stream is not None
        if not data:
            self.decoder.receive_binary(b"")
            self.stream.ended_gracefully = True
            for event in self.decoder.flush():
                if isinstance(event, AudioFrame):
                    self.stream._put_frame(event, received_at)
            return
        stream = self.stream
        stream.bytes_in += len(data)
        for event in self.decoder.receive_binary(data):
            if type(event) is AudioFrame:
                stream._put_frame(event, received_at)
            elif isinstance(event, EndOfAudio):
                stream.ended_gracefully = True


class ForkServer:
    """WebSocket server for mod_audio_fork connections, one ``on_stream`` greenlet per call."""

    def __init__(
        self,
        host: str,
        port: int,
        on_stream: Callable[[ForkStream], None],
        *,
        path_prefix: str = "/fork",
        default_sample_rate: int = 16000,
        default_mix: str = "mono",
        queue_frames: int = 50,
        idle_timeout: float = 120.0,
        handshake_timeout: float = 10.0,
        send_timeout: float = 5.0,
        close_timeout: float = 5.0,
        read_interval: float = 0.005,
    ) -> None:
        self.on_stream = on_stream
        self.path_prefix = path_prefix
        self.default_sample_rate = default_sample_rate
        self.default_mix = default_mix
        self.queue_frames = queue_frames
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.streams: dict[str, ForkStream] = {}
        self.connections_total = 0
        self.frames_dropped_total = 0
        self._server = StreamServer((host, port), self._handle)
        # one greenlet reads every call's socket, a tick (read_interval) at a time
        self.reader = BatchReader(interval=read_interval, name="fork")

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_host, self._server.server_port

    def start(self) -> None:
        self.reader.start()
        self._server.start()
        log.info("fork server listening on %s:%d", *self.address)

    def stop(self, timeout: float = 5.0) -> None:
        for stream in list(self.streams.values()):
            stream.close(1001, "server stopping")
        self._server.stop(timeout=timeout)
        self.reader.stop(timeout=timeout)

    def get(self, call_id: str) -> ForkStream | None:
        return self.streams.get(call_id)

    def _handle(self, sock: socket.socket, address: Any) -> None:
        self.connections_total += 1
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _Connection(self, sock, address).run()

    def _register(self, stream: ForkStream) -> None:
        old = self.streams.get(stream.call_id)
        if old is not None:
            log.warning("call %s: second fork connection replaces the first", stream.call_id)
        self.streams[stream.call_id] = stream
        log.info(
            "call %s: fork connected (%d Hz %s, subprotocol %s)",
            stream.call_id,
            stream.sample_rate,
            stream.mix,
            stream.subprotocol,
        )
        gevent.spawn(self._run_sink, stream)

    def _forget(self, stream: ForkStream) -> None:
        self.frames_dropped_total += stream.frames_dropped
        if self.streams.get(stream.call_id) is stream:
            del self.streams[stream.call_id]

    def _run_sink(self, stream: ForkStream) -> None:
        try:
            self.on_stream(stream)
        except Exception:
            log.exception("call %s: fork stream handler failed", stream.call_id)
            stream.close(1011, "handler error")
