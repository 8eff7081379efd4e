"""Call recordings: mono (caller + assistant mixed) and stereo (caller left, assistant right).

Both tracks are positioned by their timestamps (seconds of call time, the same clock for both, e.g.
fork stream time) with silence filling gaps, so the recording stays time-aligned even when the
assistant's audio arrives in bursts ahead of time or the caller's stream has holes.

Audio is committed once it is ``hold_back_seconds`` older than the newest audio seen (late audio
inside that window is still placed correctly; older audio is dropped and counted), in spans of at
least ``flush_seconds``. Each recorder's first span is shortened by a random phase, so streams that
start together commit in different frames. A commit only hands the raw chunks to the process-wide
``RecordingWriter`` (``media.recording_writer``), whose thread mixes, interleaves and writes them,
patching the WAV sizes after each write: a crash leaves playable files holding everything written so
far. ``close()`` commits the rest and waits (bounded) until the files are complete and closed.

The hot path is ``add_caller``/``add_assistant`` of audio that continues where the track left off
(20 ms frames in order): one comparison and a copy into a preallocated buffer (no reallocation).
"""

from __future__ import annotations

import logging
import random
from typing import Any

from esl_controller.media.codecs import SAMPLE_WIDTH
from esl_controller.media.recording_writer import RecordingWriter, WavWriter, shared_writer

__all__ = ["CallRecorder", "WavWriter"]

log = logging.getLogger("esl_controller.media.recorder")

CLOSE_TIMEOUT_SECONDS = 5.0


