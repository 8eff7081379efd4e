"""Fallbacks: a second model, voice or transcriber when the first one fails.

Each wrapper holds providers in order of preference and tries the next one when a :class:`ProviderError`
is raised **before any output** (no text delta, audio chunk or transcript handed on). A failure after output
began is re-raised: the caller already heard or saw part of the answer, and a different provider would start
over. ``served_by`` names the provider that answered the last request (``"provider/model"`` for models,
``"provider/voiceId"`` for voices); ``errors`` holds the failures that led there.

A provider that failed is skipped for ``cooldown`` seconds (default 30), so a call whose primary is down
does not pay its timeout again on every turn; when every provider is cooling down, all are tried anyway.
When all fail, the **primary's** error is raised (its ``ended_reason`` names the configured provider), with
``fallback_errors`` listing every failure.

Vapi config that maps here: ``model.fallbackModels[]``, ``voice.fallbackPlan.voices[]``,
``transcriber.fallbackPlan.transcribers[]`` (see :mod:`esl_controller.pipeline.providers.hosted`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from esl_controller.pipeline.providers.base import (
    AudioChunk,
    ChatModel,
    ChatRequest,
    ModelChunk,
    ProviderError,
    StreamingTranscriber,
    Synthesizer,
    Transcriber,
    TranscriberStream,
    Transcript,
    Usage,
)

log = logging.getLogger("esl_controller.pipeline.providers.fallback")

P = TypeVar("P")
DEFAULT_COOLDOWN = 30.0


class _Chain(Generic[P]):
    def __init__(
        self,
        providers: Sequence[P],
        *,
        cooldown: float = DEFAULT_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        self.providers = list(providers)
        self.cooldown = cooldown
        self.clock = clock
        self.served_by = ""
        self.served_index: int | None = None
        self.errors: list[ProviderError] = []
        self._failed_at: dict[int, float] = {}

    def _order(self) -> list[int]:
        now = self.clock()
        fresh = [
            i
            for i in range(len(self.providers))
            if now - self._failed_at.get(i, -1e18) >= self.cooldown
        ]
        cooling = [i for i in range(len(self.providers)) if i not in fresh]
        return fresh + cooling

    def _failed(self, index: int, err: ProviderError) -> None:
        self._failed_at[index] = self.clock()
        self.errors.append(err)
        log.warning(
            "provider %s failed before output (%s); trying the next", self._label(index), err
        )

    def _served(self, index: int) -> None:
        self.served_index = index
        self.served_by = self._label(index)
        self._failed_at.pop(index, None)

    def _label(self, index: int) -> str:
        p: Any = self.providers[index]
        detail = getattr(p, "voice_id", "") if hasattr(p, "synthesize") else getattr(p, "model", "")
        name = getattr(p, "name", type(p).__name__)
        return f"{name}/{detail}" if detail else str(name)

    def _give_up(self) -> ProviderError:
        by_index = {id(e): e for e in self.errors}
        primary = (
            self.errors[0]
            if self.errors
            else ProviderError("no provider", provider="none", kind="")
        )
        primary.fallback_errors = list(by_index.values())  # type: ignore[attr-defined]
        return primary

    def _current(self) -> P:
        return self.providers[self.served_index if self.served_index is not None else 0]


class FallbackChatModel(_Chain[ChatModel]):
    """A :class:`ChatModel` over ``[primary, fallback, ...]``."""

    @property
    def name(self) -> str:
        return self._current().name

    @property
    def model(self) -> str:
        return self._current().model

    def stream(self, request: ChatRequest, *, timeout: float) -> Iterator[ModelChunk]:
        self.errors = []
        for index in self._order():
            started = False
            try:
                for chunk in self.providers[index].stream(request, timeout=timeout):
                    if not started:
                        started = True
                        self._served(index)
                    yield chunk
                if not started:
                    self._served(index)
                return
            except ProviderError as err:
                if started:
                    raise
                self._failed(index, err)
        raise self._give_up()


class FallbackSynthesizer(_Chain[Synthesizer]):
    """A :class:`Synthesizer` over ``[primary, fallback, ...]``."""

    @property
    def name(self) -> str:
        return self._current().name

    @property
    def voice_id(self) -> str:
        return self._current().voice_id

    def synthesize(self, text: str, *, sample_rate: int, timeout: float) -> Iterator[AudioChunk]:
        self.errors = []
        for index in self._order():
            started = False
            try:
                for chunk in self.providers[index].synthesize(
                    text, sample_rate=sample_rate, timeout=timeout
                ):
                    if not started:
                        started = True
                        self._served(index)
                    yield chunk
                if not started:
                    self._served(index)
                return
            except ProviderError as err:
                if started:
                    raise
                self._failed(index, err)
        raise self._give_up()

    def last_usage(self) -> Usage | None:
        if self.served_index is None:
            return None
        return self.providers[self.served_index].last_usage()


class FallbackTranscriber(_Chain[Transcriber]):
    """An utterance-at-a-time :class:`Transcriber` over ``[primary, fallback, ...]``."""

    @property
    def name(self) -> str:
        return self._current().name

    def transcribe(self, pcm16: bytes, sample_rate: int, *, timeout: float) -> Transcript:
        self.errors = []
        for index in self._order():
            try:
                result = self.providers[index].transcribe(pcm16, sample_rate, timeout=timeout)
            except ProviderError as err:
                self._failed(index, err)
                continue
            self._served(index)
            return result
        raise self._give_up()


class FallbackStreamingTranscriber(_Chain[StreamingTranscriber]):
    """A :class:`StreamingTranscriber` whose stream opens on the first provider that connects.

    A stream that fails later is the caller's to reopen (``open_stream`` again): the chain then skips the
    provider that failed at open time, for ``cooldown`` seconds.
    """

    @property
    def name(self) -> str:
        return self._current().name

    def open_stream(self, sample_rate: int) -> TranscriberStream:
        self.errors = []
        for index in self._order():
            try:
                stream = self.providers[index].open_stream(sample_rate)
            except ProviderError as err:
                self._failed(index, err)
                continue
            self._served(index)
            return stream
        raise self._give_up()
