"""The recording writer process's wire format (pure: bytes in, messages out).

The hub (``media.recording_process.ProcessRecordingWriter``) and its writer process talk over one
Unix stream socket. Every message is a fixed header and up to two payloads:

    kind:u8  files:u32  a:i64  b:i64  len1:u32  len2:u32    (little-endian, 29 bytes)

To the writer:

* ``OPEN``   files, a = sample rate, payload 1 = JSON ``{"mono": path|null, "stereo": path|null}``.
  The files exist already (the hub created them with an empty header); the writer appends to them.
* ``AUDIO``  files, a = position (samples from the start of the recording), b = samples,
  payload 1 = caller L16, payload 2 = assistant L16 (may be empty). Positions make a message
  idempotent: audio the file already holds is skipped, and a hole before it is filled with silence
  (reported back as ``GAP``: audio lost in a writer that died).
* ``SILENCE`` files, a = position, b = samples: audio the hub dropped itself (counted there).
* ``SYNC``   a = token: answered with ``DONE`` once everything before it is written.
* ``CLOSE``  files, a = token, b = final position: pad to it, close, answer ``DONE``.

From the writer: ``DONE`` (files, a = token, payload 1 = error text or empty), ``ERROR`` (files,
payload 1 = why writing stopped for those files), ``GAP`` (files, a = samples filled with silence).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

OPEN, AUDIO, SILENCE, SYNC, CLOSE = 1, 2, 3, 4, 5
DONE, ERROR, GAP = 11, 12, 13
KINDS = frozenset((OPEN, AUDIO, SILENCE, SYNC, CLOSE, DONE, ERROR, GAP))

HEADER = struct.Struct("<BIqqII")
MAX_PAYLOAD = 64 << 20  # one message's payload; a bigger length means a corrupt stream


class WireError(ValueError):
    """The byte stream is not a valid message sequence (the peer is not ours, or is broken)."""


@dataclass(slots=True)
class Message:
    kind: int
    files: int
    a: int = 0
    b: int = 0
    payload1: bytes = b""
    payload2: bytes = b""

    @property
    def text(self) -> str:
        return self.payload1.decode("utf-8", "replace")


def header(kind: int, files: int, a: int = 0, b: int = 0, len1: int = 0, len2: int = 0) -> bytes:
    return HEADER.pack(kind, files, a, b, len1, len2)


def encode(message: Message) -> bytes:
    """One message as bytes (the hub's hot path builds the header alone and sends the payloads as
    separate buffers, without this copy)."""
    return (
        header(
            message.kind,
            message.files,
            message.a,
            message.b,
            len(message.payload1),
            len(message.payload2),
        )
        + message.payload1
        + message.payload2
    )


def open_message(files: int, sample_rate: int, mono: str | None, stereo: str | None) -> bytes:
    body = json.dumps({"mono": mono, "stereo": stereo}).encode()
    return encode(Message(OPEN, files, sample_rate, 0, body))


def open_paths(message: Message) -> tuple[str | None, str | None]:
    """The mono and stereo paths of an ``OPEN``; WireError when the body is not ours."""
    try:
        body = json.loads(message.payload1)
        mono, stereo = body["mono"], body["stereo"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"bad OPEN body: {exc}") from exc
    for path in (mono, stereo):
        if path is not None and not isinstance(path, str):
            raise WireError("bad OPEN body: paths must be strings or null")
    if mono is None and stereo is None:
        raise WireError("bad OPEN body: no file")
    return mono, stereo


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
            kind, files, a, b, len1, len2 = HEADER.unpack_from(buf, pos)
            if kind not in KINDS:
                raise WireError(f"unknown message kind {kind}")
            if len1 + len2 > MAX_PAYLOAD:
                raise WireError(f"message payload of {len1 + len2} bytes")
            stop = pos + size + len1 + len2
            if stop > end:
                break
            p1 = pos + size
            out.append(
                Message(kind, files, a, b, bytes(buf[p1 : p1 + len1]), bytes(buf[p1 + len1 : stop]))
            )
            pos = stop
        if pos:
            del buf[:pos]
        return out
