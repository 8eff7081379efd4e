"""Voice activity detection (pure): a small state machine around a per-frame confidence function.

States: quiet -> starting -> speaking -> stopping -> quiet. Speech must last ``start_seconds``
(the minimum speech duration) before ``SpeechStarted``; silence must last ``stop_seconds``
(Vapi's ``startSpeakingPlan.waitSeconds``, default 0.4 s) before ``SpeechEnded``, which carries
the utterance audio including a short pre-roll so the first syllable is not cut off.

The default confidence function is webrtcvad (``webrtcvad-wheels``); any callable
``frame -> float in [0, 1]`` works (Silero ONNX, or a fake in tests).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from esl_controller.media.codecs import FRAME_MS, frame_bytes

ConfidenceFn = Callable[[bytes], float]


class VadState(enum.Enum):
    QUIET = "quiet"
    STARTING = "starting"
    SPEAKING = "speaking"
    STOPPING = "stopping"


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    start_seconds: float = 0.2  # minimum speech duration before SpeechStarted
    stop_seconds: float = 0.4  # startSpeakingPlan.waitSeconds
    start_gap_seconds: float = 0.1  # silence tolerated while starting
    pre_roll_seconds: float = 0.3
    max_utterance_seconds: float = 30.0

    @classmethod
    def from_plan(cls, start_speaking_plan: dict[str, Any] | None, **overrides: Any) -> VadParams:
        """Build from a Vapi ``startSpeakingPlan`` object (only ``waitSeconds`` is used here)."""
        values: dict[str, Any] = dict(overrides)
        if start_speaking_plan and start_speaking_plan.get("waitSeconds") is not None:
            values["stop_seconds"] = float(start_speaking_plan["waitSeconds"])
        return cls(**values)


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # stream seconds of the first voiced frame


@dataclass(frozen=True)
class SpeechEnded:
    started_at: float  # first voiced frame
    ended_at: float  # end of the last voiced frame
    detected_at: float  # when the end was decided (ended_at + stop_seconds)
    audio: bytes  # L16 mono, pre-roll through detected_at
    sample_rate: int
    forced: bool = False  # cut at max_utterance_seconds or at flush()

    @property
    def speech_seconds(self) -> float:
        return self.ended_at - self.started_at

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / (2.0 * self.sample_rate)


VadEvent = SpeechStarted | SpeechEnded


class WebRtcConfidence:
    """webrtcvad as a confidence function (1.0 or 0.0). Frames of 10, 20 or 30 ms."""

    def __init__(self, sample_rate: int, aggressiveness: int = 2) -> None:
        import webrtcvad  # webrtcvad-wheels, a required dependency

        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad does not support {sample_rate} Hz")
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError("aggressiveness must be 0..3")
        self.sample_rate = sample_rate
        self._vad = webrtcvad.Vad(aggressiveness)

    def __call__(self, frame: bytes) -> float:
        return 1.0 if self._vad.is_speech(frame, self.sample_rate) else 0.0

    def is_speech(self, frame: bytes) -> bool:
        return self._vad.is_speech(frame, self.sample_rate)


_QUIET = VadState.QUIET


class VoiceActivityDetector:
    """Feed fixed-size mono L16 frames; get SpeechStarted / SpeechEnded events."""

    def __init__(
        self,
        sample_rate: int,
        params: VadParams | None = None,
        confidence: ConfidenceFn | None = None,
        frame_ms: int = FRAME_MS,
        aggressiveness: int = 2,
        start_time: float = 0.0,
    ) -> None:
        self.sample_rate = sample_rate
        self.params = params or VadParams()
        self.frame_ms = frame_ms
        self.frame_size = frame_bytes(sample_rate, frame_ms)
        self._frame_s = frame_ms / 1000.0
        self.confidence = confidence or WebRtcConfidence(sample_rate, aggressiveness)
        # webrtcvad answers yes/no: ask it directly (one Python call less per frame), unless the
        # threshold asks for something a yes/no cannot give
        self._is_speech = (
            self.confidence.is_speech
            if isinstance(self.confidence, WebRtcConfidence) and 0.0 < self.params.threshold <= 1.0
            else None
        )
        self.state = VadState.QUIET
        self._now = start_time  # stream time at the start of the next frame
        pre = max(1, int(round(self.params.pre_roll_seconds / self._frame_s)))
        self._pre_roll: deque[bytes] = deque(maxlen=pre)
        # the utterance so far, as the frames themselves (no copying per frame; joined once at the end)
        self._utterance: list[bytes] = []
        self._utterance_bytes = 0
        self._max_bytes = int(self.params.max_utterance_seconds * sample_rate) * 2
        self._voiced = 0.0  # voiced seconds in the current utterance
        self._gap = 0.0  # consecutive unvoiced seconds
        self._started_at = 0.0
        self._last_voiced_end = 0.0
        self.frames = 0
        self.utterances = 0

    @property
    def now(self) -> float:
        return self._now

    @property
    def voiced_seconds(self) -> float:
        """Voiced time in the current (starting or confirmed) utterance; 0 when quiet."""
        return 0.0 if self.state is VadState.QUIET else self._voiced

    @property
    def speaking(self) -> bool:
        return self.state in (VadState.SPEAKING, VadState.STOPPING)

    def process(self, frame: bytes) -> list[VadEvent]:
        if len(frame) != self.frame_size:
            raise ValueError(f"VAD frame must be {self.frame_size} bytes, got {len(frame)}")
        start = self._now
        self._now = start + self._frame_s
        self.frames += 1
        is_speech = self._is_speech
        if is_speech is not None:
            voiced = is_speech(frame)
        else:
            voiced = self.confidence(frame) >= self.params.threshold
        self._pre_roll.append(frame)
        state = self.state
        if state is _QUIET:
            if not voiced:
                return []
            self.state = VadState.STARTING
            self._utterance = list(self._pre_roll)
            self._utterance_bytes = sum(len(f) for f in self._utterance)
            self._voiced = self._frame_s
            self._gap = 0.0
            self._started_at = start
            self._last_voiced_end = self._now
            if self._voiced >= self.params.start_seconds:
                self.state = VadState.SPEAKING
                return [SpeechStarted(at=start)]
            return []
        p = self.params
        events: list[VadEvent] = []
        self._utterance.append(frame)
        self._utterance_bytes += len(frame)
        if voiced:
            self._voiced += self._frame_s
            self._gap = 0.0
            self._last_voiced_end = self._now
        else:
            self._gap += self._frame_s
        if state is VadState.STARTING:
            if voiced and self._voiced >= p.start_seconds - 1e-9:
                self.state = VadState.SPEAKING
                events.append(SpeechStarted(at=self._started_at))
            elif not voiced and self._gap >= p.start_gap_seconds - 1e-9:
                self.state = VadState.QUIET
                self._utterance = []
                self._voiced = 0.0
            return events
        if state is VadState.SPEAKING and not voiced:
            self.state = VadState.STOPPING
        elif state is VadState.STOPPING and voiced:
            self.state = VadState.SPEAKING
        if self.state is VadState.STOPPING and self._gap >= p.stop_seconds - 1e-9:
            events.append(self._end(forced=False))
        elif self._utterance_bytes >= self._max_bytes:
            events.append(self._end(forced=True))
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: close an utterance in progress."""
        if self.speaking:
            return [self._end(forced=True)]
        self.state = VadState.QUIET
        self._utterance = []
        return []

    def _end(self, forced: bool) -> SpeechEnded:
        event = SpeechEnded(
            started_at=self._started_at,
            ended_at=self._last_voiced_end,
            detected_at=self._now,
            audio=b"".join(self._utterance),
            sample_rate=self.sample_rate,
            forced=forced,
        )
        self.state = VadState.QUIET
        self._utterance = []
        self._voiced = 0.0
        self._gap = 0.0
        self._pre_roll.clear()
        self.utterances += 1
        return event
