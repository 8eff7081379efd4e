"""Silero VAD (ONNX) as the detector's confidence: real speech with gaps, clean and at ~5 dB SNR."""

import time

import numpy as np
import pytest
from audio_fixtures import PHRASES, committed_wav, frames, speech_with_gaps

from esl_controller.media import silero
from esl_controller.media.codecs import Resampler, resample, silence
from esl_controller.media.vad import SpeechEnded, SpeechStarted, VoiceActivityDetector


def ends(vad, pcm, rate):
    events = []
    for f in frames(pcm, rate):
        events += vad.process(f)
    events += vad.flush()
    assert len([e for e in events if isinstance(e, SpeechStarted)]) == len(
        [e for e in events if isinstance(e, SpeechEnded)]
    )
    return [e for e in events if isinstance(e, SpeechEnded)]


def noisy(spoken, snr_db, seed=7):
    """White noise added at ``snr_db`` relative to the mean power of the speech segments."""
    x = np.frombuffer(spoken.audio, dtype="<i2").astype(np.float64)
    rate = spoken.sample_rate
    voiced = np.concatenate([x[int(a * rate) : int(b * rate)] for a, b, _ in spoken.segments])
    power = float(np.mean(voiced**2))
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), x.size)
    return np.clip(x + noise, -32768, 32767).astype("<i2").tobytes()


