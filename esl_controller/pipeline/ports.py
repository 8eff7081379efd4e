"""The seam between a live call's session (ESL, transports, database) and its voice pipeline.

The call session owns the transport and the reducer; the pipeline owns turn-taking and the providers. They meet
here, so each side is built and tested against this file alone:

* the session gives the pipeline a :class:`MediaPort` (how to speak, stop speaking, and report what happens);
* the session pushes caller audio into :meth:`Pipeline.feed` and control requests into :meth:`Pipeline.control`;
* the pipeline reports :class:`PipelineNotice` items through ``MediaPort.notify``; the session turns the ones that
  change the call (end, transfer, error) into reducer inputs (``AssistantEndedCall``, ``PipelineError``, …) and
  records the rest (transcripts, messages, turn timings) for the call log, webhooks and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class PipelineNotice:
    """Something the pipeline reports to its session.

    ``kind`` is one of:

    * ``ready``: the pipeline is running (the session feeds ``PipelineReady`` to the reducer)
    * ``transcript``: ``data = {role: user|assistant, transcriptType: partial|final, transcript}``
    * ``message``: a conversation entry to store: ``data = {role: user|bot|system|tool_calls|tool_call_result,
      message, time, endTime, secondsFromStart, duration, ...}`` (Vapi's call.messages[] item)
    * ``speech``: ``data = {status: started|stopped, role: user|assistant, turn}``
    * ``interrupted``: the caller barged in: ``data = {turn, playedMs, truncatedTo}``
    * ``turn-timing``: ``data = {turn, endOfSpeech, sttFinal, modelFirstToken, ttsFirstByte, firstAudioOut}``
      (seconds on the call clock; any may be missing)
    * ``usage``: ``data = Usage.as_dict()`` of one provider request
    * ``end-call``: the assistant ends the call: ``data = {reason: assistant-said-end-call-phrase |
      assistant-ended-call | assistant-ended-call-after-message-spoken | silence-timed-out |
      exceeded-max-duration, message}``
    * ``transfer``: ``data = {destination: {type: number|sip, number|sipUri, ...}, message}``
    * ``dtmf``: ``data = {digits}`` (send DTMF to the caller)
    * ``handoff``: the call moved to another assistant, history kept: ``data = {status: completed|failed,
      assistantId, assistantName, error}`` (recorded as a call event; the pipeline already switched)
    * ``error``: ``data = {endedReason: pipeline-error-..., message, fatal: bool}``
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class MediaPort(Protocol):
    """What a pipeline may do to its call. Implemented by the session for each transport."""

    #: sample rate of audio the pipeline sends with :meth:`play` and receives through ``feed``
    sample_rate: int

    def play(self, pcm16: bytes, *, text: str = "") -> None:
        """Queue assistant speech (mono PCM16 at ``sample_rate``) to be played to the caller, in order."""
        ...

    def stop_playback(self) -> float:
        """Barge-in: stop what the caller hears at once and drop queued speech. Returns the seconds of the
        current utterance actually played (so the message history can be truncated to it)."""
        ...

    def playing(self) -> bool:
        """Whether assistant speech is being played or queued."""
        ...

    def notify(self, notice: PipelineNotice) -> None:
        """Report a notice to the session (never blocks for long; never raises)."""
        ...


@runtime_checkable
class Pipeline(Protocol):
    """One call's voice pipeline: audio in, speech out, turns, tools. Runs its own greenlets."""

    def start(self) -> None:
        """Begin (first message per ``firstMessageMode``, timers). Sends a ``ready`` notice."""
        ...

    def feed(self, caller_pcm16: bytes, at: float) -> None:
        """Caller audio (mono PCM16 at the port's rate); ``at`` is call time in seconds. Must be cheap: it runs on
        the transport's greenlet for every 20 ms frame."""
        ...

    def control(self, command: Any) -> None:
        """A live-control command (``esl_controller.calls.control``): say, add-message, mute, handoff..."""
        ...

    def stop(self, timeout: float = 5.0) -> None:
        """The call ended: stop timers, greenlets and provider streams."""
        ...
