"""Assistant blocks + credentials -> hosted providers through the registry, with fallbacks, against fakes."""

from __future__ import annotations

from esl_controller.pipeline.providers import registry
from esl_controller.pipeline.providers.base import ChatRequest, TextDelta
from esl_controller.pipeline.providers.fallback import FallbackChatModel, FallbackSynthesizer
from esl_controller.pipeline.providers.hosted import (
    HOSTED_FACTORIES,
    attach_credential,
    build_with_fallbacks,
)
from esl_controller.pipeline.providers.llm.custom_llm import CustomLLM
from esl_controller.pipeline.providers.llm.openai_compat import OpenAICompatModel
from esl_controller.pipeline.providers.stt.deepgram import DeepgramTranscriber
from esl_controller.pipeline.providers.tts.elevenlabs import ElevenLabsSpeech
from esl_controller.pipeline.providers.tts.openai_compat import SPEECH_CACHE
from tests.fakes._http import Knobs
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI

CREDENTIALS = [
    {"id": "c1", "provider": "openai", "apiKey": "sk-openai"},
    {"id": "c2", "provider": "groq", "apiKey": "gsk-groq"},
    {"id": "c3", "provider": "11labs", "apiKey": "xi-test-key"},
    {"id": "c4", "provider": "deepgram", "apiKey": "dg-key", "apiUrl": "ws://127.0.0.1:9"},
    {"id": "c5", "provider": "openai", "apiKey": "sk-second"},
]
REQ = ChatRequest(messages=[{"role": "user", "content": "When do you open?"}])


def test_every_hosted_name_is_registered():
    for kind, provider in HOSTED_FACTORIES:
        assert provider in registry.registered(kind)
    # the embedded scripted model keeps its (custom-llm, scripted) slot
    assert (
        type(registry.build("llm", {"provider": "custom-llm", "model": "scripted"})).__name__
        == "ScriptedModel"
    )


def test_attach_credential_by_provider_and_id():
    block = attach_credential({"provider": "openai", "model": "gpt-4o-mini"}, CREDENTIALS)
    assert block["credential"]["apiKey"] == "sk-openai"
    block = attach_credential(
        {"provider": "openai", "model": "m", "credentialId": "c5"}, CREDENTIALS
    )
    assert block["credential"]["apiKey"] == "sk-second"
    voice = attach_credential({"provider": "elevenlabs", "voiceId": "v"}, CREDENTIALS)
    assert voice["credential"]["id"] == "c3"
    model = attach_credential(
        {
            "provider": "openai",
            "model": "a",
            "fallbackModels": [{"provider": "groq", "model": "b"}],
        },
        CREDENTIALS,
    )
    assert model["fallbackModels"][0]["credential"]["apiKey"] == "gsk-groq"
    assert (
        attach_credential({"provider": "ollama", "model": "x"}, CREDENTIALS).get("credential")
        is None
    )
    assert attach_credential(None, CREDENTIALS) is None


def test_blocks_become_instances():
    m = registry.build(
        "llm",
        attach_credential({"provider": "groq", "model": "llama", "maxTokens": 99}, CREDENTIALS),
    )
    assert isinstance(m, OpenAICompatModel) and m.base_url.startswith("https://api.groq.com")
    assert m.max_tokens == 99 and (m.name, m.model) == ("groq", "llama")
    c = registry.build(
        "llm", {"provider": "custom-llm", "model": "bot", "url": "http://127.0.0.1:1/x"}
    )
    assert isinstance(c, CustomLLM) and c.url == "http://127.0.0.1:1/x/chat/completions"
    d = registry.build(
        "stt", attach_credential({"provider": "deepgram", "model": "nova-3"}, CREDENTIALS)
    )
    assert isinstance(d, DeepgramTranscriber) and d.base_url == "ws://127.0.0.1:9"
    v = registry.build(
        "tts", attach_credential({"provider": "11labs", "voiceId": "abc"}, CREDENTIALS)
    )
    assert isinstance(v, ElevenLabsSpeech) and v.voice_id == "abc"


def test_model_fallback_to_a_second_provider_over_the_wire():
    with (
        FakeOpenAI(knobs=Knobs(fail_status=500)) as down,
        FakeOpenAI(reply="We open at nine.") as up,
    ):
        block = {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "url": down.base_url,
            "maxRetries": 0,
            "fallbackModels": [{"provider": "groq", "model": "llama", "url": up.base_url}],
        }
        model = build_with_fallbacks("llm", attach_credential(block, CREDENTIALS))
        assert isinstance(model, FallbackChatModel)
        text = "".join(c.text for c in model.stream(REQ, timeout=5) if isinstance(c, TextDelta))
        assert up.requests[0].headers["authorization"] == "Bearer gsk-groq"
    assert text == "We open at nine." and model.served_by == "groq/llama"
    assert model.errors[0].status_code == 500


def test_voice_fallback_when_the_first_voice_rejects_the_key():
    SPEECH_CACHE.clear()
    with FakeElevenLabs(api_key="other") as eleven, FakeOpenAI() as openai:
        block = {
            "provider": "11labs",
            "voiceId": "abc",
            "url": eleven.base_url,
            "maxRetries": 0,
            "fallbackPlan": {
                "voices": [{"provider": "openai", "voiceId": "alloy", "url": openai.base_url}]
            },
        }
        voice = build_with_fallbacks("tts", attach_credential(block, CREDENTIALS))
        assert isinstance(voice, FallbackSynthesizer)
        audio = b"".join(
            c.pcm16 for c in voice.synthesize("Hello there.", sample_rate=8000, timeout=5)
        )
    assert len(audio) > 8000 and voice.served_by == "openai/alloy"
    assert voice.last_usage().provider == "openai"


def test_no_fallbacks_returns_the_provider_itself():
    block = {"provider": "openai", "model": "gpt-4o-mini"}
    assert isinstance(build_with_fallbacks("llm", block), OpenAICompatModel)
