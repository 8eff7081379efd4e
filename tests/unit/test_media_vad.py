"""VAD on real (synthesized) speech with silence gaps, and the state machine with a fake confidence."""

import pytest
from audio_fixtures import PHRASES, frames, speech_with_gaps

from esl_controller.media.codecs import silence
from esl_controller.media.vad import (
    SpeechEnded,
    SpeechStarted,
    VadParams,
    VadState,
    VoiceActivityDetector,
)


def run(vad, pcm, rate):
    events = []
    for f in frames(pcm, rate):
        events += vad.process(f)
    return events + vad.flush()


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("aggressiveness", [1, 2, 3])
def test_counts_utterances_in_real_speech(rate, aggressiveness):
    spoken = speech_with_gaps(PHRASES, rate=rate, gap=1.0, lead=0.8)
    vad = VoiceActivityDetector(rate, aggressiveness=aggressiveness)
    events = run(vad, spoken.audio, rate)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(starts) == len(ends) == len(PHRASES)
    for (seg_start, seg_end, _), start, end in zip(spoken.segments, starts, ends, strict=True):
        assert start.at == pytest.approx(seg_start, abs=0.1)
        assert end.ended_at <= seg_end + 0.2
        assert end.ended_at > seg_end - 0.5
        assert end.detected_at == pytest.approx(end.ended_at + 0.4, abs=0.021)
        assert not end.forced
        # The utterance carries its audio, pre-roll included.
        assert end.audio_seconds == pytest.approx(end.detected_at - end.started_at + 0.3, abs=0.05)


def test_short_gap_under_wait_seconds_keeps_one_utterance():
    rate = 16000
    spoken = speech_with_gaps(PHRASES[:2], rate=rate, gap=0.25, lead=0.6)
    events = run(VoiceActivityDetector(rate), spoken.audio, rate)
    assert len([e for e in events if isinstance(e, SpeechEnded)]) == 1
    # With a shorter waitSeconds the same audio splits in two.
    params = VadParams.from_plan({"waitSeconds": 0.1})
    assert params.stop_seconds == 0.1
    events = run(VoiceActivityDetector(rate, params), spoken.audio, rate)
    assert len([e for e in events if isinstance(e, SpeechEnded)]) == 2


def test_silence_produces_nothing():
    rate = 8000
    assert run(VoiceActivityDetector(rate), silence(2.0, rate), rate) == []


class Scripted:
    """Fake confidence: a string of 1s and 0s, one per frame."""

    def __init__(self, pattern):
        self.values = [float(c) for c in pattern]

    def __call__(self, frame):
        return self.values.pop(0)


def drive(pattern, **params):
    vad = VoiceActivityDetector(8000, VadParams(**params), confidence=Scripted(pattern))
    out = []
    for _ in pattern:
        out.append((vad.process(bytes(320)), vad.state))
    return vad, out


def test_state_machine_transitions():
    # 20 ms frames: start after 0.1 s (5 frames) of speech, stop after 0.1 s of silence.
    vad, out = drive("1111111" + "00000" + "0", start_seconds=0.1, stop_seconds=0.1)
    states = [s for _, s in out]
    assert states[0] is VadState.STARTING
    assert states[4] is VadState.SPEAKING
    assert isinstance(out[4][0][0], SpeechStarted) and out[4][0][0].at == 0.0
    assert states[7] is VadState.STOPPING
    assert isinstance(out[11][0][0], SpeechEnded)
    assert states[11] is VadState.QUIET
    ended = out[11][0][0]
    assert ended.started_at == 0.0
    assert ended.ended_at == pytest.approx(0.14)
    assert ended.detected_at == pytest.approx(0.24)


def test_blip_shorter_than_minimum_speech_is_ignored():
    vad, out = drive("110000000000", start_seconds=0.2)
    assert all(not events for events, _ in out)
    assert out[-1][1] is VadState.QUIET
    assert vad.voiced_seconds == 0.0


def test_voiced_seconds_counts_while_starting():
    vad, out = drive("111", start_seconds=0.2)
    assert vad.state is VadState.STARTING
    assert vad.voiced_seconds == pytest.approx(0.06)


def test_max_utterance_forces_an_end():
    vad, out = drive("1" * 60, start_seconds=0.02, max_utterance_seconds=0.5)
    ends = [e for events, _ in out for e in events if isinstance(e, SpeechEnded)]
    assert ends and ends[0].forced


def test_wrong_frame_size_is_rejected():
    vad = VoiceActivityDetector(8000, confidence=lambda f: 0.0)
    with pytest.raises(ValueError):
        vad.process(bytes(100))
