"""mod_audio_fork session codec (pure): what FreeSWITCH sends, and what the server may send back.

FreeSWITCH opens a WebSocket (subprotocol ``audio.drachtio.org`` by default), sends the start
command's metadata as the first text frame (if any was given), then binary frames of raw L16
little-endian audio of any size ("treat the stream as continuous PCM"). A zero-length binary frame
marks the end of audio after ``graceful-shutdown``. In ``stereo`` mode the left channel is the
caller and the right channel the audio sent to the caller.

The server answers with text frames, each one complete JSON object; the builders below produce
exactly the documented shapes (compact JSON, no apostrophes or backslashes needed).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from esl_controller.media.codecs import FRAME_MS, FrameChunker, stereo_split

DEFAULT_SUBPROTOCOL = "audio.drachtio.org"
MIX_TYPES = ("mono", "mixed", "stereo")
# FreeSWITCH reassembles server text messages up to about 650 KB; stay under it.
MAX_TEXT_MESSAGE = 640_000
# Raw rates the module maps to files mod_sndfile plays as 16-bit (.r8 / .r16).
PLAYABLE_RAW_RATES = (8000, 16000)
CALL_ID_KEYS = ("callId", "call_id", "callID", "uuid")


# --------------------------------------------------------------------------- session set-up


def choose_subprotocol(offered: list[str] | tuple[str, ...]) -> str | None:
    """The subprotocol to echo: the documented default if offered, else the first offered."""
    if not offered:
        return None
    if DEFAULT_SUBPROTOCOL in offered:
        return DEFAULT_SUBPROTOCOL
    return offered[0]


@dataclass(frozen=True)
class ForkTarget:
    """What the request path says about a stream: ``/fork/<call_id>?rate=16000&mix=stereo``."""

    call_id: str | None
    sample_rate: int | None
    mix: str | None


def parse_target(target: str, prefix: str = "/fork") -> ForkTarget | None:
    """Parse a request target; None when the path is not under ``prefix``."""
    parts = urlsplit(target)
    path = parts.path.rstrip("/")
    prefix = prefix.rstrip("/")
    if path != prefix and not path.startswith(prefix + "/"):
        return None
    rest = path[len(prefix) :].strip("/")
    call_id = unquote(rest) if rest and "/" not in rest else None
    query = parse_qs(parts.query)
    rate = _parse_rate((query.get("rate") or query.get("sampleRate") or [None])[0])
    mix = (query.get("mix") or [None])[0]
    if mix is not None and mix not in MIX_TYPES:
        raise ValueError(f"unknown mix type {mix!r}")
    return ForkTarget(call_id=call_id, sample_rate=rate, mix=mix)


def _parse_rate(value: Any) -> int | None:
    if value is None or value == "":
        return None
    text = str(value).lower()
    rate = int(text[:-1]) * 1000 if text.endswith("k") else int(text)
    if rate <= 0 or rate % 8000:
        raise ValueError(f"unsupported sample rate {value!r}")
    return rate


def parse_metadata(text: str) -> dict[str, Any] | str:
    """The first text frame: a JSON object when it parses as one, else the raw text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def metadata_call_id(metadata: dict[str, Any] | str | None) -> str | None:
    if isinstance(metadata, dict):
        for key in CALL_ID_KEYS:
            value = metadata.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def metadata_rate(metadata: dict[str, Any] | str | None) -> int | None:
    if isinstance(metadata, dict):
        return _parse_rate(metadata.get("sampleRate") or metadata.get("rate"))
    return None


def metadata_mix(metadata: dict[str, Any] | str | None) -> str | None:
    if isinstance(metadata, dict):
        mix = metadata.get("mix")
        if mix in MIX_TYPES:
            return mix
    return None


# --------------------------------------------------------------------------- FreeSWITCH -> server


@dataclass(frozen=True)
class Metadata:
    data: dict[str, Any] | str
    raw: str


@dataclass(frozen=True)
class ClientText:
    """A later text frame (``uuid_audio_fork ... send_text``); several may be concatenated."""

    text: str


@dataclass(slots=True)
class AudioFrame:
    """One fixed 20 ms frame. ``caller`` is mono L16; ``assistant`` only in stereo mode.

    Not frozen (one is made per frame per call, and a frozen ``__init__`` costs twice as much):
    treat it as immutable.
    """

    index: int
    timestamp: float  # seconds of audio before this frame (stream time)
    caller: bytes
    assistant: bytes | None = None


@dataclass(frozen=True)
class EndOfAudio:
    """Zero-length binary frame: FreeSWITCH has stopped sending (graceful-shutdown)."""


ForkEvent = Metadata | ClientText | AudioFrame | EndOfAudio


