"""Hosted voices against local fakes: OpenAI /v1/audio/speech and ElevenLabs streaming (loopback only)."""

from __future__ import annotations

import pytest

from esl_controller.media.codecs import rms
from esl_controller.pipeline.providers.base import ProviderError
from esl_controller.pipeline.providers.http import HttpPolicy
from esl_controller.pipeline.providers.tts import espeak_ng
from esl_controller.pipeline.providers.tts.elevenlabs import ElevenLabsSpeech, output_rate
from esl_controller.pipeline.providers.tts.openai_compat import OpenAISpeech, SpeechCache
from tests.fakes._http import FakeHTTPServer, Knobs
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI

TEXT = "Thank you for calling. How can I help you today?"
POLICY = HttpPolicy(connect_timeout=2, max_retries=0, backoff=0.01)


def openai_voice(fake, cache=None, **kw) -> OpenAISpeech:
    return OpenAISpeech(
        "alloy",
        "gpt-4o-mini-tts",
        base_url=fake.base_url,
        api_key="sk-tts",
        policy=kw.pop("policy", POLICY),
        cache=cache if cache is not None else SpeechCache(),
        **kw,
    )


def eleven_voice(fake, cache=None, **kw) -> ElevenLabsSpeech:
    return ElevenLabsSpeech(
        "21m00Tcm4TlvDq8ikWAM",
        api_key=kw.pop("api_key", "xi-test-key"),
        base_url=fake.base_url,
        stability=0.4,
        similarity_boost=0.8,
        policy=kw.pop("policy", POLICY),
        cache=cache if cache is not None else SpeechCache(),
        **kw,
    )


def collect(voice, text=TEXT, rate=16000, timeout=5.0) -> bytes:
    chunks = list(voice.synthesize(text, sample_rate=rate, timeout=timeout))
    assert all(c.sample_rate == rate and len(c.pcm16) % 2 == 0 for c in chunks)
    return b"".join(c.pcm16 for c in chunks)


def expected_seconds(text: str) -> float:
    audio = espeak_ng.synthesize(text, sample_rate=24000).audio
    return len(audio) / 48000


@pytest.mark.parametrize("rate", [8000, 16000])
def test_openai_speech_resamples_24k_pcm_to_the_call_rate(rate):
    with FakeOpenAI() as fake:
        voice = openai_voice(fake, speed=1.1)
        audio = collect(voice, rate=rate)
        body = fake.requests[0].json()
        assert fake.requests[0].headers["authorization"] == "Bearer sk-tts"
    assert body == {
        "model": "gpt-4o-mini-tts",
        "input": TEXT,
        "voice": "alloy",
        "response_format": "pcm",
        "speed": 1.1,
    }
    assert abs(len(audio) / (2 * rate) - expected_seconds(TEXT)) < 0.01
    assert rms(audio) > 500  # speech, not silence
    usage = voice.last_usage()
    assert (
        usage.characters == len(TEXT) and usage.request_id == "req_1" and usage.voice_id == "alloy"
    )


def test_repeated_first_message_is_served_from_cache():
    cache = SpeechCache()
    with FakeOpenAI() as fake:
        voice = openai_voice(fake, cache=cache)
        first = collect(voice)
        again = collect(openai_voice(fake, cache=cache))  # another call's voice, same process
        assert len(fake.requests) == 1
        assert again == first and cache.hits == 1
        assert voice.last_usage().characters == len(TEXT)
        collect(voice, rate=8000)  # another rate is another entry
        assert len(fake.requests) == 2
        uncached = openai_voice(fake, cache=cache, caching=False)
        collect(uncached)
        assert len(fake.requests) == 3


def test_cache_is_bounded_lru():
    cache = SpeechCache(max_entries=2)
    cache.put(("a",), b"1")
    cache.put(("b",), b"2")
    assert cache.get(("a",)) == b"1"
    cache.put(("c",), b"3")
    assert cache.get(("b",)) is None and cache.get(("a",)) == b"1" and len(cache) == 2
    small = SpeechCache(max_bytes=4)
    small.put(("x",), b"12345")
    assert len(small) == 0