class CallRecorder:
    """Time-aligned caller/assistant recording to a mono (mixed) and/or a stereo WAV.

    ``phase`` (0 < phase <= 1, default random) is the fraction of ``flush_seconds`` after which the
    first span is committed; ``writer`` defaults to the process-wide thread writer. The files are
    created here (OSError when they cannot be). ``start_sample`` is where the recording's timeline
    starts (the recording process resumes files a writer that died left behind)."""

    __slots__ = (
        "sample_rate", "late_samples_dropped", "closed", "_files", "_writer",
        "_cbuf", "_cw", "_ccap", "_c_end", "_abuf", "_aw", "_acap", "_a_end",
        "_base", "_hold", "_flush", "_max", "_span", "_due", "_cap0",
    )  # fmt: skip

    def __init__(
        self,
        sample_rate: int,
        mono_path: str | None = None,
        stereo_path: str | None = None,
        hold_back_seconds: float = 1.0,
        flush_seconds: float = 1.0,
        max_buffer_seconds: float = 120.0,
        *,
        phase: float | None = None,
        writer: RecordingWriter | Any | None = None,
        start_sample: int = 0,
    ) -> None:
        phase = check_recording(mono_path, stereo_path, phase)
        self.sample_rate = sample_rate
        self._writer = writer if writer is not None else shared_writer()
        self._files = self._writer.open(mono_path, stereo_path, sample_rate)
        self._base = start_sample  # absolute sample index of the first uncommitted sample
        self._hold = int(hold_back_seconds * sample_rate)
        self._flush = max(1, int(flush_seconds * sample_rate))
        self._max = int(max_buffer_seconds * sample_rate)
        self._span = max(1, round(self._flush * phase))  # the first span; then _flush
        # Each track: a preallocated buffer (no reallocation per frame) whose first *w bytes are
        # the samples from _base on; *_end = _base + *w // 2. The assistant's is made on first use.
        self._cap0 = SAMPLE_WIDTH * (self._hold + self._flush + sample_rate // 5)
        self._cbuf = bytearray(self._cap0)
        self._ccap = self._cap0
        self._cw = 0
        self._c_end = start_sample
        self._abuf = bytearray()
        self._acap = self._aw = 0
        self._a_end = start_sample
        self._due = 0
        self._set_due()
        self.late_samples_dropped = 0
        self.closed = False

    @property
    def files(self) -> Any:
        """The writer's handle on this recording (``RecordingFiles`` with the thread writer)."""
        return self._files

    @property
    def committed_samples(self) -> int:
        """Samples of the timeline handed to the writer (from the start of the recording)."""
        return self._base

    @property
    def committed_seconds(self) -> float:
        return self._base / float(self.sample_rate)

    @property
    def writer_samples_dropped(self) -> int:
        """Samples written as silence because the writer was behind (a stalled disk)."""
        return self._files.samples_dropped

    def add_caller(self, pcm: bytes, at: float) -> None:
        """Caller audio (mono L16) starting at call time ``at`` seconds."""
        end = self._c_end
        d = at * self.sample_rate - end
        if -0.5 < d < 0.5 and not self.closed:  # continues the track
            w = self._cw
            n = len(pcm)
            e = w + n
            if e <= self._ccap and not n & 1:
                self._cbuf[w:e] = pcm
                self._cw = e
                end += n >> 1
                self._c_end = end
                if end >= self._due:
                    self._commit_ready()
                return
        self._add(True, pcm, at)

    def add_assistant(self, pcm: bytes, at: float) -> None:
        """Assistant audio (mono L16) as played, starting at call time ``at`` seconds."""
        end = self._a_end
        d = at * self.sample_rate - end
        if -0.5 < d < 0.5 and not self.closed:
            w = self._aw
            n = len(pcm)
            e = w + n
            if e <= self._acap and not n & 1:
                self._abuf[w:e] = pcm
                self._aw = e
                end += n >> 1
                self._a_end = end
                if end >= self._due:
                    self._commit_ready()
                return
        self._add(False, pcm, at)

    def _add(self, caller: bool, pcm: bytes, at: float) -> None:
        """Anywhere else: a gap (silence fills it), late audio, a full buffer, or an error."""
        if self.closed:
            raise ValueError("recorder is closed")
        if len(pcm) % SAMPLE_WIDTH:
            raise ValueError("PCM length must be a whole number of samples")
        start = int(round(at * self.sample_rate))
        if caller:
            buf, w = self._cbuf, self._cw
        else:
            buf, w = self._abuf, self._aw
            if not buf:
                buf = bytearray(self._cap0)
        dropped, w = _place(buf, w, self._base, start, pcm)
        end = self._base + w // SAMPLE_WIDTH
        if caller:
            self._cw, self._ccap, self._c_end = w, len(buf), end
        else:
            self._abuf, self._aw, self._acap, self._a_end = buf, w, len(buf), end
        if dropped:
            if not self.late_samples_dropped:
                log.warning("recording: audio %.3f s late, dropped", dropped / self.sample_rate)
            self.late_samples_dropped += dropped
        if end >= self._due:
            self._commit_ready()

    def _set_due(self) -> None:
        """The newest-audio index at which the next commit is due (spans, or the buffer limit)."""
        self._due = self._base + min(self._hold + self._span, self._max + 1)

    def _commit_ready(self) -> None:
        newest = max(self._c_end, self._a_end)
        ready = newest - self._hold - self._base
        if ready >= self._span:
            self._commit(ready)
        elif newest - self._base > self._max:
            self._commit(newest - self._base - self._hold)
        self._set_due()

    def _commit(self, samples: int) -> None:
        if samples <= 0:
            return
        n = samples * SAMPLE_WIDTH
        caller, self._cw = _take(self._cbuf, self._cw, n)
        assistant = None
        if self._aw:
            assistant, self._aw = _take(self._abuf, self._aw, n)
        self._base += samples
        self._c_end = self._base + self._cw // SAMPLE_WIDTH
        self._a_end = self._base + self._aw // SAMPLE_WIDTH
        if self._ccap > 2 * self._cap0 and self._cw <= self._cap0:  # shrink after a big gap
            self._cbuf = self._cbuf[: self._cap0]
            self._ccap = self._cap0
        if self._acap > 2 * self._cap0 and self._aw <= self._cap0:
            self._abuf = self._abuf[: self._cap0]
            self._acap = self._cap0
        self._span = self._flush
        self._writer.submit(self._files, caller, assistant, samples)

    def extend_to(self, at: float) -> None:
        """The recording runs at least to call time ``at``: silence after the last audio received
        (audio dropped before it got here, at the end of a call)."""
        end = int(round(at * self.sample_rate))
        newest = max(self._c_end, self._a_end)
        if end > newest and not self.closed:
            self._add(
                True, bytes((end - self._c_end) * SAMPLE_WIDTH), self._c_end / self.sample_rate
            )

    def flush(self) -> None:
        """Commit everything received so far (later audio for that time span is then late).
        The writer writes it shortly; ``sync`` waits for that."""
        self._commit(max(self._c_end, self._a_end) - self._base)
        self._set_due()

    def sync(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> bool:
        """Wait until everything committed so far is in the files. False: timed out."""
        return self._writer.sync(self._files, timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Commit the rest, then wait (up to ``timeout``) until the files are written and closed."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        if not self._writer.close_files(self._files, timeout):
            log.warning(
                "recording %s: not finished writing after %.1f s", self._files.name, timeout
            )
        elif self._files.error is not None:
            log.warning("recording %s: incomplete (%s)", self._files.name, self._files.error)


def check_recording(mono_path: str | None, stereo_path: str | None, phase: float | None) -> float:
    """A recording's arguments checked (ValueError); the first span's phase, random when None."""
    if not mono_path and not stereo_path:
        raise ValueError("a recording needs a mono_path, a stereo_path, or both")
    if phase is None:
        phase = 1.0 - random.random()  # (0, 1]
    if not 0.0 < phase <= 1.0:
        raise ValueError("phase must be in (0, 1]")
    return phase


def _place(buf: bytearray, w: int, base: int, start: int, pcm: bytes) -> tuple[int, int]:
    """Write ``pcm`` at absolute sample ``start`` into the track ``buf`` (``w`` bytes used, from
    sample ``base``), growing it as needed and filling a gap with silence.
    Returns (samples dropped as too late, i.e. before ``base``; bytes now used)."""
    dropped = 0
    if start < base:
        dropped = min(base - start, len(pcm) // SAMPLE_WIDTH)
        pcm = pcm[dropped * SAMPLE_WIDTH :]
        start = base
    if not pcm:
        return dropped, w
    off = (start - base) * SAMPLE_WIDTH
    need = off + len(pcm)
    if need > len(buf):
        buf.extend(bytes(need - len(buf) + len(buf) // 4))
    if off > w:
        buf[w:off] = bytes(off - w)  # the gap: silence (the buffer past w holds stale bytes)
    buf[off:need] = pcm
    return dropped, max(w, need)


def _take(buf: bytearray, w: int, n: int) -> tuple[bytes, int]:
    """The first ``n`` bytes of the track (fewer if it holds less), moving the rest to the front.
    Returns (those bytes, bytes still used)."""
    with memoryview(buf) as view:
        if n >= w:
            return bytes(view[:w]), 0
        out = bytes(view[:n])
        view[: w - n] = view[n:w]  # overlapping: memoryview assignment moves like memmove
    return out, w - n
