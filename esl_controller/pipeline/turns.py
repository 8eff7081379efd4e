"""Turn-taking as a pure state machine: events in, decisions out (no gevent, no I/O).

:class:`TurnTaker` knows who is speaking, whether the assistant may be interrupted, the silence and
max-duration clocks and the end-call phrases. The conversation (``conversation.py``) feeds it events with the
call time and carries out the decisions it returns:

* :class:`Interrupt` — stop playback now, cancel the model/TTS, truncate the assistant's message;
* :class:`Respond` — run a model turn (the caller's final transcript is in ``text``);
* :class:`SpeakIdle` — say an idle message (``customer.speech.timeout`` hook);
* :class:`EndCall` — end the call with a Vapi ``endedReason`` (after ``message`` is spoken, when set);
* :class:`Ignore` — a backchannel or too few words while the assistant speaks: recorded, no reply.

Also here: :class:`SentenceChunker`, which cuts streamed model text into speakable sentences, and
:func:`find_end_call_phrase`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from esl_controller.media.endpointing import StopSpeakingPlan, is_backchannel, should_interrupt
from esl_controller.pipeline.assistant import AssistantConfig, IdlePlan

# -- events -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallerStarted:
    at: float


@dataclass(frozen=True)
class CallerVoiced:
    """Caller speech in progress: ``voiced`` seconds of it so far (from the VAD)."""

    at: float
    voiced: float


@dataclass(frozen=True)
class CallerPartial:
    """An interim transcript of the utterance in progress (streaming STT)."""

    at: float
    text: str


@dataclass(frozen=True)
class CallerStopped:
    at: float


@dataclass(frozen=True)
class CallerText:
    """The caller's final transcript of one utterance."""

    at: float
    text: str


@dataclass(frozen=True)
class AssistantBusy:
    """The assistant starts a turn (model thinking or speech queued)."""

    at: float
    interruptible: bool = True
    #: end the call with this reason once the turn has been spoken
    end_after: str | None = None


@dataclass(frozen=True)
class AssistantText:
    """A sentence the assistant is about to speak (checked for end-call phrases)."""

    at: float
    text: str


@dataclass(frozen=True)
class AssistantDone:
    """The assistant's turn finished playing (or was cancelled)."""

    at: float


@dataclass(frozen=True)
class Tick:
    at: float


TurnEvent = (
    CallerStarted
    | CallerVoiced
    | CallerPartial
    | CallerStopped
    | CallerText
    | AssistantBusy
    | AssistantText
    | AssistantDone
    | Tick
)

# -- decisions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interrupt:
    reason: str  # voice | words | interruption-phrase


@dataclass(frozen=True)
class Respond:
    text: str


@dataclass(frozen=True)
class SpeakIdle:
    text: str
    count: int


@dataclass(frozen=True)
class EndCall:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Ignore:
    text: str
    reason: str  # backchannel | not-enough | empty


Decision = Interrupt | Respond | SpeakIdle | EndCall | Ignore


def find_end_call_phrase(text: str, phrases: tuple[str, ...]) -> str | None:
    """The first end-call phrase contained in ``text`` (case-insensitive, whole words), or None."""
    norm = " ".join(re.findall(r"[\w']+", text.lower()))
    for phrase in phrases:
        p = " ".join(re.findall(r"[\w']+", phrase.lower()))
        if p and re.search(rf"(?:^|\s){re.escape(p)}(?:$|\s)", norm):
            return phrase
    return None


@dataclass(frozen=True)
class TurnPolicy:
    stop_plan: StopSpeakingPlan = StopSpeakingPlan()
    end_call_phrases: tuple[str, ...] = ()
    end_call_message: str = ""
    idle: IdlePlan = IdlePlan()
    max_duration: float | None = None

    @classmethod
    def from_assistant(cls, config: AssistantConfig) -> TurnPolicy:
        return cls(
            stop_plan=config.stop_speaking_plan,
            end_call_phrases=config.end_call_phrases,
            end_call_message=config.end_call_message,
            idle=config.idle,
            max_duration=config.max_duration_seconds,
        )


