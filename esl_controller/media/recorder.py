"""Call recordings (I/O): mono (caller + assistant mixed) and stereo (caller left, assistant right).

Both tracks are positioned by their timestamps (seconds of call time, the same clock for both, e.g.
fork stream time) with silence filling gaps, so the recording stays time-aligned even when the
assistant's audio arrives in bursts ahead of time or the caller's stream has holes.

Audio is committed to disk once it is ``hold_back_seconds`` older than the newest audio seen
(late audio inside that window is still placed correctly; older audio is dropped and counted)
and at least every ``flush_seconds`` of committed audio. The stdlib ``wave`` writer patches the
RIFF and data sizes after every write, and the file is flushed, so a crash leaves a playable WAV
holding everything committed so far.
"""

from __future__ import annotations

import logging
import os
import wave
from typing import BinaryIO

from esl_controller.media.codecs import SAMPLE_WIDTH, mix, stereo_interleave

log = logging.getLogger("esl_controller.media.recorder")


class WavWriter:
    """A 16-bit PCM WAV file that is valid (correct sizes) after every ``write``."""

    def __init__(self, path: str, sample_rate: int, channels: int = 1, fsync: bool = False) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.channels = channels
        self.fsync = fsync
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._wav = wave.open(self._file, "wb")
        self._wav.setnchannels(channels)
        self._wav.setsampwidth(SAMPLE_WIDTH)
        self._wav.setframerate(sample_rate)
        self._wav.writeframes(b"")  # header on disk now: an empty but valid file
        self._file.flush()
        self.frames_written = 0
        self.closed = False

    def write(self, pcm: bytes) -> None:
        if self.closed:
            raise ValueError("write to a closed WavWriter")
        if not pcm:
            return
        # writeframes() patches the RIFF/data sizes whenever the data length changed.
        self._wav.writeframes(pcm)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self.frames_written += len(pcm) // (SAMPLE_WIDTH * self.channels)

    @property
    def seconds(self) -> float:
        return self.frames_written / float(self.sample_rate)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._wav.close()  # does not close a file object it did not open
        self._file.close()


class _Track:
    """Uncommitted samples of one party, starting at the recorder's commit point."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.end = 0  # absolute sample index just past the newest audio

    def place(self, base: int, start: int, pcm: bytes) -> int:
        """Write ``pcm`` at absolute sample ``start``; returns samples dropped as too late."""
        dropped = 0
        if start < base:
            cut = min(base - start, len(pcm) // SAMPLE_WIDTH)
            dropped = cut
            pcm = pcm[cut * SAMPLE_WIDTH :]
            start = base
        if not pcm:
            return dropped
        off = (start - base) * SAMPLE_WIDTH
        if off == len(self.buf):  # the common case: contiguous audio
            self.buf += pcm
            self.end = max(self.end, start + len(pcm) // SAMPLE_WIDTH)
            return dropped
        need = off + len(pcm)
        if need > len(self.buf):
            self.buf.extend(bytes(need - len(self.buf)))
        self.buf[off:need] = pcm
        self.end = max(self.end, start + len(pcm) // SAMPLE_WIDTH)
        return dropped

    def take(self, samples: int) -> bytes:
        n = samples * SAMPLE_WIDTH
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out if len(out) == n else out + bytes(n - len(out))


class CallRecorder:
    """Time-aligned caller/assistant recording to a mono (mixed) and/or a stereo WAV."""

    def __init__(
        self,
        sample_rate: int,
        mono_path: str | None = None,
        stereo_path: str | None = None,
        hold_back_seconds: float = 1.0,
        flush_seconds: float = 0.5,
        max_buffer_seconds: float = 120.0,
    ) -> None:
        if not mono_path and not stereo_path:
            raise ValueError("CallRecorder needs a mono_path, a stereo_path, or both")
        self.sample_rate = sample_rate
        self.mono = WavWriter(mono_path, sample_rate, 1) if mono_path else None
        self.stereo = WavWriter(stereo_path, sample_rate, 2) if stereo_path else None
        self._caller = _Track()
        self._assistant = _Track()
        self._base = 0  # absolute sample index of the first uncommitted sample
        self._hold = int(hold_back_seconds * sample_rate)
        self._flush = max(1, int(flush_seconds * sample_rate))
        self._max = int(max_buffer_seconds * sample_rate)
        self.late_samples_dropped = 0
        self.closed = False

    @property
    def committed_seconds(self) -> float:
        return self._base / float(self.sample_rate)

    def add_caller(self, pcm: bytes, at: float) -> None:
        """Caller audio (mono L16) starting at call time ``at`` seconds."""
        self._add(self._caller, pcm, at)

    def add_assistant(self, pcm: bytes, at: float) -> None:
        """Assistant audio (mono L16) as played, starting at call time ``at`` seconds."""
        self._add(self._assistant, pcm, at)

    def _add(self, track: _Track, pcm: bytes, at: float) -> None:
        if self.closed:
            raise ValueError("recorder is closed")
        if len(pcm) % SAMPLE_WIDTH:
            raise ValueError("PCM length must be a whole number of samples")
        start = int(round(at * self.sample_rate))
        dropped = track.place(self._base, start, pcm)
        if dropped:
            if not self.late_samples_dropped:
                log.warning("recording: audio %.3f s late, dropped", dropped / self.sample_rate)
            self.late_samples_dropped += dropped
        newest = max(self._caller.end, self._assistant.end)
        ready = newest - self._hold - self._base
        if ready >= self._flush:
            self._commit(ready)
        elif newest - self._base > self._max:
            self._commit(newest - self._base - self._hold)

    def _commit(self, samples: int) -> None:
        if samples <= 0:
            return
        caller = self._caller.take(samples)
        assistant = self._assistant.take(samples)
        self._base += samples
        if self.mono:
            self.mono.write(mix(caller, assistant))
        if self.stereo:
            self.stereo.write(stereo_interleave(caller, assistant))

    def flush(self) -> None:
        """Commit everything received so far (later audio for that time span is then late)."""
        newest = max(self._caller.end, self._assistant.end)
        self._commit(newest - self._base)

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        for writer in (self.mono, self.stereo):
            if writer:
                writer.close()
