"""Stream time for caller audio that arrives in chunks of any size (pure: numbers in, numbers out).

A web client sends its microphone's audio in chunks as it captures them (20 ms from our dashboard, other
sizes from other clients), and when each chunk arrives jitters with the network and the client's event
loop. Stamping each frame with its arrival time would make consecutive frames overlap or leave gaps in
the recording (which places audio at its time), and give every frame of a bigger chunk the same time.
So each frame's time is counted from the audio itself: the frames of a stream follow each other exactly.
Only when the client has sent nothing for longer than ``max_lag`` (muted, or the network stalled) does
the clock jump forward to the arrival, so a real pause stays a pause.
"""

from __future__ import annotations

#: how far the arrivals may run ahead of the audio counted before the clock follows them
MAX_LAG_SECONDS = 0.5


class StreamClock:
    def __init__(self, frame_seconds: float, max_lag: float = MAX_LAG_SECONDS) -> None:
        if frame_seconds <= 0:
            raise ValueError("frame_seconds must be positive")
        self.frame_seconds = frame_seconds
        self.max_lag = max_lag
        self.now = 0.0  #: stream time of the next frame, in seconds
        self.jumps = 0

    def arrived(self, at: float, seconds: float) -> None:
        """A chunk of ``seconds`` of audio arrived at ``at`` (seconds since the stream started)."""
        start = at - seconds  # when it began, had it been sent as it was captured
        if start - self.now > self.max_lag:
            self.now = start
            self.jumps += 1

    def next_frame(self) -> float:
        """The stream time of the next whole frame; the clock moves on by one frame."""
        at = self.now
        self.now = at + self.frame_seconds
        return at
