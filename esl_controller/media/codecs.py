"""Audio codecs and frame helpers (pure: bytes in, bytes out).

All PCM here is signed 16-bit little-endian ("L16" as mod_audio_fork sends it). G.711 (µ-law and
A-law) is one byte per sample. Resampling keeps its filter state across chunks so a stream can be
converted piece by piece without clicks at chunk borders.
"""

from __future__ import annotations

import io
import sys
import warnings
import wave
from dataclasses import dataclass

with warnings.catch_warnings():
    # The stdlib module is deprecated on 3.11/3.12; on 3.13+ the audioop-lts package provides it.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SAMPLE_WIDTH = 2
FRAME_MS = 20
SUPPORTED_RATES = (8000, 16000)

__all__ = [
    "FRAME_MS",
    "SAMPLE_WIDTH",
    "FrameChunker",
    "Resampler",
    "alaw_decode",
    "alaw_encode",
    "duration_seconds",
    "frame_bytes",
    "l16_swap",
    "WavAudio",
    "mix",
    "resample",
    "rms",
    "silence",
    "stereo_interleave",
    "stereo_split",
    "ulaw_decode",
    "ulaw_encode",
    "wav_bytes",
    "wav_read",
]


def frame_bytes(sample_rate: int, frame_ms: int = FRAME_MS, channels: int = 1) -> int:
    """Size in bytes of one L16 frame of ``frame_ms`` milliseconds."""
    samples = sample_rate * frame_ms // 1000
    if samples * 1000 != sample_rate * frame_ms:
        raise ValueError(f"{frame_ms} ms is not a whole number of samples at {sample_rate} Hz")
    return samples * SAMPLE_WIDTH * channels


def duration_seconds(nbytes: int, sample_rate: int, channels: int = 1) -> float:
    """Duration of ``nbytes`` of L16 audio."""
    return nbytes / float(SAMPLE_WIDTH * channels * sample_rate)


def silence(seconds: float, sample_rate: int, channels: int = 1) -> bytes:
    """L16 silence of the given duration (rounded to whole samples)."""
    return bytes(int(round(seconds * sample_rate)) * SAMPLE_WIDTH * channels)


def _whole(data: bytes, width: int = SAMPLE_WIDTH) -> None:
    if len(data) % width:
        raise ValueError(f"PCM length {len(data)} is not a multiple of {width}")


def l16_swap(data: bytes) -> bytes:
    """Swap byte order of 16-bit samples (network-order L16 <-> little-endian)."""
    _whole(data)
    return audioop.byteswap(data, SAMPLE_WIDTH)


def ulaw_encode(pcm: bytes) -> bytes:
    """L16 -> G.711 µ-law (one byte per sample)."""
    _whole(pcm)
    return audioop.lin2ulaw(pcm, SAMPLE_WIDTH)


def ulaw_decode(data: bytes) -> bytes:
    """G.711 µ-law -> L16."""
    return audioop.ulaw2lin(data, SAMPLE_WIDTH)


def alaw_encode(pcm: bytes) -> bytes:
    """L16 -> G.711 A-law (one byte per sample)."""
    _whole(pcm)
    return audioop.lin2alaw(pcm, SAMPLE_WIDTH)


def alaw_decode(data: bytes) -> bytes:
    """G.711 A-law -> L16."""
    return audioop.alaw2lin(data, SAMPLE_WIDTH)


def rms(pcm: bytes) -> int:
    """Root-mean-square level of L16 audio (0..32767)."""
    if len(pcm) < SAMPLE_WIDTH:
        return 0
    return audioop.rms(pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH], SAMPLE_WIDTH)


def _pad(data: bytes, length: int) -> bytes:
    return data if len(data) >= length else data + bytes(length - len(data))


def mix(a: bytes, b: bytes) -> bytes:
    """Sum two mono L16 streams with saturation; the shorter one is padded with silence."""
    _whole(a)
    _whole(b)
    n = max(len(a), len(b))
    return audioop.add(_pad(a, n), _pad(b, n), SAMPLE_WIDTH)