class TurnTaker:
    """The turn-taking state of one call. ``handle(event)`` returns the decisions to carry out, in order."""

    def __init__(self, policy: TurnPolicy, start: float = 0.0) -> None:
        self.policy = policy
        self.caller_speaking = False
        self.caller_voiced = 0.0
        self.assistant_busy = False
        self.interruptible = True
        self.end_after: str | None = None
        self.ended: str | None = None
        self.last_activity = start
        self.idle_count = 0
        self.interrupted_at: float | None = None
        self.interruptions = 0
        self.turn = 0  # assistant turns started

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """The earliest call time at which a :class:`Tick` may produce a decision."""
        if self.ended is not None:
            return None
        times = []
        if self.policy.max_duration is not None:
            times.append(self.policy.max_duration)
        if not (self.caller_speaking or self.assistant_busy):
            idle = self.policy.idle
            if idle.timeout_seconds is not None:
                times.append(self.last_activity + idle.timeout_seconds)
            if idle.silence_timeout_seconds is not None:
                times.append(self.last_activity + idle.silence_timeout_seconds)
        return min(times) if times else None

    # ------------------------------------------------------------------ events

    def handle(self, event: TurnEvent) -> list[Decision]:
        if self.ended is not None:
            return []
        if isinstance(event, CallerStarted):
            self.caller_speaking = True
            self.caller_voiced = 0.0
            self.idle_count = 0  # triggerResetMode: onUserSpeech
            self.last_activity = event.at
            return []
        if isinstance(event, CallerVoiced):
            self.caller_voiced = event.voiced
            self.last_activity = event.at
            return self._maybe_interrupt(event.at, "")
        if isinstance(event, CallerPartial):
            self.last_activity = event.at
            return self._maybe_interrupt(event.at, event.text)
        if isinstance(event, CallerStopped):
            self.caller_speaking = False
            self.last_activity = event.at
            return []
        if isinstance(event, CallerText):
            return self._caller_text(event)
        if isinstance(event, AssistantBusy):
            self.assistant_busy = True
            self.interruptible = event.interruptible
            self.turn += 1
            if event.end_after:
                self.end_after = event.end_after
            return []
        if isinstance(event, AssistantText):
            if self.policy.end_call_phrases and self.end_after is None:
                if find_end_call_phrase(event.text, self.policy.end_call_phrases):
                    self.end_after = "assistant-said-end-call-phrase"
            return []
        if isinstance(event, AssistantDone):
            self.assistant_busy = False
            self.interruptible = True
            self.last_activity = event.at
            if self.end_after is not None:
                return [self._end(self.end_after)]
            return []
        if isinstance(event, Tick):
            return self._tick(event.at)
        raise TypeError(f"unknown turn event {event!r}")

    def mark_end_after(self, reason: str) -> None:
        """End the call once the current (or next) assistant turn has been spoken."""
        self.end_after = reason

    # ------------------------------------------------------------------ internals

    def _end(self, reason: str, message: str = "") -> EndCall:
        self.ended = reason
        return EndCall(reason, message)

    def _maybe_interrupt(self, at: float, text: str) -> list[Decision]:
        if not (self.assistant_busy and self.interruptible):
            return []
        decision = should_interrupt(self.policy.stop_plan, self.caller_voiced, text)
        if not decision.interrupt:
            return []
        self.assistant_busy = False
        self.interrupted_at = at
        self.interruptions += 1
        if self.end_after == "assistant-said-end-call-phrase":
            self.end_after = None  # the phrase was cut off: the caller did not hear the goodbye
        return [Interrupt(decision.reason)]

    def _caller_text(self, event: CallerText) -> list[Decision]:
        text = event.text.strip()
        self.last_activity = event.at
        if not text:
            return [Ignore("", "empty")]
        if self.assistant_busy:
            if not self.interruptible:
                return [Ignore(text, "not-interruptible")]
            # The final transcript decides for word-counting plans (and for voice plans that did not fire).
            self.caller_voiced = max(self.caller_voiced, self.policy.stop_plan.voice_seconds)
            out = self._maybe_interrupt(event.at, text)
            if not out:
                why = "backchannel" if is_backchannel(text, self.policy.stop_plan) else "not-enough"
                return [Ignore(text, why)]
            return [*out, Respond(text)]
        return [Respond(text)]

    def _tick(self, at: float) -> list[Decision]:
        p = self.policy
        if p.max_duration is not None and at >= p.max_duration - 1e-9:
            return [self._end("exceeded-max-duration")]
        if self.caller_speaking or self.assistant_busy:
            return []
        quiet = at - self.last_activity
        idle = p.idle
        if idle.timeout_seconds is not None and quiet >= idle.timeout_seconds - 1e-9:
            if idle.messages and self.idle_count < idle.max_count:
                text = idle.messages[self.idle_count % len(idle.messages)]
                self.idle_count += 1
                self.last_activity = at
                return [SpeakIdle(text, self.idle_count)]
            if idle.end_on_timeout or (idle.messages and self.idle_count >= idle.max_count):
                return [self._end("silence-timed-out", p.end_call_message)]
        if (
            idle.silence_timeout_seconds is not None
            and quiet >= idle.silence_timeout_seconds - 1e-9
        ):
            return [self._end("silence-timed-out", p.end_call_message)]
        return []


# -- sentence chunking -----------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?;:])[\"')\]]*\s+|\n+")
_ABBREVIATIONS = {
    "mr.",
    "mrs.",
    "ms.",
    "dr.",
    "st.",
    "vs.",
    "e.g.",
    "i.e.",
    "etc.",
    "no.",
    "sr.",
    "jr.",
}


class SentenceChunker:
    """Streamed text in, whole sentences out, so TTS can start on the first sentence while the model writes.

    A sentence ends at ``. ! ? ; :`` followed by white space, or a newline; abbreviations like "Dr." and
    decimal numbers do not end one. Pieces shorter than ``min_chars`` wait to be joined with the next one.
    """

    def __init__(self, min_chars: int = 8) -> None:
        self.min_chars = min_chars
        self._buf = ""

    def push(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        start = 0
        for match in _SENTENCE_END.finditer(self._buf):
            piece = self._buf[start : match.end()].strip()
            last = piece.split()[-1].lower() if piece.split() else ""
            if last in _ABBREVIATIONS or len(piece) < self.min_chars:
                continue
            out.append(piece)
            start = match.end()
        self._buf = self._buf[start:]
        return out

    def flush(self) -> list[str]:
        rest = self._buf.strip()
        self._buf = ""
        return [rest] if rest else []
