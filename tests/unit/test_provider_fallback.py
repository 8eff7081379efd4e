"""Fallback wrappers with the fake providers: next one on failure before output, never after."""

from __future__ import annotations

import pytest

from esl_controller.pipeline.providers.base import ChatRequest, ModelDone, ProviderError, TextDelta
from esl_controller.pipeline.providers.fallback import (
    FallbackChatModel,
    FallbackStreamingTranscriber,
    FallbackSynthesizer,
    FallbackTranscriber,
)
from esl_controller.pipeline.providers.testing import FakeModel, FakeSynthesizer, FakeTranscriber

REQ = ChatRequest(messages=[{"role": "user", "content": "hi"}])


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def text_of(chunks) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def test_model_falls_back_before_output_and_reports_who_served():
    primary = FakeModel(name="openai", fail=True, retryable=True)
    secondary = FakeModel(["Backup answer."], name="groq")
    chain = FallbackChatModel([primary, secondary])
    chunks = list(chain.stream(REQ, timeout=1))
    assert text_of(chunks) == "Backup answer." and isinstance(chunks[-1], ModelDone)
    assert chain.served_by == "groq/fake" and chain.name == "groq"
    assert [e.provider for e in chain.errors] == ["openai"]


def test_model_failure_after_output_is_not_retried_elsewhere():
    primary = FakeModel(["one two three"], name="openai", fail_after_tokens=2)
    secondary = FakeModel(["never"], name="groq")
    chain = FallbackChatModel([primary, secondary])
    got = []
    with pytest.raises(ProviderError):
        for chunk in chain.stream(REQ, timeout=1):
            got.append(chunk)
    assert text_of(got) == "one two" and secondary.requests == 0


def test_all_failing_raises_the_primary_error_with_all_failures():
    chain = FallbackChatModel(
        [FakeModel(name="openai", fail=True), FakeModel(name="groq", fail=True)]
    )
    with pytest.raises(ProviderError) as info:
        list(chain.stream(REQ, timeout=1))
    assert info.value.ended_reason == "pipeline-error-openai-llm-failed"
    assert [e.provider for e in info.value.fallback_errors] == ["openai", "groq"]


def test_failed_provider_cools_down_then_is_tried_again():
    clock = Clock()
    primary = FakeModel(name="openai", fail=True)
    secondary = FakeModel(name="groq")
    chain = FallbackChatModel([primary, secondary], cooldown=30, clock=clock)
    list(chain.stream(REQ, timeout=1))
    list(chain.stream(REQ, timeout=1))
    assert primary.requests == 1 and secondary.requests == 2  # skipped while cooling down
    clock.t = 31
    primary.fail = False
    list(chain.stream(REQ, timeout=1))
    assert primary.requests == 2 and chain.served_by == "openai/fake"


def test_synthesizer_fallback_and_usage():
    chain = FallbackSynthesizer(
        [FakeSynthesizer(name="11labs", fail=True), FakeSynthesizer(name="openai")]
    )
    chunks = list(chain.synthesize("Hello there", sample_rate=8000, timeout=1))
    assert chunks and chain.served_by == "openai/fake"
    assert chain.last_usage().provider == "openai" and chain.voice_id == "fake"


def test_transcriber_fallback():
    chain = FallbackTranscriber(
        [FakeTranscriber(name="openai", fail=True), FakeTranscriber(["yes"], name="local")]
    )
    assert chain.transcribe(b"\x01\x00" * 800, 8000, timeout=1).text == "yes"
    assert chain.served_by == "local" and chain.name == "local"


def test_streaming_transcriber_fallback_on_open():
    class Opener:
        def __init__(self, name, fail):
            self.name, self.fail, self.opened = name, fail, 0

        def open_stream(self, sample_rate):
            self.opened += 1
            if self.fail:
                raise ProviderError("down", provider=self.name, kind="stt", retryable=True)
            return f"stream@{sample_rate}"

    a, b = Opener("deepgram", True), Opener("backup", False)
    chain = FallbackStreamingTranscriber([a, b])
    assert chain.open_stream(16000) == "stream@16000" and chain.served_by == "backup"


def test_empty_chain_is_rejected():
    with pytest.raises(ValueError):
        FallbackChatModel([])