class ForkStreamDecoder:
    """Feed WebSocket messages in, get frozen events out."""

    def __init__(self, sample_rate: int, mix: str = "mono", frame_ms: int = FRAME_MS) -> None:
        if mix not in MIX_TYPES:
            raise ValueError(f"unknown mix type {mix!r}")
        self.sample_rate = sample_rate
        self.mix = mix
        self.channels = 2 if mix == "stereo" else 1
        self.frame_ms = frame_ms
        self._chunker = FrameChunker(sample_rate, frame_ms, self.channels)
        self._frames = 0
        self._seen_any = False
        self.bytes_in = 0
        self.ended = False

    @property
    def frame_seconds(self) -> float:
        return self.frame_ms / 1000.0

    def receive_text(self, text: str) -> list[ForkEvent]:
        first = not self._seen_any
        self._seen_any = True
        if first:
            return [Metadata(data=parse_metadata(text), raw=text)]
        return [ClientText(text=text)]

    def receive_binary(self, data: bytes) -> list[ForkEvent]:
        if not data:
            self._seen_any = True
            self.ended = True
            return [EndOfAudio()]
        frame = self.whole_frame(data)
        if frame is not None:
            return [frame]
        self._seen_any = True
        self.bytes_in += len(data)
        return [self._frame(chunk) for chunk in self._chunker.push(data)]

    def whole_frame(self, data: bytes) -> AudioFrame | None:
        """``data`` as the next frame when it is exactly one mono frame (immutable bytes) and nothing
        is held back: the usual case, no copy. None otherwise (then ``receive_binary`` it)."""
        chunker = self._chunker
        if (
            len(data) != chunker.frame_size
            or type(data) is not bytes
            or chunker.pending
            or self.channels != 1
        ):
            return None
        self._seen_any = True
        self.bytes_in += len(data)
        index = self._frames
        self._frames = index + 1
        return AudioFrame(index, index * self.frame_ms / 1000.0, data)

    def flush(self) -> list[ForkEvent]:
        """The held-back remainder as one last (silence-padded) frame."""
        rest = self._chunker.flush(pad=True)
        return [self._frame(rest)] if rest else []

    def _frame(self, chunk: bytes) -> AudioFrame:
        index = self._frames
        self._frames += 1
        timestamp = index * self.frame_ms / 1000.0
        if self.channels == 2:
            left, right = stereo_split(chunk)
            return AudioFrame(index=index, timestamp=timestamp, caller=left, assistant=right)
        return AudioFrame(index=index, timestamp=timestamp, caller=chunk)


# --------------------------------------------------------------------------- server -> FreeSWITCH


def _dump(message: dict[str, Any]) -> str:
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=True)
    if len(text) > MAX_TEXT_MESSAGE:
        raise ValueError(f"message of {len(text)} bytes exceeds {MAX_TEXT_MESSAGE}")
    return text


def play_audio(
    audio: bytes,
    sample_rate: int,
    content_type: str = "raw",
    text: str | None = None,
) -> str:
    """``playAudio``: FreeSWITCH writes the audio to a temp file and fires ``play_audio``.

    ``audio`` is raw L16 for ``content_type="raw"`` (8000 or 16000 Hz, the rates that become
    ``.r8``/``.r16`` files mod_sndfile plays), or a whole WAV file for ``"wav"``/``"wave"``.
    """
    if content_type not in ("raw", "wav", "wave"):
        raise ValueError(f"unknown audioContentType {content_type!r}")
    if content_type == "raw" and sample_rate not in PLAYABLE_RAW_RATES:
        raise ValueError(f"raw audio must be 8000 or 16000 Hz, got {sample_rate}")
    data: dict[str, Any] = {
        "audioContentType": content_type,
        "sampleRate": sample_rate,
        "audioContent": base64.b64encode(audio).decode("ascii"),
    }
    if text is not None:
        data["textContent"] = text
    return _dump({"type": "playAudio", "data": data})


def max_play_seconds(sample_rate: int) -> float:
    """Longest raw audio one ``playAudio`` message can carry at this rate (with headroom)."""
    payload = (MAX_TEXT_MESSAGE - 4096) * 3 // 4
    return payload / (2.0 * sample_rate)


def kill_audio() -> str:
    """``killAudio``: stops the current playback on the channel (CF_BREAK)."""
    return _dump({"type": "killAudio"})


def transcription(data: Any) -> str:
    return _dump({"type": "transcription", "data": data})


def transfer(data: Any) -> str:
    return _dump({"type": "transfer", "data": data})


def disconnect(data: Any = None) -> str:
    """``disconnect`` only fires an event; the socket and the call stay up."""
    message: dict[str, Any] = {"type": "disconnect"}
    if data is not None:
        message["data"] = data
    return _dump(message)


def error(data: Any) -> str:
    return _dump({"type": "error", "data": data})


def json_message(message: dict[str, Any]) -> str:
    """Any object: fired whole as ``mod_audio_fork::json`` (``type`` defaults to ``json``)."""
    return _dump(message)
