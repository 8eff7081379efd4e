"""Fake providers for tests and benchmarks, with knobs for delay, failure and timeout.

* :class:`FakeTranscriber` returns queued texts (or a fixed text) after ``delay`` seconds;
* :class:`FakeModel` streams a reply word by word with ``first_token_delay`` / ``token_delay``;
* :class:`FakeSynthesizer` makes real-looking audio (a tone, or espeak-ng speech with ``speech=True``) after
  ``first_byte_delay``.

``fail`` raises a :class:`ProviderError` (``retryable`` as given); ``hang`` sleeps past the request's timeout
and raises the timeout error a real provider would. Every fake counts its requests and keeps their inputs.
"""

from __future__ import annotations

import functools
import math
import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from esl_controller.pipeline.providers.base import (
    AudioChunk,
    ChatRequest,
    ModelChunk,
    ModelDone,
    ProviderError,
    TextDelta,
    ToolCallDelta,
    Transcript,
    Usage,
)


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)  # gevent-patched in the runtime and the tests


class _Knobs:
    provider = "fake"
    kind = "stt"

    def __init__(self, *, fail: bool = False, retryable: bool = False, hang: bool = False) -> None:
        self.fail = fail
        self.retryable = retryable
        self.hang = hang
        self.requests = 0

    def _check(self, timeout: float) -> None:
        self.requests += 1
        if self.hang:
            _sleep(timeout)
            raise ProviderError(
                f"{self.provider} timed out after {timeout:.1f}s",
                provider=self.provider,
                kind=self.kind,
                retryable=True,
                status_code=408,
            )
        if self.fail:
            raise ProviderError(
                f"{self.provider} failed (fake)",
                provider=self.provider,
                kind=self.kind,
                retryable=self.retryable,
                status_code=500 if self.retryable else 401,
            )


class FakeTranscriber(_Knobs):
    kind = "stt"

    def __init__(
        self,
        texts: Iterable[str] = (),
        *,
        default: str = "",
        delay: float = 0.0,
        name: str = "fake-stt",
        **knobs: Any,
    ) -> None:
        super().__init__(**knobs)
        self.name = self.provider = name
        self.texts: deque[str] = deque(texts)
        self.default = default
        self.delay = delay
        self.audio_seconds: list[float] = []

    def transcribe(self, pcm16: bytes, sample_rate: int, *, timeout: float) -> Transcript:
        self._check(timeout)
        _sleep(self.delay)
        seconds = len(pcm16) / (2.0 * sample_rate)
        self.audio_seconds.append(seconds)
        text = self.texts.popleft() if self.texts else self.default
        usage = Usage(
            kind="stt", provider=self.name, audio_seconds=seconds, latency_ms=self.delay * 1000
        )
        return Transcript(text=text, usage=usage)


class FakeStream:
    """One utterance of :class:`FakeStreamingTranscriber`: a word of partial text per ``seconds_per_word`` of
    audio pushed, the whole text at ``finish``."""

    def __init__(self, owner: FakeStreamingTranscriber, text: str, sample_rate: int) -> None:
        self.owner = owner
        self.words = text.split()
        self.rate = sample_rate
        self.pushed = 0
        self.reported = 0
        self.closed = False

    def push(self, pcm16: bytes) -> None:
        self.pushed += len(pcm16)

    def results(self, timeout: float) -> Iterator[Transcript]:
        seconds = self.pushed / (2.0 * self.rate)
        due = min(len(self.words), int(seconds / self.owner.seconds_per_word))
        if due > self.reported:
            self.reported = due
            yield Transcript(" ".join(self.words[:due]), is_final=False)

    def finish(self, timeout: float) -> Transcript | None:
        self.owner._check(timeout)
        _sleep(self.owner.delay)
        seconds = self.pushed / (2.0 * self.rate)
        usage = Usage(kind="stt", provider=self.owner.name, audio_seconds=seconds)
        return Transcript(" ".join(self.words), usage=usage)

    def close(self) -> None:
        self.closed = True


class FakeStreamingTranscriber(_Knobs):
    """A ``StreamingTranscriber``: each opened stream takes the next text (or ``default``)."""

    kind = "stt"

    def __init__(
        self,
        texts: Iterable[str] = (),
        *,
        default: str = "",
        seconds_per_word: float = 0.3,
        delay: float = 0.0,
        name: str = "fake-stream-stt",
        **knobs: Any,
    ) -> None:
        super().__init__(**knobs)
        self.name = self.provider = name
        self.texts: deque[str] = deque(texts)
        self.default = default
        self.seconds_per_word = seconds_per_word
        self.delay = delay
        self.streams: list[FakeStream] = []

    def open_stream(self, sample_rate: int) -> FakeStream:
        stream = FakeStream(self, self.texts.popleft() if self.texts else self.default, sample_rate)
        self.streams.append(stream)
        return stream


