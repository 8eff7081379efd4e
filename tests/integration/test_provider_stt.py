"""Hosted transcribers against local fakes: OpenAI /v1/audio/transcriptions and Deepgram's listen WebSocket.

Audio is real speech (espeak-ng fixtures); the Deepgram fake endpoints on it by energy, in audio time.
"""

from __future__ import annotations

import pytest

from esl_controller.media.codecs import frame_bytes, silence
from esl_controller.pipeline.providers.base import ProviderError, Transcript
from esl_controller.pipeline.providers.http import HttpPolicy
from esl_controller.pipeline.providers.stt.deepgram import DeepgramTranscriber
from esl_controller.pipeline.providers.stt.openai_compat import OpenAITranscriber
from tests.audio_fixtures import PHRASES, speech, speech_with_gaps
from tests.fakes._http import Knobs
from tests.fakes.deepgram_server import DGKnobs, FakeDeepgram
from tests.fakes.openai_server import FakeOpenAI

# -- OpenAI-compatible ------------------------------------------------------------------------------


def whisper(fake, **kw) -> OpenAITranscriber:
    return OpenAITranscriber(
        "gpt-4o-mini-transcribe",
        base_url=fake.base_url,
        api_key="sk-stt",
        language="en-US",
        policy=kw.pop("policy", HttpPolicy(connect_timeout=2, max_retries=0, backoff=0.01)),
        **kw,
    )


@pytest.mark.parametrize("rate", [8000, 16000])
def test_openai_transcription_uploads_the_utterance_as_wav(rate):
    audio = speech(PHRASES[1], rate)
    with FakeOpenAI(transcript=" Yes, seven thirty works for me. ") as fake:
        result = whisper(fake).transcribe(audio, rate, timeout=5)
        upload = fake.last_upload
        assert fake.requests[0].headers["authorization"] == "Bearer sk-stt"
    assert result.text == "Yes, seven thirty works for me." and result.is_final
    assert upload["model"] == "gpt-4o-mini-transcribe" and upload["language"] == "en"
    assert upload["response_format"] == "json" and upload["filename"].endswith(".wav")
    seconds = len(audio) / (2 * rate)
    assert abs(upload["seconds"] - seconds) < 1e-6
    assert result.usage.audio_seconds == round(seconds, 3) and result.usage.request_id == "req_1"


@pytest.mark.parametrize(("status", "retryable"), [(401, False), (429, True), (500, True)])
def test_openai_transcription_failures(status, retryable):
    with FakeOpenAI(knobs=Knobs(fail_status=status)) as fake:
        with pytest.raises(ProviderError) as info:
            whisper(fake).transcribe(speech(PHRASES[2]), 16000, timeout=5)
    assert info.value.retryable is retryable
    assert info.value.ended_reason == "pipeline-error-openai-transcriber-failed"


def test_openai_transcription_retries_and_times_out():
    audio = speech(PHRASES[2])
    with FakeOpenAI(knobs=Knobs(fail_status=503, fail_times=1)) as fake:
        policy = HttpPolicy(max_retries=1, backoff=0.01)
        assert (
            whisper(fake, policy=policy).transcribe(audio, 16000, timeout=5).text == "hello world"
        )
        assert len(fake.requests) == 2
    with FakeOpenAI(knobs=Knobs(latency=3)) as fake:
        with pytest.raises(ProviderError, match="timed out") as info:
            whisper(fake).transcribe(audio, 16000, timeout=0.3)
    assert info.value.retryable


# -- Deepgram ----------------------------------------------------------------------------------------


def deepgram(fake, key="dg-test-key", **config) -> DeepgramTranscriber:
    cfg = {
        "provider": "deepgram",
        "model": "nova-2",
        "language": "en-US",
        "endpointing": 300,
        "url": fake.url,
        "maxRetries": 0,
        **config,
    }
    return DeepgramTranscriber.from_config(cfg, {"provider": "deepgram", "apiKey": key})


def push_frames(stream, audio: bytes, rate: int) -> None:
    size = frame_bytes(rate)
    for i in range(0, len(audio), size):
        stream.push(audio[i : i + size])


def drain_until_finals(stream, count: int, timeout: float = 5.0) -> list[Transcript]:
    got: list[Transcript] = []
    while sum(t.is_final for t in got) < count:
        batch = list(stream.results(timeout))
        if not batch:
            break
        got += batch
    return got


