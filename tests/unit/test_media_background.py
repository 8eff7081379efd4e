"""backgroundSound beds and the mixer (pure)."""

from __future__ import annotations

import audioop
import io
import wave

import pytest
from audio_fixtures import speech

from esl_controller.media import background as bg


def test_office_bed_is_deterministic_quiet_and_not_silent():
    a, b = bg.office_bed(16000), bg.office_bed(16000, 4.0)
    assert a == b and len(a) == 16000 * 2 * 4
    level = audioop.rms(a, 2)
    assert 200 < level < 500  # about -40 dBFS
    assert bg.office_bed(8000) != a[: len(bg.office_bed(8000))]


def test_mixer_adds_the_bed_under_speech_and_loops_continuously():
    voice = speech("Hello, how can I help you today?", 16000)
    bed = bg.office_bed(16000, 0.5)
    mixer = bg.BackgroundMixer(bed)
    out = b"".join(mixer.mix(voice[i : i + 3200]) for i in range(0, len(voice), 3200))
    assert len(out) == len(voice)
    residue = audioop.add(out, audioop.mul(voice, 2, -1), 2)
    # what was added is exactly the looped bed
    loops = (bed * (len(voice) // len(bed) + 1))[: len(voice)]
    assert residue == loops
    assert mixer.position == len(voice) % len(bed)
    assert audioop.rms(voice, 2) > 5 * audioop.rms(bed, 2)  # the bed stays under the voice


def test_setting_defaults_and_file_urls():
    assert bg.setting(None, "web") == "off"
    assert bg.setting(None, "outbound") == "office"
    assert bg.setting("off", "inbound") == "off"
    fid = "3f2b8f9e-1111-4222-8333-444455556666"
    assert bg.file_id_from_url(f"https://x.test/file/{fid}/content", "https://x.test") == fid
    assert bg.file_id_from_url(f"https://other.test/file/{fid}/content", "https://x.test") is None
    assert bg.file_id_from_url("https://x.test/music.mp3", "https://x.test") is None


def _wav(pcm, rate, channels):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def test_wav_bed_resamples_downmixes_and_scales():
    mono8k = speech("Background music", 8000)
    stereo = audioop.tostereo(mono8k, 2, 1, 1)
    bed = bg.wav_bed(_wav(stereo, 8000, 2), 16000)
    assert abs(len(bed) - 2 * len(mono8k)) < 64
    ratio = audioop.rms(bed, 2) / audioop.rms(mono8k, 2)
    assert 0.08 < ratio < 0.2  # -18 dB
    with pytest.raises(ValueError):
        bg.wav_bed(b"not a wav", 16000)
