"""Paced, gap-free audio out (I/O): one pacer greenlet per call sends 20 ms frames in real time.

Speech is queued with :meth:`Playout.enqueue` (any size; cut into whole frames, the last partial frame padded
with silence once nothing follows it). The pacer sends frame *k* of an utterance at ``t0 + k·20 ms − lead``,
keeping ``lead_frames`` in flight so the far end's jitter buffer never runs dry, and ``send`` is called from the
pacer greenlet only. ``burst_frames`` > 1 sends that many frames per wake-up (the later ones early, like a longer
lead): fewer wake-ups where pacing need not be fine. ``on_heard(frame, at)``, if given, is told of every frame the
far end has begun to hear, with the time (on ``clock``) it began: exact, whatever the lead or the burst. It is told
at the pacer's first wake-up after that time (so up to a burst late), never before: a frame sent but cut off by
:meth:`stop` before it was heard is never told, so a recording or a listener holds only what was heard. Audio queued while
earlier audio is still being heard continues the same timeline (no gap); an utterance ends when its last frame
has been heard. :meth:`stop` (barge-in) drops everything queued at once and returns the seconds of the current
utterance the far end has heard. The queue is bounded (``max_seconds``): audio past it is dropped and counted,
never buffered without limit.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import gevent
from gevent.event import Event

from esl_controller.media.codecs import FRAME_MS, FrameChunker
from esl_controller.waits import IDLE_POLL_SECONDS

log = logging.getLogger("esl_controller.media.playout")


class Playout:
    def __init__(
        self,
        sample_rate: int,
        send: Callable[[bytes], None] | None,
        *,
        frame_ms: int = FRAME_MS,
        lead_frames: int = 3,
        burst_frames: int = 1,
        max_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        on_heard: Callable[[bytes, float], None] | None = None,
        name: str = "",
    ) -> None:
        if burst_frames < 1:
            raise ValueError("burst_frames must be >= 1")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self._frame_s = frame_ms / 1000.0
        self._send = send
        self._clock = clock
        self.lead = lead_frames * self._frame_s
        self.burst_frames = burst_frames
        self.on_heard = on_heard
        self.name = name
        self._chunker = FrameChunker(sample_rate, frame_ms)
        self._frames: deque[bytes] = deque()
        self._unheard: deque[tuple[bytes, float]] = deque()  # sent, for on_heard once heard
        self._max_frames = max(1, int(max_seconds / self._frame_s))
        self._wake = Event()
        self._t0: float | None = None  # when frame 0 of the current utterance is heard
        self._sent = 0  # frames of the current utterance sent
        self._closed = False
        self._greenlet: gevent.Greenlet | None = None
        self.frames_sent = 0
        self.frames_dropped = 0
        self.utterances = 0
        self.errors = 0

    # ------------------------------------------------------------------ API

    def enqueue(self, pcm: bytes) -> None:
        if self._closed or not pcm:
            return
        for frame in self._chunker.push(pcm):
            if len(self._frames) >= self._max_frames:
                self.frames_dropped += 1
                continue
            self._frames.append(frame)
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
        self._wake.set()

    def stop(self) -> float:
        """Drop queued audio now; returns the seconds of the current utterance already heard."""
        heard = self.heard_seconds()
        self._end_unheard()
        self._frames.clear()
        self._chunker.flush()
        self._t0 = None
        self._sent = 0
        self._wake.set()
        return heard

    def heard_seconds(self) -> float:
        if self._t0 is None:
            return 0.0
        return max(0.0, min(self._sent * self._frame_s, self._clock() - self._t0))

    def playing(self) -> bool:
        if self._frames or self._chunker.pending:
            return True
        return self._t0 is not None and self._clock() < self._t0 + self._sent * self._frame_s

    def unplayed_seconds(self) -> float:
        """Seconds until everything queued so far has been heard, if the pacer keeps time (never more:
        a pacer running late only makes the end later). 0 when nothing is playing."""
        frames = len(self._frames) + (1 if self._chunker.pending else 0)
        now = self._clock()
        if self._t0 is None:
            return frames * self._frame_s
        end = max(now, self._t0 + self._sent * self._frame_s)
        return end - now + frames * self._frame_s

    @property
    def queued_seconds(self) -> float:
        return len(self._frames) * self._frame_s

    def close(self) -> None:
        self._closed = True
        self._end_unheard()
        self._frames.clear()
        self._wake.set()
        if self._greenlet is not None:
            self._greenlet.join(timeout=1.0)
        # the callbacks are usually the owner's bound methods: without them no cycle keeps the owner
        self._send = None
        self.on_heard = None

    # ------------------------------------------------------------------ pacer

    def _run(self) -> None:
        burst = 0  # frames sent since the last wake-up
        while not self._closed:
            if self._unheard:
                self._tell_heard(self._clock())
            if not self._frames:
                burst = 0
                rest = self._chunker.flush(pad=True)
                if rest is not None:
                    self._frames.append(rest)
                    continue
                self._wake.clear()
                end = self._end_time()
                timeout = IDLE_POLL_SECONDS
                if end is not None:
                    timeout = max(0.001, min(timeout, end - self._clock()))
                self._wake.wait(timeout=timeout)
                end = self._end_time()
                if not self._frames and end is not None and self._clock() >= end:
                    self._t0 = None  # the utterance has been heard to its end
                    self._sent = 0
                continue
            now = self._clock()
            if self._t0 is None or now > self._t0 + self._sent * self._frame_s:
                # nothing in flight: a new utterance (or a gap after a slow producer) starts now
                if self._t0 is None:
                    self.utterances += 1
                    self._t0 = now
                    self._sent = 0
                else:
                    self._t0 = now - self._sent * self._frame_s
            heard_at = self._t0 + self._sent * self._frame_s
            due = heard_at - self.lead
            if due > now and not 0 < burst < self.burst_frames:
                burst = 0
                gevent.sleep(due - now)
                continue  # state may have changed (stop) while sleeping
            frame = self._frames.popleft()
            burst += 1
            try:
                if self._send is not None:
                    self._send(frame)
            except Exception as exc:  # noqa: BLE001 - a dead transport ends the pacer, never the call
                self.errors += 1
                if isinstance(exc, OSError) or type(exc).__name__.endswith("Closed"):
                    log.info("playout %s: transport gone (%s); stopping", self.name, exc)
                else:
                    log.warning("playout %s: send failed; stopping", self.name, exc_info=True)
                self._closed = True
                self._frames.clear()
                return
            self._sent += 1
            self.frames_sent += 1
            if self.on_heard is not None:
                self._unheard.append((frame, heard_at))

    def _tell_heard(self, now: float) -> None:
        """``on_heard`` for every frame sent whose time to be heard has come."""
        unheard = self._unheard
        while unheard and unheard[0][1] <= now:
            frame, at = unheard.popleft()
            if self.on_heard is None:
                continue
            try:
                self.on_heard(frame, at)
            except Exception:  # noqa: BLE001 - recording or listening trouble never stops the audio
                self.errors += 1
                log.exception("playout %s: on_heard failed", self.name)

    def _end_unheard(self) -> None:
        """Audio is cut off now: what the far end has begun to hear is told, the rest never will be."""
        if self._unheard:
            self._tell_heard(self._clock())
            self._unheard.clear()

    def _end_time(self) -> float | None:
        return None if self._t0 is None else self._t0 + self._sent * self._frame_s