@pytest.mark.parametrize("rate", [8000, 16000])
def test_deepgram_streams_interim_and_final_results_for_real_speech(rate):
    spoken = speech_with_gaps(PHRASES, rate, gap=1.0)
    with FakeDeepgram(PHRASES) as fake:
        stream = deepgram(fake).open_stream(rate)
        try:
            push_frames(stream, spoken.audio, rate)
            got = drain_until_finals(stream, 3)
        finally:
            stream.close()
        session = fake.sessions[0]
    finals = [t for t in got if t.is_final]
    assert [t.text for t in finals] == list(PHRASES)
    partials = [t for t in got if not t.is_final]
    assert partials and all(not p.is_final for p in partials)
    assert partials[0].text == PHRASES[0].split()[0]
    assert session.headers["authorization"] == "Token dg-test-key"
    assert session.query["sample_rate"] == [str(rate)] and session.query["encoding"] == ["linear16"]
    assert session.query["interim_results"] == ["true"] and session.query["endpointing"] == ["300"]
    assert session.audio_bytes == len(spoken.audio)
    assert session.controls[-1] == "CloseStream"
    total = sum(t.usage.audio_seconds for t in finals)
    assert 0 < total <= spoken.seconds + 0.01 and finals[0].usage.request_id == "dg-req-1"
    assert abs(stream.usage().audio_seconds - spoken.seconds) < 0.01


def test_deepgram_finish_flushes_the_utterance():
    audio = speech(PHRASES[0], 16000)
    with FakeDeepgram(["hello I would like to book a table"]) as fake:
        stream = deepgram(fake, endpointing=5000).open_stream(16000)  # its endpointer will not fire
        try:
            push_frames(stream, audio, 16000)
            final = stream.finish(timeout=5)
            assert final is not None and final.text == "hello I would like to book a table"
            assert stream.finish(timeout=5) is None  # nothing said since
            push_frames(stream, silence(0.2, 16000), 16000)
        finally:
            stream.close()
        assert fake.sessions[0].controls == ["Finalize", "Finalize", "CloseStream"]


def test_deepgram_keepalive_when_no_audio_flows():
    with FakeDeepgram() as fake:
        t = DeepgramTranscriber.from_config(
            {"provider": "deepgram", "url": fake.url, "maxRetries": 0}, {"apiKey": "dg-test-key"}
        )
        t.keepalive_seconds = 0.05
        stream = t.open_stream(16000)
        try:
            for _ in range(20):
                if "KeepAlive" in fake.sessions[0].controls:
                    break
                list(stream.results(0.05))
        finally:
            stream.close()
        assert "KeepAlive" in fake.sessions[0].controls


@pytest.mark.parametrize(("status", "retryable"), [(401, False), (429, True), (503, True)])
def test_deepgram_handshake_rejections(status, retryable):
    key = "wrong" if status == 401 else "dg-test-key"
    with FakeDeepgram(knobs=DGKnobs(fail_status=None if status == 401 else status)) as fake:
        with pytest.raises(ProviderError) as info:
            deepgram(fake, key=key).open_stream(16000)
    assert info.value.status_code == status and info.value.retryable is retryable
    assert "fake rejection" in str(info.value) and "wrong" not in str(info.value)
    assert info.value.ended_reason == "pipeline-error-deepgram-transcriber-failed"


def test_deepgram_handshake_timeout_is_retryable():
    with FakeDeepgram(knobs=DGKnobs(latency=3)) as fake:
        with pytest.raises(ProviderError) as info:
            deepgram(fake, connectTimeoutSeconds=0.3).open_stream(16000)
    assert info.value.retryable


def test_deepgram_connection_refused_is_retryable():
    with FakeDeepgram() as fake:
        url = fake.url
    with pytest.raises(ProviderError) as info:
        DeepgramTranscriber.from_config({"url": url, "maxRetries": 0}).open_stream(16000)
    assert info.value.retryable


def test_deepgram_malformed_message_is_skipped():
    spoken = speech_with_gaps(PHRASES[:1], 16000)
    with FakeDeepgram(PHRASES[:1], knobs=DGKnobs(malformed_after=1)) as fake:
        stream = deepgram(fake).open_stream(16000)
        try:
            push_frames(stream, spoken.audio, 16000)
            finals = [t for t in drain_until_finals(stream, 1) if t.is_final]
        finally:
            stream.close()
    assert [t.text for t in finals] == [PHRASES[0]]


def test_deepgram_disconnect_mid_stream_fails_the_stream():
    spoken = speech_with_gaps(PHRASES[:2], 16000)
    with FakeDeepgram(PHRASES, knobs=DGKnobs(disconnect_after=2)) as fake:
        stream = deepgram(fake).open_stream(16000)
        try:
            with pytest.raises(ProviderError) as info:
                push_frames(stream, spoken.audio, 16000)
                for _ in range(50):
                    list(stream.results(0.1))
                    stream.push(silence(0.02, 16000))
        finally:
            stream.close()
    assert info.value.retryable


def test_deepgram_server_close_with_error_code():
    spoken = speech_with_gaps(PHRASES[:2], 16000)
    with FakeDeepgram(PHRASES, knobs=DGKnobs(close_code=1011)) as fake:
        stream = deepgram(fake).open_stream(16000)
        try:
            with pytest.raises(ProviderError, match="1011"):
                push_frames(stream, spoken.audio, 16000)
                for _ in range(50):
                    list(stream.results(0.1))
                    stream.push(silence(0.02, 16000))
        finally:
            stream.close()