def reference(pcm16k):
    """Silero run the plain way: one window at a time, context concatenated, fresh arrays each run."""
    x = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32) / 32768.0
    h = np.zeros(silero.STATE_SHAPE, dtype=np.float32)
    c = np.zeros(silero.STATE_SHAPE, dtype=np.float32)
    context = np.zeros(silero.CONTEXT, dtype=np.float32)
    probs = []
    for i in range(x.size // silero.WINDOW):
        window = x[i * silero.WINDOW : (i + 1) * silero.WINDOW]
        batch = np.concatenate((context, window))[np.newaxis, :]
        out, h, c = silero.session().run(None, {"input": batch, "h": h, "c": c})
        probs.append(float(np.asarray(out).reshape(-1)[-1]))
        context = window[-silero.CONTEXT :]
    return probs


def fixture_speech(rate):
    """The committed speech WAV with half a second of silence either side."""
    pcm, got = committed_wav(f"yes_seven_thirty_{rate // 1000}k.wav")
    assert got == rate
    return silence(0.5, rate) + pcm + silence(0.5, rate)


def check_stream(conf, chunks, ref, rate):
    """Feed ``chunks``; after each one the stream reports the latest complete window's reference
    probability (0 before the first window) and has run exactly the whole windows fed so far."""
    upsample = Resampler(rate, 16000) if rate != 16000 else None
    fed = 0  # 16 kHz samples so far (the resampler holds a sample back at first)
    for chunk in chunks:
        got = conf(chunk)
        fed += len(upsample.process(chunk) if upsample else chunk) // 2
        assert conf.windows == fed // silero.WINDOW
        want = ref[conf.windows - 1] if conf.windows else 0.0
        assert got == pytest.approx(want, abs=1e-5)
    assert conf.windows == len(ref)


def matches(found, spoken):
    """Each segment overlapped by exactly one utterance, in order."""
    if len(found) != len(spoken.segments):
        return False
    return all(
        e.started_at < end + 0.1 and e.ended_at > start - 0.1
        for e, (start, end, _) in zip(found, spoken.segments, strict=True)
    )


@pytest.mark.parametrize("rate", [8000, 16000])
def test_same_utterances_as_webrtcvad_on_clean_speech(rate):
    spoken = speech_with_gaps(PHRASES, rate=rate, gap=1.0, lead=0.8)
    web = ends(VoiceActivityDetector(rate), spoken.audio, rate)
    conf = silero.SileroConfidence(rate)
    t0 = time.process_time()
    found = ends(VoiceActivityDetector(rate, confidence=conf), spoken.audio, rate)
    cpu = time.process_time() - t0
    print(f"\nsilero {rate} Hz: {cpu / spoken.seconds * 1000:.2f} ms CPU per second of audio")
    assert len(found) == len(web) == len(PHRASES)
    assert matches(found, spoken)
    for s, w in zip(found, web, strict=True):
        assert s.started_at == pytest.approx(w.started_at, abs=0.2)
    assert conf.windows == pytest.approx(spoken.seconds * 16000 / silero.WINDOW, abs=2)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_finds_the_utterances_at_5db_snr(rate):
    spoken = speech_with_gaps(PHRASES, rate=rate, gap=1.0, lead=0.8)
    pcm = noisy(spoken, 5.0)
    found = ends(VoiceActivityDetector(rate, confidence=silero.SileroConfidence(rate)), pcm, rate)
    web = ends(VoiceActivityDetector(rate), pcm, rate)
    print(
        f"\n5 dB SNR {rate} Hz: silero {len(found)} utterances, webrtcvad {len(web)}"
        f" (want {len(PHRASES)}; webrtcvad matches: {matches(web, spoken)})"
    )
    assert matches(found, spoken)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_probabilities_match_a_plain_reference_on_real_speech(rate):
    pcm = fixture_speech(rate)
    ref = reference(resample(pcm, rate, 16000) if rate != 16000 else pcm)
    assert max(ref) > 0.9 and min(ref) < 0.1  # the fixture has speech and silence
    check_stream(silero.SileroConfidence(rate), frames(pcm, rate), ref, rate)


@pytest.mark.parametrize("size", [34, 640, 1234, 4096])
def test_any_chunk_size_gives_the_same_windows(size):
    pcm = fixture_speech(16000)
    ref = reference(pcm)
    chunks = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    check_stream(silero.SileroConfidence(16000), chunks, ref, 16000)


def test_interleaved_streams_and_reset_do_not_leak_state():
    speech_pcm = fixture_speech(16000)
    other = speech_with_gaps(PHRASES[:1], rate=16000, gap=1.0, lead=0.3).audio
    other = other[: len(speech_pcm)]
    a, b = silero.SileroConfidence(16000), silero.SileroConfidence(16000)
    ref_a, ref_b = reference(speech_pcm), reference(other)
    got_a, got_b = [], []
    for fa, fb in zip(frames(speech_pcm, 16000), frames(other, 16000), strict=True):
        got_a.append((a(fa), a.windows))
        got_b.append((b(fb), b.windows))
    for got, ref in ((got_a, ref_a), (got_b, ref_b)):
        for prob, windows in got:
            assert prob == pytest.approx(ref[windows - 1] if windows else 0.0, abs=1e-5)
    a.reset()
    assert a.probability == 0.0
    start = a.windows
    for f in frames(speech_pcm, 16000):
        prob = a(f)
        done = a.windows - start
        assert prob == pytest.approx(ref_a[done - 1] if done else 0.0, abs=1e-5)


def test_noise_alone_is_not_speech():
    rate = 16000
    spoken = speech_with_gaps(PHRASES[:1], rate=rate, gap=1.0, lead=0.8)
    pcm = noisy(spoken, 5.0)
    start, end, _ = spoken.segments[0]
    only_noise = pcm[: int(start * rate) * 2] + pcm[int(end * rate) * 2 :]
    vad = VoiceActivityDetector(rate, confidence=silero.SileroConfidence(rate))
    assert ends(vad, only_noise * 3, rate) == []


def test_streams_keep_their_own_state_and_share_one_session():
    a, b = silero.SileroConfidence(16000), silero.SileroConfidence(16000)
    assert a._session is b._session
    spoken = speech_with_gaps(PHRASES[:1], rate=16000, gap=1.0, lead=0.2)
    fs = frames(spoken.audio, 16000)
    probs_a = [a(f) for f in fs]
    quiet = bytes(len(fs[0]))
    probs_b = [b(quiet) for _ in fs]
    assert max(probs_a) > 0.9
    assert max(probs_b) < 0.1


def test_selection_from_start_speaking_plan():
    assert silero.vad_choice(None) == "webrtc"
    assert silero.vad_choice({"waitSeconds": 0.4}) == "webrtc"
    assert silero.vad_choice({"vad": "Silero"}) == "silero"
    assert silero.vad_choice({"vad": "silero"}, {"vad": "webrtc"}) == "webrtc"
    assert silero.confidence_for("webrtc", 16000) is None
    assert isinstance(silero.confidence_for("silero", 8000), silero.SileroConfidence)
    with pytest.raises(ValueError, match="startSpeakingPlan.vad"):
        silero.vad_choice({"vad": "cobra"})
    with pytest.raises(ValueError):
        silero.SileroConfidence(44100)


def test_missing_model_file_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(silero.SileroModelMissing, match="not found"):
        silero.SileroConfidence(16000, path=tmp_path / "nope.onnx")
    monkeypatch.setattr(silero, "MODEL_FILE", "missing_vad.onnx")
    with pytest.raises(silero.SileroModelMissing, match="missing_vad.onnx"):
        silero.model_path()
    monkeypatch.setattr(silero, "MODEL_PACKAGE", "no_such_package_here")
    with pytest.raises(silero.SileroModelMissing, match="no_such_package_here"):
        silero.model_path()


def test_the_call_pipeline_picks_the_vad_from_the_assistant():
    from esl_controller.calls.pipeline_factory import _vad_confidence
    from esl_controller.pipeline.assistant import AssistantConfig

    def pick(body, overrides=None):
        return _vad_confidence("c1", AssistantConfig.from_dict(body, overrides), 8000)

    assert pick({}) is None
    assert isinstance(pick({"startSpeakingPlan": {"vad": "silero"}}), silero.SileroConfidence)
    assert (
        pick({"startSpeakingPlan": {"vad": "silero"}}, {"startSpeakingPlan": {"vad": "webrtc"}})
        is None
    )
    assert pick({"startSpeakingPlan": {"vad": "cobra"}}) is None  # logged, webrtcvad kept
