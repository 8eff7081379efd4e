"""ESL wire protocol: an incremental frame parser and the serializers for both directions.

Pure code (bytes in, frozen dataclasses out; no sockets, no gevent). Used by the controller's
outbound server and inbound connection and by the FreeSWITCH peer in ``esl_controller.testing``.

Rules followed (see the project's FreeSWITCH protocol notes, sections 1 and 9):

* A frame is a header block ended by an empty line; ``Content-Length`` counts BYTES of body that
  follow. The block is split into lines on bytes first, then each header value is percent-decoded on
  its own (``%XX`` only, never ``+``). Bodies are never decoded.
* ``text/event-plain`` bodies hold a second header block (the event) and an optional inner body.
* Frames sent by a client start with a command line (``api status``); its header values are raw.
* Serializers refuse CR/LF inside a command line or a header (no frame injection).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote_to_bytes

MAX_HEADER_BLOCK = 10 * 1024 * 1024
MAX_BODY = 16 * 1024 * 1024
DISCONNECT_BODY = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
RUDE_REJECTION_BODY = b"Access Denied, go away.\n"

Headers = tuple[tuple[str, str], ...]


class ProtocolError(ValueError):
    """The byte stream is not valid ESL (bad Content-Length, header line without a colon, ...)."""


def _mapping(items: Headers) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for name, value in items:
        out.setdefault(name, value)  # first occurrence wins (repeated headers carry equal values)
    return MappingProxyType(out)


@dataclass(frozen=True)
class Frame:
    """One ESL frame: its headers in wire order (values decoded) and its raw body.

    ``command`` is the first line for frames sent by a client (``""`` for frames sent by FreeSWITCH).
    """

    items: Headers
    body: bytes = b""
    command: str = ""
    headers: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _mapping(self.items))

    def get(self, name: str, default: str | None = None) -> str | None:
        """Header lookup; exact name first, then case-insensitive (client header names are)."""
        if name in self.headers:
            return self.headers[name]
        lower = name.lower()
        for key, value in self.items:
            if key.lower() == lower:
                return value
        return default

    @property
    def content_type(self) -> str:
        return self.get("Content-Type", "") or ""

    @property
    def reply_text(self) -> str:
        return self.get("Reply-Text", "") or ""

    @property
    def ok(self) -> bool:
        """For a command/reply: ``Reply-Text`` starts with ``+OK``."""
        return self.reply_text.startswith("+OK")

    @property
    def body_text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Event:
    """A FreeSWITCH event: headers in insertion order (values decoded), optional raw body."""

    items: Headers
    body: bytes = b""
    headers: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _mapping(self.items))

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.items if key == name]

    def variable(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get("variable_" + name, default)

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")

    @property
    def unique_id(self) -> str:
        return self.headers.get("Unique-ID") or self.headers.get("variable_uuid") or ""

    @property
    def body_text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ApiResult:
    """The output of an ``api`` command or of a ``bgapi`` job (BACKGROUND_JOB body)."""

    body: str

    @property
    def ok(self) -> bool:
        return not self.body.startswith(("-ERR", "-USAGE"))

    @property
    def text(self) -> str:
        """The body without its trailing newline."""
        return self.body.rstrip("\n")

    @property
    def value(self) -> str:
        """``+OK <value>`` -> ``<value>``; ``-ERR <reason>`` -> ``<reason>``; else the text."""
        text = self.text
        for prefix in ("+OK", "-ERR", "-USAGE:"):
            if text.startswith(prefix):
                return text[len(prefix) :].strip()
        return text


@dataclass(frozen=True)
class DisconnectNotice:
    """A ``text/disconnect-notice`` frame: ``disposition`` is ``linger``, ``disconnect`` or ``""``."""

    disposition: str
    session_uuid: str = ""
    linger_time: str = ""
    body: bytes = b""


# --------------------------------------------------------------------------------------------
# Decoding


def percent_decode(value: bytes) -> str:
    """``%XX`` decoding of one header value (``+`` stays ``+``), then UTF-8 with replacement."""
    if b"%" not in value:
        return value.decode("utf-8", errors="replace")
    return unquote_to_bytes(value).decode("utf-8", errors="replace")


def _parse_header_lines(lines: Iterable[bytes], *, decode: bool) -> Headers:
    items: list[tuple[str, str]] = []
    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line:
            continue
        colon = line.find(b":")
        if colon <= 0:
            raise ProtocolError(f"malformed header line {bytes(line[:60])!r}")
        name = line[:colon].decode("utf-8", errors="replace").strip()
        value = line[colon + 1 :].lstrip(b" ")
        items.append((name, percent_decode(value) if decode else value.decode("utf-8", "replace")))
    return tuple(items)


def _content_length(items: Headers) -> int:
    raw = None
    for name, value in items:
        if name.lower() == "content-length":
            raw = value
            break
    if raw is None:
        return 0
    text = raw.strip()
    if not text.isdigit() or not text.isascii():
        raise ProtocolError(f"bad Content-Length {raw!r}")
    length = int(text)
    if length > MAX_BODY:
        raise ProtocolError(f"Content-Length {length} exceeds {MAX_BODY}")
    return length


class FrameParser:
    """Incremental parser: ``feed(bytes)``, then ``next_frame()`` until it returns ``None``.

    ``client_frames=True`` parses what a client sends to FreeSWITCH (first line = command, raw
    header values); otherwise frames sent by FreeSWITCH (all lines are headers, values decoded).
    After a ``ProtocolError`` the parser stays broken: every later call raises the same error.
    """

    def __init__(self, *, client_frames: bool = False) -> None:
        self._buf = bytearray()
        self._client = client_frames
        self._pending: tuple[Headers, str, int] | None = None  # headers parsed, waiting for body
        self._scan_from = 0
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._buf += data

    def feed_eof(self) -> None:
        """The peer closed: raise ``ProtocolError`` if a frame was cut in the middle."""
        if self._error is not None:
            raise self._error
        if self._pending is not None or self._buf.strip(b"\r\n"):
            self._error = ProtocolError(
                f"connection closed mid-frame ({len(self._buf)} bytes pending)"
            )
            raise self._error

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            yield frame

    def next_frame(self) -> Frame | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _next(self) -> Frame | None:
        buf = self._buf
        if self._pending is None:
            # Leading blank lines are discarded (FS does the same for client frames).
            strip = 0
            while strip < len(buf) and buf[strip] in (0x0A, 0x0D):
                strip += 1
            if strip:
                del buf[:strip]
                self._scan_from = 0
            end = buf.find(b"\n\n", max(self._scan_from - 1, 0))
            sep = 2
            if self._client:
                crlf = buf.find(b"\r\n\r\n", max(self._scan_from - 3, 0))
                if crlf != -1 and (end == -1 or crlf < end):
                    end, sep = crlf, 4
            if end == -1:
                if len(buf) > MAX_HEADER_BLOCK:
                    raise ProtocolError(f"header block exceeds {MAX_HEADER_BLOCK} bytes")
                self._scan_from = len(buf)
                return None
            block = bytes(buf[:end])
            del buf[: end + sep]
            self._scan_from = 0
            lines = block.split(b"\n")
            command = ""
            if self._client:
                command = lines[0].rstrip(b"\r").decode("utf-8", errors="replace")
                lines = lines[1:]
            items = _parse_header_lines(lines, decode=not self._client)
            self._pending = (items, command, _content_length(items))
        items, command, length = self._pending
        if len(buf) < length:
            return None
        body = bytes(buf[:length])
        del buf[:length]
        self._pending = None
        return Frame(items=items, body=body, command=command)


def parse_event(frame: Frame) -> Event:
    """The event carried by a ``text/event-plain`` or ``text/event-json`` frame."""
    ctype = frame.content_type
    if ctype == "text/event-plain":
        return parse_plain_event(frame.body)
    if ctype == "text/event-json":
        return parse_json_event(frame.body)
    raise ProtocolError(f"not an event frame: Content-Type {ctype!r}")


def parse_plain_event(data: bytes) -> Event:
    """Decode a serialized plain event: encoded header lines, blank line, optional raw body."""
    end = data.find(b"\n\n")
    block, rest = (data, b"") if end == -1 else (data[:end], data[end + 2 :])
    items = _parse_header_lines(block.split(b"\n"), decode=True)
    body = b""
    headers: list[tuple[str, str]] = []
    length = None
    for name, value in items:
        if name == "Content-Length" and length is None:
            length = value
            continue
        headers.append((name, value))
    if length is not None:
        n = _content_length((("Content-Length", length),))
        if len(rest) < n:
            raise ProtocolError(f"event body truncated: {len(rest)} of {n} bytes")
        body = rest[:n]
    return Event(items=tuple(headers), body=body)


def parse_json_event(data: bytes) -> Event:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"bad JSON event: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("JSON event is not an object")
    items: list[tuple[str, str]] = []
    body = b""
    for name, value in obj.items():
        if name == "_body":
            body = str(value).encode("utf-8")
        elif name == "Content-Length":
            continue
        elif isinstance(value, list):
            items.extend((name, str(v)) for v in value)
        else:
            items.append((name, str(value)))
    return Event(items=tuple(items), body=body)


def channel_data_from_reply(frame: Frame) -> Event:
    """The CHANNEL_DATA event carried in the headers of the outbound ``connect`` reply."""
    return Event(items=frame.items, body=frame.body)


def disconnect_notice(frame: Frame) -> DisconnectNotice:
    return DisconnectNotice(
        disposition=frame.get("Content-Disposition", "") or "",
        session_uuid=frame.get("Controlled-Session-UUID", "") or "",
        linger_time=frame.get("Linger-Time", "") or "",
        body=frame.body,
    )


# --------------------------------------------------------------------------------------------
# Encoding

_ENCODE = frozenset(b'\r\n #%&+:;<=>?@[\\]^`{|}"')
_HEX2 = re.compile(rb"%[0-9A-F]{2}")


def url_encode(value: str) -> str:
    """FreeSWITCH's ``switch_url_encode``: ``%XX`` for control/non-ASCII/reserved bytes, upper-case
    hex; a ``%`` already followed by two upper-case hex digits is copied as is."""
    raw = value.encode("utf-8")
    out: list[str] = []
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x25 and _HEX2.match(raw, i):
            out.append(raw[i : i + 3].decode("ascii"))
            i += 3
            continue
        if b < 0x20 or b > 0x7E or b in _ENCODE:
            out.append(f"%{b:02X}")
        else:
            out.append(chr(b))
        i += 1
    return "".join(out)


def _check_line(text: str, what: str) -> None:
    if "\n" in text or "\r" in text:
        raise ProtocolError(f"{what} must be a single line: {text!r}")


def _header_block(items: Iterable[tuple[str, str]]) -> str:
    parts = []
    for name, value in items:
        _check_line(name, "header name")
        _check_line(value, f"header {name}")
        if not name or ":" in name:
            raise ProtocolError(f"bad header name {name!r}")
        parts.append(f"{name}: {value}\n")
    return "".join(parts)


def serialize_command(
    command: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
) -> bytes:
    """A client frame: command line, raw headers, optional body with its Content-Length."""
    _check_line(command, "command")
    if not command.strip():
        raise ProtocolError("empty command")
    items = [(n, v) for n, v in headers if n.lower() != "content-length"]
    if body:
        items.append(("Content-Length", str(len(body))))
    return (command + "\n" + _header_block(items) + "\n").encode("utf-8") + body


def serialize_sendmsg(
    uuid: str | None,
    *,
    call_command: str = "execute",
    app: str | None = None,
    arg: str | None = None,
    event_lock: bool = False,
    event_uuid: str | None = None,
    loops: int | None = None,
    extra: Sequence[tuple[str, str]] = (),
    inline_arg_limit: int = 2048,
) -> bytes:
    """A ``sendmsg`` block. An argument with a line break or longer than ``inline_arg_limit``
    goes in the body (``content-type: text/plain`` + ``content-length``) instead of a header."""
    headers: list[tuple[str, str]] = [("call-command", call_command)]
    body = b""
    if app is not None:
        headers.append(("execute-app-name", app))
    if arg:
        if "\n" in arg or "\r" in arg or len(arg) > inline_arg_limit:
            headers.append(("content-type", "text/plain"))
            body = arg.encode("utf-8")
        else:
            headers.append(("execute-app-arg", arg))
    if loops is not None:
        headers.append(("loops", str(int(loops))))
    if event_lock:
        headers.append(("event-lock", "true"))
    if event_uuid:
        headers.append(("Event-UUID", event_uuid))
    headers.extend(extra)
    return serialize_command(f"sendmsg {uuid}" if uuid else "sendmsg", headers, body)


def serialize_reply(reply_text: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """A ``command/reply`` frame (FreeSWITCH side)."""
    items = [("Content-Type", "command/reply"), ("Reply-Text", reply_text), *extra]
    return (_header_block(items) + "\n").encode("utf-8")


def serialize_api_response(body: str | bytes) -> bytes:
    data = body.encode("utf-8") if isinstance(body, str) else body
    head = _header_block([("Content-Type", "api/response"), ("Content-Length", str(len(data)))])
    return (head + "\n").encode("utf-8") + data


def serialize_auth_request() -> bytes:
    return b"Content-Type: auth/request\n\n"


def serialize_rude_rejection() -> bytes:
    head = f"Content-Type: text/rude-rejection\nContent-Length: {len(RUDE_REJECTION_BODY)}\n\n"
    return head.encode("ascii") + RUDE_REJECTION_BODY


def serialize_disconnect_notice(session_uuid: str | None = None) -> bytes:
    """The final notice (67-byte body). With ``session_uuid``: the outbound-socket form."""
    items = [("Content-Type", "text/disconnect-notice")]
    if session_uuid:
        items += [("Controlled-Session-UUID", session_uuid), ("Content-Disposition", "disconnect")]
    items.append(("Content-Length", str(len(DISCONNECT_BODY))))
    return (_header_block(items) + "\n").encode("utf-8") + DISCONNECT_BODY


def serialize_linger_notice(session_uuid: str, channel_name: str, linger_time: int = -1) -> bytes:
    items = [
        ("Content-Type", "text/disconnect-notice"),
        ("Controlled-Session-UUID", session_uuid),
        ("Content-Disposition", "linger"),
        ("Channel-Name", channel_name),
        ("Linger-Time", str(linger_time)),
        ("Content-Length", "0"),
    ]
    return (_header_block(items) + "\n").encode("utf-8")


def encode_event_plain(items: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    """The serialized event (what goes inside a ``text/event-plain`` frame)."""
    lines = "".join(
        f"{name}: {url_encode(value if value != '' else '_undef_')}\n" for name, value in items
    )
    if body:
        return (lines + f"Content-Length: {len(body)}\n\n").encode("utf-8") + body
    return (lines + "\n").encode("utf-8")


def serialize_event_plain(items: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    inner = encode_event_plain(items, body)
    head = f"Content-Length: {len(inner)}\nContent-Type: text/event-plain\n\n"
    return head.encode("ascii") + inner


def serialize_event_json(items: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    obj: dict[str, object] = {}
    for name, value in items:
        if name in obj:
            prev = obj[name]
            obj[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            obj[name] = value
    if body:
        obj["Content-Length"] = str(len(body))
        obj["_body"] = body.decode("utf-8", errors="replace")
    inner = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    head = f"Content-Length: {len(inner)}\nContent-Type: text/event-json\n\n"
    return head.encode("ascii") + inner


def serialize_channel_data_reply(
    items: Iterable[tuple[str, str]], *, socket_mode: str = "async", control: str = "full"
) -> bytes:
    """The outbound ``connect`` reply: a CHANNEL_DATA event as headers, then the reply headers."""
    tail = [
        ("Content-Type", "command/reply"),
        ("Reply-Text", "+OK\n"),
        ("Socket-Mode", socket_mode),
        ("Control", control),
    ]
    lines = "".join(
        f"{name}: {url_encode(value or '_undef_')}\n" for name, value in [*items, *tail]
    )
    return (lines + "\n").encode("utf-8")