def test_failed_stream_is_not_cached_and_not_retried_mid_stream():
    cache = SpeechCache()
    with FakeOpenAI(knobs=Knobs(disconnect_after=2)) as fake:
        voice = openai_voice(fake, cache=cache, policy=HttpPolicy(max_retries=2, backoff=0.01))
        got = []
        with pytest.raises(ProviderError) as info:
            for chunk in voice.synthesize(TEXT, sample_rate=16000, timeout=5):
                got.append(chunk)
        assert len(fake.requests) == 1
    assert got and info.value.retryable and len(cache) == 0


@pytest.mark.parametrize(("status", "retryable"), [(401, False), (429, True), (500, True)])
def test_openai_speech_status_errors(status, retryable):
    with FakeOpenAI(knobs=Knobs(fail_status=status)) as fake:
        with pytest.raises(ProviderError) as info:
            collect(openai_voice(fake))
    assert info.value.status_code == status and info.value.retryable is retryable
    assert info.value.ended_reason == "pipeline-error-openai-voice-failed"


def test_retry_before_first_byte_then_success():
    with FakeOpenAI(knobs=Knobs(fail_status=500, fail_times=1)) as fake:
        audio = collect(openai_voice(fake, policy=HttpPolicy(max_retries=1, backoff=0.01)))
        assert len(fake.requests) == 2
    assert rms(audio) > 500


def test_slow_voice_times_out_as_retryable():
    with FakeOpenAI(knobs=Knobs(latency=3)) as fake:
        with pytest.raises(ProviderError, match="timed out") as info:
            collect(openai_voice(fake), timeout=0.3)
    assert info.value.retryable


def test_json_instead_of_audio_is_malformed():
    def handler(req, reply):
        reply.send_json(200, {"error": "not audio"})

    with FakeHTTPServer(handler) as server:
        voice = OpenAISpeech(base_url=server.url + "/v1", policy=POLICY, cache=SpeechCache())
        with pytest.raises(ProviderError, match="malformed"):
            collect(voice)


@pytest.mark.parametrize(
    ("rate", "fmt"), [(8000, "pcm_8000"), (16000, "pcm_16000"), (11025, "pcm_16000")]
)
def test_elevenlabs_stream(rate, fmt):
    with FakeElevenLabs() as fake:
        voice = eleven_voice(fake)
        audio = collect(voice, rate=rate)
        req = fake.requests[0]
    assert req.path == "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream"
    assert req.query["output_format"] == [fmt] and req.headers["xi-api-key"] == "xi-test-key"
    assert req.json() == {
        "text": TEXT,
        "model_id": "eleven_flash_v2_5",
        "voice_settings": {"stability": 0.4, "similarity_boost": 0.8},
    }
    assert abs(len(audio) / (2 * rate) - expected_seconds(TEXT)) < 0.02
    assert rms(audio) > 500
    assert voice.last_usage().request_id == "el_1" and voice.last_usage().provider == "11labs"


def test_output_rate_choice():
    assert [output_rate(r) for r in (8000, 16000, 11025, 44100, 48000)] == [
        8000,
        16000,
        16000,
        24000,
        24000,
    ]


def test_elevenlabs_bad_key_and_failures():
    with FakeElevenLabs() as fake:
        with pytest.raises(ProviderError) as info:
            collect(eleven_voice(fake, api_key="wrong"))
        assert info.value.status_code == 401 and not info.value.retryable
        assert "Invalid API key" in str(info.value) and "wrong" not in str(info.value)
        assert info.value.ended_reason == "pipeline-error-11labs-voice-failed"
    with FakeElevenLabs(knobs=Knobs(fail_status=503, fail_times=1)) as fake:
        collect(eleven_voice(fake, policy=HttpPolicy(max_retries=1, backoff=0.01)))
        assert len(fake.requests) == 2
    with FakeElevenLabs(knobs=Knobs(chunk_delay=2)) as fake:
        with pytest.raises(ProviderError, match="timed out"):
            collect(eleven_voice(fake), timeout=0.3)


def test_elevenlabs_cache_and_empty_text():
    cache = SpeechCache()
    with FakeElevenLabs() as fake:
        voice = eleven_voice(fake, cache=cache)
        a = collect(voice, "Hello!", rate=8000)
        b = collect(voice, "Hello!", rate=8000)
        assert a == b and len(fake.requests) == 1
        assert list(voice.synthesize("   ", sample_rate=8000, timeout=1)) == []
