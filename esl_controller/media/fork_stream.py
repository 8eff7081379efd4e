"""One mod_audio_fork stream as the call session sees it (``ForkStream``), apart from the socket.

The fork server's connection (``media.fork_server``) produces into it: audio frames either to the
handler set with ``set_frame_handler`` (inline, in the reader's greenlet) or onto a bounded queue
read with ``read``/``frames`` (the oldest frame dropped and counted when the reader falls behind),
and texts FreeSWITCH sent. The session writes through it (``send_text``, ``play_audio``,
``kill_audio``, ``close``), which the connection serialises onto the socket.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from gevent.event import Event
from gevent.queue import Empty, Full, Queue

from esl_controller.media import fork_codec
from esl_controller.media.fork_codec import AudioFrame

log = logging.getLogger("esl_controller.media.fork")


class StreamConnection(Protocol):
    """What a stream needs of its connection: serialised text writes and a close."""

    def send_text(self, text: str) -> None: ...

    def close(self, code: int = 1000, reason: str = "") -> None: ...


_END = object()


class StreamClosed(Exception):
    """The stream has ended and its queue is drained."""


class ForkStream:
    """One mod_audio_fork connection as the call session sees it."""

    def __init__(
        self,
        conn: StreamConnection,
        call_id: str,
        metadata: dict[str, Any] | str | None,
        sample_rate: int,
        mix: str,
        path: str,
        subprotocol: str | None,
        queue_frames: int,
    ) -> None:
        self._conn = conn
        self.call_id = call_id
        self.metadata = metadata
        self.sample_rate = sample_rate
        self.mix = mix
        self.channels = 2 if mix == "stereo" else 1
        self.path = path
        self.subprotocol = subprotocol
        self._frames: Queue = Queue(maxsize=max(1, queue_frames))
        self._texts: Queue = Queue(maxsize=64)
        self.closed = Event()
        self.close_reason: str | None = None
        self.ended_gracefully = False
        # counters
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_dropped = 0
        self.texts_in = 0
        self.texts_dropped = 0
        self.messages_out = 0
        self.bytes_out = 0
        self.started_at = time.monotonic()
        self.last_received_at: float | None = None
        self.handler_errors = 0
        self._handler: Callable[[AudioFrame], None] | None = None

    # ---------------------------------------------------------------- reading (consumer side)

    def read(self, timeout: float) -> AudioFrame | None:
        """Next audio frame, or None after ``timeout`` seconds; raises StreamClosed at the end."""
        if self._frames.qsize():
            item = self._frames.get_nowait()  # no timer set up when audio is waiting
        else:
            try:
                item = self._frames.get(timeout=timeout)
            except Empty:
                return None
        if item is _END:
            self._frames.put_nowait(_END)  # stay ended for later readers
            raise StreamClosed(self.close_reason or "closed")
        received_at, frame = item
        self.last_received_at = received_at
        return frame

    def frames(self, poll: float = 1.0) -> Iterator[AudioFrame]:
        """Iterate over audio frames until the stream ends (each wait bounded by ``poll``)."""
        while True:
            try:
                frame = self.read(poll)
            except StreamClosed:
                return
            if frame is not None:
                yield frame

    def read_text(self, timeout: float) -> str | None:
        """Next ``send_text`` text from FreeSWITCH, or None after ``timeout``."""
        try:
            return self._texts.get(timeout=timeout)
        except Empty:
            return None

    @property
    def queued(self) -> int:
        return self._frames.qsize()

    # ---------------------------------------------------------------- writing (to FreeSWITCH)

    def send_text(self, message: str | dict[str, Any]) -> None:
        """Send one text frame (a dict is encoded as compact JSON)."""
        if isinstance(message, dict):
            message = fork_codec.json_message(message)
        self._conn.send_text(message)
        self.messages_out += 1
        self.bytes_out += len(message)

    def play_audio(
        self, pcm: bytes, sample_rate: int | None = None, text: str | None = None
    ) -> None:
        self.send_text(fork_codec.play_audio(pcm, sample_rate or self.sample_rate, "raw", text))

    def kill_audio(self) -> None:
        self.send_text(fork_codec.kill_audio())

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket (FreeSWITCH fires ``mod_audio_fork::disconnect``)."""
        self._conn.close(code, reason)

    def counters(self) -> dict[str, int]:
        return {
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "frames_dropped": self.frames_dropped,
            "texts_in": self.texts_in,
            "texts_dropped": self.texts_dropped,
            "messages_out": self.messages_out,
            "bytes_out": self.bytes_out,
        }

    # ---------------------------------------------------------------- producer side (connection)

    def set_frame_handler(self, handler: Callable[[AudioFrame], None] | None) -> None:
        """Deliver frames inline, in the socket's greenlet, instead of through the queue.

        For cheap, non-blocking per-frame work (VAD, recording, handing audio to an STT worker
        pipe): it saves a queue hand-off and a greenlet switch per frame. The handler must not
        block; its exceptions are logged and counted, never fatal to the connection. Frames
        already queued stay readable with ``read()``.
        """
        self._handler = handler

    def _put_frame(self, frame: AudioFrame, received_at: float) -> None:
        self.frames_in += 1
        if self._handler is not None:
            self.last_received_at = received_at
            try:
                self._handler(frame)
            except Exception:
                self.handler_errors += 1
                if self.handler_errors == 1:
                    log.exception("call %s: frame handler failed", self.call_id)
            return
        item = (received_at, frame)
        try:
            self._frames.put_nowait(item)
        except Full:
            try:  # drop the oldest: late audio is worth less than current audio
                self._frames.get_nowait()
            except Empty:
                pass
            self.frames_dropped += 1
            if self.frames_dropped == 1 or self.frames_dropped % 500 == 0:
                log.warning(
                    "call %s: fork consumer behind, %d frames dropped",
                    self.call_id,
                    self.frames_dropped,
                )
            try:
                self._frames.put_nowait(item)
            except Full:
                self.frames_dropped += 1

    def _put_text(self, text: str) -> None:
        self.texts_in += 1
        try:
            self._texts.put_nowait(text)
        except Full:
            self.texts_dropped += 1

    def _finish(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self._handler = None  # no frame comes after the end (and the session's handler holds it)
        while True:
            try:
                self._frames.put_nowait(_END)
                break
            except Full:
                try:
                    self._frames.get_nowait()
                    self.frames_dropped += 1
                except Empty:
                    pass
        self.closed.set()


def describe(stream: ForkStream) -> str:
    """One-line JSON summary of a stream (for logs and debugging)."""
    return json.dumps(
        {
            "callId": stream.call_id,
            "rate": stream.sample_rate,
            "mix": stream.mix,
            **stream.counters(),
        },
        separators=(",", ":"),
    )
