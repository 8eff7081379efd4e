"""The speech fixtures do not depend on test order: libespeak-ng carries wave-generator state from one
synthesis to the next inside a process, so a fixture rendered in-process after other speech differs."""

from audio_fixtures import speech, synthesize_fresh

from esl_controller.pipeline.providers.tts import espeak_ng

TEXT = "I need to talk to billing please."


def test_in_process_espeak_depends_on_what_was_said_before():
    # the premise: without a fresh process, the same text comes out different after other speech
    first = espeak_ng.synthesize(TEXT, sample_rate=16000).audio
    espeak_ng.synthesize("Hello, how can I help?", sample_rate=16000)
    second = espeak_ng.synthesize(TEXT, sample_rate=16000).audio
    assert first != second


def test_speech_is_the_same_whatever_the_process_said_before():
    render = speech.__wrapped__  # past the per-process cache
    before = render(TEXT, 16000)
    for other in ("Hello, how can I help?", "This is a live say.", TEXT):
        espeak_ng.synthesize(other, sample_rate=16000)
        assert render(TEXT, 16000) == before
    assert before == render(TEXT, 16000)
    assert len(before) % 640 == 0 and len(before) > 16000  # whole 20 ms frames of real speech


def test_fresh_synthesis_matches_the_fixture_rates():
    pcm8 = synthesize_fresh(TEXT, 8000)
    pcm16 = synthesize_fresh(TEXT, 16000)
    assert abs(len(pcm16) - 2 * len(pcm8)) <= 8  # the same utterance at both rates
    assert synthesize_fresh(TEXT, 8000) == pcm8
