"""Provider interfaces: speech-to-text, the model, text-to-speech.

Every vendor lives in its own module under ``providers/{stt,llm,tts}/`` and implements one of the protocols
below. Providers are blocking-call objects that are safe to use from a gevent greenlet: network I/O goes through
gevent-patched sockets, CPU-bound decoding goes to worker processes (never the hub, never a gevent thread).

Failures are :class:`ProviderError` with ``retryable`` (network errors, timeouts, 408/429/5xx) and the Vapi-style
``ended_reason`` the call ends with when no fallback works (``pipeline-error-<provider>-<what>``).
Every request reports :class:`Usage` so costs can be priced from the rate card.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# -- usage and errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What one provider request consumed (the cost ledger's input; mirrors observe.costs.UsageItem)."""

    kind: str  # "stt" | "llm" | "tts"
    provider: str
    model: str = ""
    audio_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    characters: int = 0
    voice_id: str = ""
    request_id: str = ""
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", 0, 0.0)}


class ProviderError(Exception):
    """A provider request failed. ``retryable`` says whether trying again (or a fallback) may help."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        kind: str,
        retryable: bool = False,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.kind = kind  # "stt" | "llm" | "tts"
        self.retryable = retryable
        self.status_code = status_code

    @property
    def ended_reason(self) -> str:
        what = {"stt": "transcriber-failed", "llm": "llm-failed", "tts": "voice-failed"}.get(
            self.kind, "failed"
        )
        return f"pipeline-error-{self.provider}-{what}"


def retryable_status(status: int) -> bool:
    """HTTP statuses worth retrying: 408, 409, 429 and 5xx (4xx otherwise are the request's fault)."""
    return status in (408, 409, 429) or status >= 500


class MissingExtra(ImportError):
    """An optional provider's package is not installed; the message names the extra to install."""

    def __init__(self, provider: str, extra: str, package: str) -> None:
        super().__init__(
            f"the {provider} provider needs the {package!r} package: pip install 'esl-controller[{extra}]'"
        )
        self.provider = provider
        self.extra = extra


# -- speech-to-text -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transcript:
    text: str
    is_final: bool = True
    confidence: float | None = None
    language: str = ""
    usage: Usage | None = None


@runtime_checkable
class Transcriber(Protocol):
    """Utterance-at-a-time STT: the endpointed utterance goes in, its text comes out."""

    name: str

    def transcribe(self, pcm16: bytes, sample_rate: int, *, timeout: float) -> Transcript: ...


@runtime_checkable
class TranscriberStream(Protocol):
    """Streaming STT for one call: audio is pushed as it arrives; partial and final results come back."""

    def push(self, pcm16: bytes) -> None: ...

    def results(self, timeout: float) -> Iterator[Transcript]:
        """Results available within ``timeout`` seconds (possibly none)."""
        ...

    def finish(self, timeout: float) -> Transcript | None:
        """End of utterance: flush and return the final result."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class StreamingTranscriber(Protocol):
    name: str

    def open_stream(self, sample_rate: int) -> TranscriberStream: ...


# -- the model -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of a tool call; fragments with the same ``index`` concatenate their ``arguments``."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class ModelDone:
    finish_reason: str = "stop"
    usage: Usage | None = None


ModelChunk = TextDelta | ToolCallDelta | ModelDone


@dataclass(frozen=True)
class ChatRequest:
    """An OpenAI-style chat request: ``messages`` are ``{role, content, tool_calls?, tool_call_id?}`` dicts;
    ``tools`` are OpenAI function-tool definitions."""

    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    #: JSON Schema for structured output (response_format json_schema), when set
    json_schema: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class ChatModel(Protocol):
    name: str
    model: str

    def stream(self, request: ChatRequest, *, timeout: float) -> Iterator[ModelChunk]:
        """Yield deltas as they arrive and finish with exactly one :class:`ModelDone`."""
        ...


# -- text-to-speech ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioChunk:
    pcm16: bytes
    sample_rate: int


@runtime_checkable
class Synthesizer(Protocol):
    name: str
    voice_id: str

    def synthesize(self, text: str, *, sample_rate: int, timeout: float) -> Iterator[AudioChunk]:
        """Mono PCM16 little-endian at ``sample_rate``, streamed in chunks; usage via :meth:`last_usage`."""
        ...

    def last_usage(self) -> Usage | None: ...
