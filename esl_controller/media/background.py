"""``backgroundSound``: a noise bed mixed under the assistant's voice (pure: bytes in, bytes out).

* ``"off"`` (the default for web calls) or missing on a web call: nothing is mixed.
* ``"office"`` (the default for phone calls, as on Vapi): :func:`office_bed`, 4 s of deterministic
  low-passed noise (a fixed-seed generator, no downloads) at :data:`OFFICE_LEVEL_DBFS` RMS, looped.
* an audio URL of a stored ``/file`` (``<public_url>/file/<id>/content``): the WAV blob on disk (PCM16,
  any rate and channel count; mixed to mono and resampled) scaled by :data:`FILE_GAIN_DB`. Other URLs
  are never fetched (the caller of :func:`resolve` logs them).

:class:`BackgroundMixer` keeps the loop position across calls so consecutive chunks of speech carry a
continuous bed; ``mix`` is one ``audioop.add`` of the same length (C speed) per chunk of speech. The bed is
mixed into the assistant's speech only (what is sent out, hence also the recording's assistant channel).
"""

from __future__ import annotations

import audioop
import io
import re
import wave
from dataclasses import dataclass
from functools import lru_cache

#: RMS level of the generated office bed, in dB below full scale
OFFICE_LEVEL_DBFS = -40.0
#: gain applied to a stored file used as the bed
FILE_GAIN_DB = -18.0
OFFICE_SECONDS = 4.0
_FILE_URL = re.compile(r"/file/(?P<id>[0-9A-Za-z-]{8,64})/content/?$")


@lru_cache(maxsize=8)
def office_bed(
    rate: int, seconds: float = OFFICE_SECONDS, level_dbfs: float = OFFICE_LEVEL_DBFS
) -> bytes:
    """Deterministic low-passed noise (PCM16 mono at ``rate``) at ``level_dbfs`` RMS."""
    n = max(1, int(rate * seconds))
    state, low, low2 = 0x2545F491, 0.0, 0.0
    raw = []
    for _ in range(n):  # xorshift32 white noise through two one-pole low-passes (a soft murmur)
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        white = (state / 0xFFFFFFFF) * 2.0 - 1.0
        low += 0.08 * (white - low)
        low2 += 0.08 * (low - low2)
        raw.append(low2)
    mean_sq = sum(x * x for x in raw) / n or 1e-12
    scale = 32767.0 * 10 ** (level_dbfs / 20.0) / mean_sq**0.5
    out = bytearray()
    for x in raw:
        out += int(max(-32768, min(32767, round(x * scale)))).to_bytes(2, "little", signed=True)
    return bytes(out)


def wav_bed(data: bytes, rate: int, gain_db: float = FILE_GAIN_DB) -> bytes:
    """A PCM16 WAV file as a mono bed at ``rate`` scaled by ``gain_db``. Raises ValueError."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            width, channels, src = w.getsampwidth(), w.getnchannels(), w.getframerate()
            pcm = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a WAV file: {exc}") from exc
    if width != 2:
        raise ValueError("only 16-bit PCM WAV files can be used as backgroundSound")
    if channels == 2:
        pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
    elif channels != 1:
        raise ValueError("backgroundSound WAV must be mono or stereo")
    if src != rate:
        pcm, _ = audioop.ratecv(pcm, 2, 1, src, rate, None)
    if not pcm:
        raise ValueError("empty backgroundSound file")
    return audioop.mul(pcm, 2, 10 ** (gain_db / 20.0))


def file_id_from_url(url: str, public_url: str) -> str | None:
    """The stored file's id when ``url`` is ``<public_url>/file/<id>/content``, else None."""
    base = public_url.rstrip("/")
    if not base or not url.startswith(base + "/"):
        return None
    m = _FILE_URL.search(url[len(base) :])
    return m.group("id") if m else None


def setting(value: object, direction: str) -> str:
    """The effective backgroundSound: ``off``, ``office`` or a URL (web calls default to off)."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return "off" if direction == "web" else "office"


@dataclass
class BackgroundMixer:
    """Mixes a looped bed under speech chunks, continuing where the last chunk stopped."""

    bed: bytes
    position: int = 0

    def mix(self, pcm16: bytes) -> bytes:
        n = len(pcm16) - len(pcm16) % 2
        if n <= 0 or len(self.bed) < 2:
            return pcm16
        bed, size = self.bed, len(self.bed)
        parts, need, pos = [], n, self.position
        while need > 0:
            take = min(need, size - pos)
            parts.append(bed[pos : pos + take])
            need -= take
            pos = (pos + take) % size
        self.position = pos
        return audioop.add(pcm16[:n], b"".join(parts), 2) + pcm16[n:]
