"""Provider registry: names -> factories, embedded defaults, clear errors for unknown names."""

import pytest

from esl_controller.pipeline.providers import registry
from esl_controller.pipeline.providers.llm.scripted import ScriptedModel
from esl_controller.pipeline.providers.registry import UnknownProvider


def test_scripted_model_by_vapi_name_and_default():
    model = registry.build_model(
        {"provider": "custom-llm", "model": "scripted", "url": "scripted://"}
    )
    assert isinstance(model, ScriptedModel)
    assert isinstance(registry.build_model(None), ScriptedModel)


def test_espeak_voice_names_and_synthesis():
    for voice in (
        None,
        {"provider": "espeak-ng", "voiceId": "en-us"},
        {"provider": "vapi", "voiceId": "x"},
    ):
        tts = registry.build_synthesizer(voice)
        assert tts.name == "espeak-ng"
    tts = registry.build_synthesizer(
        {"provider": "custom-voice", "model": "espeak-ng", "voiceId": "en-us"}
    )
    chunks = list(tts.synthesize("Hello there.", sample_rate=8000, timeout=5))
    audio = b"".join(c.pcm16 for c in chunks)
    assert len(audio) > 8000 and all(c.sample_rate == 8000 for c in chunks)
    assert tts.last_usage().characters == len("Hello there.")


def test_unknown_provider_is_a_clear_error():
    with pytest.raises(
        UnknownProvider, match=r"no llm provider 'nope \(model x\)'.*known:.*custom-llm/scripted"
    ):
        registry.build_model({"provider": "nope", "model": "x"})
    with pytest.raises(UnknownProvider, match="no tts provider 'made-up-voice'"):
        registry.build_synthesizer({"provider": "made-up-voice", "voiceId": "x"})


def test_register_model_specific_then_provider_wide():
    made = []

    @registry.register("llm", "test-vendor")
    def _any(config):
        made.append(("any", config.get("model")))
        return "any"

    @registry.register("llm", "test-vendor", model="special")
    def _special(config):
        made.append(("special", config.get("model")))
        return "special"

    try:
        assert registry.build_model({"provider": "test-vendor", "model": "special"}) == "special"
        assert registry.build_model({"provider": "test-vendor", "model": "other"}) == "any"
        assert "test-vendor/special" in registry.registered("llm")
    finally:
        registry.unregister("llm", "test-vendor")
        registry.unregister("llm", "test-vendor", model="special")
    with pytest.raises(UnknownProvider):
        registry.build_model({"provider": "test-vendor", "model": "special"})


def test_missing_transcriber_is_tolerated_unless_asked_for():
    registry.register("stt", "test-stt")(lambda cfg: "stt")
    try:
        p = registry.build_providers(None, None, {"provider": "test-stt"})
        assert p.stt == "stt"
    finally:
        registry.unregister("stt", "test-stt")
    with pytest.raises(UnknownProvider):
        registry.build_providers(None, None, {"provider": "deepgram-nope"})