def stereo_split(pcm: bytes) -> tuple[bytes, bytes]:
    """Interleaved stereo L16 -> (left, right) mono L16."""
    _whole(pcm, SAMPLE_WIDTH * 2)
    left = audioop.tomono(pcm, SAMPLE_WIDTH, 1, 0)
    right = audioop.tomono(pcm, SAMPLE_WIDTH, 0, 1)
    return left, right


def stereo_interleave(left: bytes, right: bytes) -> bytes:
    """Two mono L16 streams -> interleaved stereo; the shorter one is padded with silence."""
    _whole(left)
    _whole(right)
    n = max(len(left), len(right))
    left, right = _pad(left, n), _pad(right, n)
    out = bytearray(2 * n)  # byte-slice copies: about 3x faster than audioop.tostereo + add
    out[0::4] = left[0::2]
    out[1::4] = left[1::2]
    out[2::4] = right[0::2]
    out[3::4] = right[1::2]
    return bytes(out)


class Resampler:
    """Streaming L16 sample-rate converter (audioop.ratecv) that keeps state across chunks.

    Chunks may be any length, even an odd number of bytes: a trailing partial sample is held
    until the next chunk.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self._state: object = None
        self._carry = b""
        self._align = SAMPLE_WIDTH * channels

    def process(self, chunk: bytes) -> bytes:
        """Convert one chunk; returns the audio produced so far."""
        data = self._carry + chunk if self._carry else chunk
        cut = len(data) - len(data) % self._align
        self._carry = data[cut:]
        data = data[:cut]
        if self.in_rate == self.out_rate or not data:
            return data
        out, self._state = audioop.ratecv(
            data, SAMPLE_WIDTH, self.channels, self.in_rate, self.out_rate, self._state
        )
        return out

    def reset(self) -> None:
        self._state = None
        self._carry = b""


def resample(pcm: bytes, in_rate: int, out_rate: int, channels: int = 1) -> bytes:
    """One-shot resampling of a whole buffer."""
    return Resampler(in_rate, out_rate, channels).process(pcm)


class FrameChunker:
    """Any-size chunks in, fixed-size frames out; the remainder is kept for the next push."""

    def __init__(self, sample_rate: int, frame_ms: int = FRAME_MS, channels: int = 1) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.channels = channels
        self.frame_size = frame_bytes(sample_rate, frame_ms, channels)
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back waiting for a full frame."""
        return len(self._buf)

    def push(self, chunk: bytes) -> list[bytes]:
        """Add audio; returns the complete frames now available (possibly none)."""
        if not self._buf and len(chunk) == self.frame_size and type(chunk) is bytes:
            return [chunk]  # the usual case on a live call: one whole frame, nothing held back
        self._buf += chunk
        size = self.frame_size
        count = len(self._buf) // size
        if not count:
            return []
        frames = [bytes(self._buf[i * size : (i + 1) * size]) for i in range(count)]
        del self._buf[: count * size]
        return frames

    def flush(self, pad: bool = True) -> bytes | None:
        """Return the remainder as a last frame (padded with silence if ``pad``), or None."""
        if not self._buf:
            return None
        rest = bytes(self._buf)
        self._buf.clear()
        return _pad(rest, self.frame_size) if pad else rest


def wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """Wrap L16 audio in a WAV (RIFF) container."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return out.getvalue()


@dataclass(frozen=True)
class WavAudio:
    pcm: bytes
    sample_rate: int
    channels: int


def wav_read(data: bytes) -> WavAudio:
    """Parse a 16-bit PCM WAV file held in memory."""
    with wave.open(io.BytesIO(data), "rb") as w:
        if w.getsampwidth() != SAMPLE_WIDTH:
            raise ValueError(f"only 16-bit WAV is supported, got {8 * w.getsampwidth()}-bit")
        pcm = w.readframes(w.getnframes())
        return WavAudio(pcm=pcm, sample_rate=w.getframerate(), channels=w.getnchannels())


if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
    raise ImportError("esl_controller.media.codecs assumes a little-endian host")
