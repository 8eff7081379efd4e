"""Recordings: lengths, channels, speech in the right channel, valid WAV while still open."""

import shutil
import wave

import pytest
from audio_fixtures import frames, speech

from esl_controller.media import codecs
from esl_controller.media.recorder import CallRecorder, WavWriter

RATE = 8000


def read(path):
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.getframerate(), w.readframes(w.getnframes())


def energy(pcm, start, end, rate=RATE):
    return codecs.rms(pcm[int(start * rate) * 2 : int(end * rate) * 2])


def test_time_aligned_mono_and_stereo(tmp_path):
    caller = speech("I would like to book a table.", RATE)
    assistant = speech("Certainly, for what time?", RATE)
    c_sec = len(caller) / (2 * RATE)
    a_sec = len(assistant) / (2 * RATE)
    rec = CallRecorder(RATE, str(tmp_path / "m.wav"), str(tmp_path / "s.wav"))
    # The caller's stream: continuous 20 ms frames, speech then silence.
    stream = caller + codecs.silence(a_sec + 1.5, RATE)
    a_at = c_sec + 0.5  # the assistant answers 0.5 s after the caller stops
    for i, f in enumerate(frames(stream, RATE)):
        t = i * 0.02
        rec.add_caller(f, t)
        if abs(t - (c_sec - 0.5)) < 1e-9 or (i == int(round((c_sec - 0.5) / 0.02))):
            # TTS audio arrives in one burst, ahead of its play time.
            rec.add_assistant(assistant, a_at)
    rec.close()
    total = len(stream) // 2
    ch, rate, stereo = read(tmp_path / "s.wav")
    assert (ch, rate) == (2, RATE)
    assert len(stereo) // 4 == total
    left, right = codecs.stereo_split(stereo)
    # Caller speech on the left only while the caller speaks; assistant on the right at a_at.
    assert energy(left, 0, c_sec) > 500
    assert energy(right, 0, c_sec) == 0
    assert energy(right, a_at, a_at + a_sec) > 500
    assert energy(left, a_at, a_at + a_sec) == 0
    assert right[: int(a_at * RATE) * 2] == bytes(int(a_at * RATE) * 2)
    assert right[int(a_at * RATE) * 2 : int(a_at * RATE) * 2 + len(assistant)] == assistant
    ch, rate, mono = read(tmp_path / "m.wav")
    assert ch == 1 and len(mono) // 2 == total
    assert energy(mono, 0, c_sec) > 500 and energy(mono, a_at, a_at + a_sec) > 500
    assert mono == codecs.mix(left, right)


def test_gaps_in_caller_audio_are_filled_with_silence(tmp_path):
    pcm = speech("Hello there.", RATE)
    rec = CallRecorder(RATE, stereo_path=str(tmp_path / "s.wav"))
    rec.add_caller(pcm, 0.0)
    rec.add_caller(pcm, 5.0)  # a 5 s hole before the second copy
    rec.close()
    _, _, stereo = read(tmp_path / "s.wav")
    left, _ = codecs.stereo_split(stereo)
    n = len(pcm)
    assert len(left) == int(5.0 * RATE) * 2 + n
    assert left[:n] == pcm and left[-n:] == pcm
    assert left[n : int(5.0 * RATE) * 2] == bytes(int(5.0 * RATE) * 2 - n)


def test_file_is_playable_before_close(tmp_path):
    """A crash leaves a valid WAV with everything committed so far."""
    rec = CallRecorder(RATE, str(tmp_path / "m.wav"), hold_back_seconds=0.2, flush_seconds=0.2)
    pcm = speech("Still recording when the process dies.", RATE)
    for i, f in enumerate(frames(pcm, RATE)):
        rec.add_caller(f, i * 0.02)
    assert rec.sync()  # commits are written by the writer thread; wait until it has caught up
    shutil.copy(tmp_path / "m.wav", tmp_path / "crash.wav")  # what is on disk right now
    ch, rate, mono = read(tmp_path / "crash.wav")
    assert (ch, rate) == (1, RATE)
    assert len(mono) > 0 and len(mono) % 2 == 0
    assert len(mono) >= len(pcm) - int(0.2 * RATE) * 2 - int(0.2 * RATE) * 2
    assert mono == pcm[: len(mono)]
    rec.close()


def test_audio_later_than_the_hold_back_window_is_dropped_and_counted(tmp_path):
    rec = CallRecorder(RATE, str(tmp_path / "m.wav"), hold_back_seconds=0.5, flush_seconds=0.1)
    rec.add_caller(codecs.silence(3.0, RATE), 0.0)
    assert rec.committed_seconds == pytest.approx(2.5)
    rec.add_assistant(speech("Late.", RATE), 1.0)
    assert rec.late_samples_dropped > 0
    rec.close()


def test_wav_writer_counts_and_rejects_after_close(tmp_path):
    w = WavWriter(str(tmp_path / "w.wav"), 16000, 2)
    w.write(bytes(6400))
    assert w.frames_written == 1600 and w.seconds == pytest.approx(0.1)
    w.close()
    with pytest.raises(ValueError):
        w.write(b"\x00\x00")
    with pytest.raises(ValueError):
        CallRecorder(RATE)
