"""Barge-in decisions with Vapi's ``stopSpeakingPlan`` (pure).

While the assistant is speaking, the caller interrupts it when:

* ``numWords == 0`` (the default): the caller has been voiced for ``voiceSeconds`` (default 0.2 s,
  measured by the VAD);
* ``numWords > 0``: the caller's words so far (STT partials or finals), not counting
  acknowledgement/backchannel phrases ("uh-huh", "okay", "yeah", "mm-hmm", "right", ...), reach
  ``numWords``; ``voiceSeconds`` is then ignored. An interruption phrase ("stop", "wait",
  "no", ...) always interrupts.

After an interruption the assistant waits ``backoffSeconds`` (default 1.0 s) before it may speak
again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_ACKNOWLEDGEMENT_PHRASES: tuple[str, ...] = (
    "uh-huh",
    "uh huh",
    "mm-hmm",
    "mm hmm",
    "mhm",
    "mhmm",
    "hmm",
    "mm",
    "ah",
    "oh",
    "okay",
    "ok",
    "yeah",
    "yes",
    "yep",
    "right",
    "sure",
    "alright",
    "all right",
    "got it",
    "gotcha",
    "i see",
    "i understand",
    "understood",
    "i hear you",
    "i'm listening",
)
DEFAULT_INTERRUPTION_PHRASES: tuple[str, ...] = (
    "stop",
    "wait",
    "hold on",
    "hang on",
    "no",
    "nope",
    "actually",
    "but",
    "excuse me",
    "enough",
    "pause",
    "never mind",
)

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lower-case word tokens; hyphens and apostrophes inside a word are kept."""
    return _WORD.findall(text.lower())


def _phrase_tokens(phrases: tuple[str, ...]) -> list[list[str]]:
    # Longest phrases first so "all right" wins over "right".
    return sorted((words(p) for p in phrases if words(p)), key=len, reverse=True)


def _strip_phrases(tokens: list[str], phrases: list[list[str]]) -> tuple[list[str], int]:
    """Remove phrase occurrences; returns (remaining tokens, number of phrase hits)."""
    out: list[str] = []
    hits = 0
    i = 0
    while i < len(tokens):
        for phrase in phrases:
            if tokens[i : i + len(phrase)] == phrase:
                i += len(phrase)
                hits += 1
                break
        else:
            out.append(tokens[i])
            i += 1
    return out, hits


@dataclass(frozen=True)
class StopSpeakingPlan:
    num_words: int = 0
    voice_seconds: float = 0.2
    backoff_seconds: float = 1.0
    acknowledgement_phrases: tuple[str, ...] = DEFAULT_ACKNOWLEDGEMENT_PHRASES
    interruption_phrases: tuple[str, ...] = DEFAULT_INTERRUPTION_PHRASES

    @classmethod
    def from_dict(cls, plan: dict[str, Any] | None) -> StopSpeakingPlan:
        """From a Vapi ``stopSpeakingPlan`` object (camelCase keys; missing keys keep defaults)."""
        plan = plan or {}
        values: dict[str, Any] = {}
        if plan.get("numWords") is not None:
            values["num_words"] = int(plan["numWords"])
        if plan.get("voiceSeconds") is not None:
            values["voice_seconds"] = float(plan["voiceSeconds"])
        if plan.get("backoffSeconds") is not None:
            values["backoff_seconds"] = float(plan["backoffSeconds"])
        if plan.get("acknowledgementPhrases") is not None:
            values["acknowledgement_phrases"] = tuple(plan["acknowledgementPhrases"])
        if plan.get("interruptionPhrases") is not None:
            values["interruption_phrases"] = tuple(plan["interruptionPhrases"])
        return cls(**values)


@dataclass(frozen=True)
class InterruptDecision:
    interrupt: bool
    reason: str  # "voice", "words", "interruption-phrase", "backchannel", "not-enough"


def is_backchannel(text: str, plan: StopSpeakingPlan | None = None) -> bool:
    """True when the text is only acknowledgement phrases (and not empty)."""
    plan = plan or StopSpeakingPlan()
    tokens = words(text)
    rest, hits = _strip_phrases(tokens, _phrase_tokens(plan.acknowledgement_phrases))
    return bool(tokens) and not rest and hits > 0


def should_interrupt(
    plan: StopSpeakingPlan, voiced_seconds: float, transcript: str = ""
) -> InterruptDecision:
    """Decide whether caller speech so far interrupts the assistant."""
    tokens = words(transcript)
    if tokens:
        _, hits = _strip_phrases(tokens, _phrase_tokens(plan.interruption_phrases))
        if hits and plan.num_words > 0:
            return InterruptDecision(True, "interruption-phrase")
    if plan.num_words <= 0:
        if voiced_seconds >= plan.voice_seconds - 1e-9:
            return InterruptDecision(True, "voice")
        return InterruptDecision(False, "not-enough")
    meaningful, acks = _strip_phrases(tokens, _phrase_tokens(plan.acknowledgement_phrases))
    if len(meaningful) >= plan.num_words:
        return InterruptDecision(True, "words")
    if acks and not meaningful:
        return InterruptDecision(False, "backchannel")
    return InterruptDecision(False, "not-enough")


class BargeInDetector:
    """Tracks assistant speech and caller input; says when to interrupt and when to resume."""

    def __init__(self, plan: StopSpeakingPlan | None = None) -> None:
        self.plan = plan or StopSpeakingPlan()
        self.assistant_speaking = False
        self.interrupted_at: float | None = None
        self.interruptions = 0

    def assistant_started(self) -> None:
        self.assistant_speaking = True

    def assistant_stopped(self) -> None:
        self.assistant_speaking = False

    def caller_update(
        self, now: float, voiced_seconds: float, transcript: str = ""
    ) -> InterruptDecision | None:
        """Feed caller progress; returns a positive decision once per interruption, else None."""
        if not self.assistant_speaking:
            return None
        decision = should_interrupt(self.plan, voiced_seconds, transcript)
        if not decision.interrupt:
            return None
        self.assistant_speaking = False
        self.interrupted_at = now
        self.interruptions += 1
        return decision

    def resume_at(self) -> float | None:
        """Earliest time the assistant may speak again after the last interruption."""
        if self.interrupted_at is None:
            return None
        return self.interrupted_at + self.plan.backoff_seconds

    def may_speak(self, now: float) -> bool:
        resume = self.resume_at()
        return resume is None or now >= resume - 1e-9
