"""The embedded espeak-ng TTS produces speech-like audio of plausible duration."""

import pytest

from esl_controller.media import codecs
from esl_controller.pipeline.providers.tts import espeak_ng

TEXT = "Good afternoon, thank you for calling. How can I help you today?"  # 12 words


def test_native_rate_speech():
    r = espeak_ng.synthesize(TEXT)
    assert r.sample_rate == espeak_ng.NATIVE_RATE == 22050
    assert r.characters == len(TEXT)
    # 12 words at 175 wpm is about 4 s; allow for pauses at punctuation.
    assert 2.5 < r.seconds < 7.0
    assert codecs.rms(r.audio) > 1000  # not silent


@pytest.mark.parametrize("rate", [8000, 16000])
def test_resampled_to_telephony_rates(rate):
    native = espeak_ng.synthesize(TEXT)
    r = espeak_ng.synthesize(TEXT, sample_rate=rate)
    assert r.sample_rate == rate
    # espeak-ng varies a few milliseconds between runs (it keeps some state).
    assert r.seconds == pytest.approx(native.seconds, abs=0.05)
    assert codecs.rms(r.audio) == pytest.approx(codecs.rms(native.audio), rel=0.2)


def test_speaking_rate_changes_duration():
    slow = espeak_ng.synthesize(TEXT, rate_wpm=120)
    fast = espeak_ng.synthesize(TEXT, rate_wpm=300)
    assert slow.seconds > 1.8 * fast.seconds


def test_longer_text_is_longer_and_repeatable():
    short = espeak_ng.synthesize("Yes.")
    long = espeak_ng.synthesize(TEXT)
    assert long.seconds > 3 * short.seconds
    assert espeak_ng.synthesize("Yes.").seconds == pytest.approx(short.seconds, abs=0.05)


def test_empty_text_and_bad_voice():
    assert espeak_ng.synthesize("   ").audio == b""
    with pytest.raises(espeak_ng.EspeakError):
        espeak_ng.synthesize("hello", voice="no-such-voice-xx")
    # The engine still works after the error.
    assert espeak_ng.synthesize("hello").seconds > 0.2
    with pytest.raises(ValueError):
        espeak_ng.synthesize("hello", rate_wpm=10)


def test_provider_object():
    tts = espeak_ng.EspeakNgTTS(voice_id="en-us", speed=1.2)
    assert tts.provider == "espeak-ng" and tts.rate_wpm == 210
    r = tts.synthesize("Your table is booked.", 16000)
    assert r.sample_rate == 16000 and r.seconds > 0.8
