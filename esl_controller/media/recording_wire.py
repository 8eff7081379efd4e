"""The recording process's wire format (pure: bytes in, messages out).

The hub (``media.recording_process``) and its recording process talk over one Unix stream socket.
Every message is a fixed header and up to two payloads:

    kind:u8  recording:u32  a:i64  b:i64  len1:u32  len2:u32    (little-endian, 29 bytes)

To the recording process:

* ``OPEN``      a = sample rate, payload 1 = JSON ``{"mono": path|null, "stereo": path|null,
  "hold": s, "flush": s, "phase": p}``. The files exist (the hub created them with an empty header);
  the process appends to them, so a recording it reopens after a restart goes on where its files end.
* ``CALLER`` / ``ASSISTANT``  a = call time of the first sample in nanoseconds, payload 1 = L16.
  The process places them with ``CallRecorder`` (time-aligned, gaps filled with silence).
* ``SYNC``      a = token: answered with ``DONE`` once everything before it is handled.
* ``CLOSE``     a = token, b = call time the recording runs to, in nanoseconds (silence after the
  last audio that arrived): commit the rest, close the files, answer ``DONE``.

From it: ``DONE`` (a = token, payload 1 = JSON counters: ``committed`` samples, ``late`` and
``dropped`` samples, ``error`` or null) and ``ERROR`` (payload 1 = why writing stopped).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

OPEN, CALLER, ASSISTANT, SYNC, CLOSE = 1, 2, 3, 4, 5
DONE, ERROR = 11, 12
KINDS = frozenset((OPEN, CALLER, ASSISTANT, SYNC, CLOSE, DONE, ERROR))

HEADER = struct.Struct("<BIqqII")
MAX_PAYLOAD = 64 << 20  # one message's payload; a bigger length means a corrupt stream


class WireError(ValueError):
    """The byte stream is not a valid message sequence (the peer is not ours, or is broken)."""


@dataclass(slots=True)
class Message:
    kind: int
    recording: int
    a: int = 0
    b: int = 0
    payload1: bytes = b""
    payload2: bytes = b""

    @property
    def text(self) -> str:
        return self.payload1.decode("utf-8", "replace")


def header(
    kind: int, recording: int, a: int = 0, b: int = 0, len1: int = 0, len2: int = 0
) -> bytes:
    return HEADER.pack(kind, recording, a, b, len1, len2)


def encode(message: Message) -> bytes:
    """One message as bytes (the hub's hot path builds the header alone and sends the payloads as
    separate buffers, without this copy)."""
    return (
        header(
            message.kind,
            message.recording,
            message.a,
            message.b,
            len(message.payload1),
            len(message.payload2),
        )
        + message.payload1
        + message.payload2
    )


@dataclass(frozen=True, slots=True)
class OpenRequest:
    mono: str | None
    stereo: str | None
    hold: float = 1.0
    flush: float = 1.0
    phase: float = 1.0


def open_message(recording: int, sample_rate: int, request: OpenRequest) -> bytes:
    body = json.dumps(
        {
            "mono": request.mono,
            "stereo": request.stereo,
            "hold": request.hold,
            "flush": request.flush,
            "phase": request.phase,
        }
    ).encode()
    return encode(Message(OPEN, recording, sample_rate, 0, body))


def open_request(message: Message) -> OpenRequest:
    """What an ``OPEN`` asks for; WireError when the body is not ours."""
    try:
        body = json.loads(message.payload1)
        request = OpenRequest(
            body["mono"], body["stereo"], float(body["hold"]), float(body["flush"]),
            float(body["phase"]),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"bad OPEN body: {exc}") from exc
    for path in (request.mono, request.stereo):
        if path is not None and not isinstance(path, str):
            raise WireError("bad OPEN body: paths must be strings or null")
    if request.mono is None and request.stereo is None:
        raise WireError("bad OPEN body: no file")
    return request


def counters_message(recording: int, token: int, counters: dict[str, Any]) -> bytes:
    return encode(Message(DONE, recording, token, 0, json.dumps(counters).encode()))


def counters(message: Message) -> dict[str, Any]:
    """The counters of a ``DONE`` (empty when it carries none)."""
    if not message.payload1:
        return {}
    try:
        value = json.loads(message.payload1)
    except ValueError as exc:
        raise WireError(f"bad DONE body: {exc}") from exc
    if not isinstance(value, dict):
        raise WireError("bad DONE body: not an object")
    return value


class MessageReader:
    """Feed received bytes, get whole messages back (a message may be cut anywhere)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        end = len(buf)
        size = HEADER.size
        while end - pos >= size:
            kind, recording, a, b, len1, len2 = HEADER.unpack_from(buf, pos)
            if kind not in KINDS:
                raise WireError(f"unknown message kind {kind}")
            if len1 + len2 > MAX_PAYLOAD:
                raise WireError(f"message payload of {len1 + len2} bytes")
            stop = pos + size + len1 + len2
            if stop > end:
                break
            p1 = pos + size
            out.append(
                Message(
                    kind, recording, a, b, bytes(buf[p1 : p1 + len1]), bytes(buf[p1 + len1 : stop])
                )
            )
            pos = stop
        if pos:
            del buf[:pos]
        return out