class FakeModel(_Knobs):
    kind = "llm"

    def __init__(
        self,
        replies: Iterable[str] = (),
        *,
        default: str = "Okay.",
        first_token_delay: float = 0.0,
        token_delay: float = 0.0,
        tool_calls: Iterable[tuple[str, str]] = (),
        fail_after_tokens: int | None = None,
        name: str = "fake-llm",
        **knobs: Any,
    ) -> None:
        super().__init__(**knobs)
        self.name = self.provider = name
        self.model = "fake"
        self.replies: deque[str] = deque(replies)
        self.default = default
        self.first_token_delay = first_token_delay
        self.token_delay = token_delay
        self.tool_calls = list(tool_calls)
        self.fail_after_tokens = fail_after_tokens
        self.seen: list[ChatRequest] = []
        self.abandoned = 0

    def stream(self, request: ChatRequest, *, timeout: float) -> Iterator[ModelChunk]:
        self.seen.append(request)
        self._check(timeout)
        reply = self.replies.popleft() if self.replies else self.default
        _sleep(self.first_token_delay)
        words = reply.split(" ")
        try:
            for i, word in enumerate(words):
                if self.fail_after_tokens is not None and i >= self.fail_after_tokens:
                    raise ProviderError(
                        "stream broke (fake)", provider=self.name, kind="llm", retryable=True
                    )
                if i:
                    _sleep(self.token_delay)
                yield TextDelta(word if i == 0 else " " + word)
        except BaseException as exc:
            if not isinstance(
                exc, Exception
            ):  # closed (GeneratorExit) or killed (GreenletExit) early
                self.abandoned += 1
            raise
        for index, (name, args) in enumerate(self.tool_calls):
            yield ToolCallDelta(index=index, id=f"fake_{index}", name=name, arguments=args)
        usage = Usage(kind="llm", provider=self.name, model="fake", completion_tokens=len(words))
        yield ModelDone("tool_calls" if self.tool_calls else "stop", usage)


@functools.lru_cache(maxsize=64)
def tone(seconds: float, sample_rate: int, freq: float = 220.0, amplitude: int = 8000) -> bytes:
    """A sine tone (cached: the fake voice must cost nothing on the hub)."""
    n = int(seconds * sample_rate)
    return struct.pack(
        f"<{n}h",
        *(int(amplitude * math.sin(2 * math.pi * freq * i / sample_rate)) for i in range(n)),
    )


class FakeSynthesizer(_Knobs):
    kind = "tts"

    def __init__(
        self,
        *,
        first_byte_delay: float = 0.0,
        seconds_per_word: float = 0.3,
        speech: bool = False,
        chunk_seconds: float = 0.1,
        name: str = "fake-tts",
        **knobs: Any,
    ) -> None:
        super().__init__(**knobs)
        self.name = self.provider = name
        self.voice_id = "fake"
        self.first_byte_delay = first_byte_delay
        self.seconds_per_word = seconds_per_word
        self.speech = speech
        self.chunk_seconds = chunk_seconds
        self.texts: list[str] = []
        self._usage: Usage | None = None

    def synthesize(self, text: str, *, sample_rate: int, timeout: float) -> Iterator[AudioChunk]:
        self.texts.append(text)
        self._check(timeout)
        _sleep(self.first_byte_delay)
        if self.speech:
            from esl_controller.pipeline.providers.tts import espeak_ng

            audio = espeak_ng.synthesize(text, sample_rate=sample_rate).audio
        else:
            audio = tone(max(1, len(text.split())) * self.seconds_per_word, sample_rate)
        self._usage = Usage(kind="tts", provider=self.name, characters=len(text))
        step = max(2, int(sample_rate * self.chunk_seconds) * 2)
        for i in range(0, len(audio), step):
            yield AudioChunk(audio[i : i + step], sample_rate)

    def last_usage(self) -> Usage | None:
        return self._usage


class RecordingPort:
    """A :class:`~esl_controller.pipeline.ports.MediaPort` for tests: records what was played and notified.

    Playback is simulated on the wall clock, ``speed`` times faster than real time (so barge-in has something
    to stop). :meth:`wait_for` waits (bounded) for a notice.
    """

    def __init__(self, sample_rate: int = 16000, speed: float = 1.0) -> None:
        from gevent.event import Event

        self.sample_rate = sample_rate
        self.speed = speed
        self.played: list[tuple[float, bytes, str]] = []
        self.notices: list[Any] = []
        self.stops: list[float] = []
        self._start: float | None = None
        self._queued = 0.0
        self._changed = Event()

    def _heard(self, now: float) -> float:
        if self._start is None:
            return 0.0
        return min(self._queued, (now - self._start) * self.speed)

    def heard(self) -> float:
        """Seconds of the current utterance heard so far."""
        return self._heard(time.monotonic())

    def play(self, pcm16: bytes, *, text: str = "") -> None:
        now = time.monotonic()
        if not self.playing():
            self._start, self._queued = now, 0.0
        self._queued += len(pcm16) / (2.0 * self.sample_rate)
        self.played.append((now, pcm16, text))
        self._signal()

    def playing(self) -> bool:
        return self._start is not None and self._heard(time.monotonic()) < self._queued

    def stop_playback(self) -> float:
        heard = self._heard(time.monotonic())
        self._start, self._queued = None, 0.0
        self.stops.append(heard)
        self._signal()
        return heard

    def notify(self, notice: Any) -> None:
        self.notices.append(notice)
        self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed.clear()

    @property
    def audio(self) -> bytes:
        return b"".join(p for _, p, _ in self.played)

    @property
    def texts(self) -> list[str]:
        return [t for _, _, t in self.played if t]

    def kinds(self) -> list[str]:
        return [n.kind for n in self.notices]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [n.data for n in self.notices if n.kind == kind]

    def wait_for(
        self, kind: str, where: Any = None, *, timeout: float = 10.0, start: int = 0
    ) -> dict[str, Any]:
        """The first notice of ``kind`` (from index ``start``) whose data passes ``where``; TimeoutError if none."""
        deadline = time.monotonic() + timeout
        while True:
            for notice in self.notices[start:]:
                if notice.kind == kind and (where is None or where(notice.data)):
                    return notice.data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind!r} notice within {timeout}s; got {self.kinds()}")
            self._changed.wait(timeout=min(remaining, 0.05))

    def wait_played(self, predicate: Any, *, timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` is true (checked on every change, bounded)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("condition not reached")
            self._changed.wait(timeout=min(remaining, 0.05))
