"""Recordings made in the recording process: the same files as a recorder on the hub, a process that
dies (restarted, files stay time-aligned), a stalled process (bounded, counted silence), errors
reported back, and its wire format."""

import _socket
import os
import signal
import time
import wave

import gevent
import pytest

from esl_controller.media import recording_process as recording_process_module
from esl_controller.media import recording_wire as wire
from esl_controller.media.recorder import CallRecorder
from esl_controller.media.recording_process import RecordingProcess
from esl_controller.media.recording_writer import RecordingWriter, WavWriter
from tests.audio_fixtures import frames, speech

RATE = 16000
FRAME_SECONDS = 0.02


@pytest.fixture(scope="module")
def caller_frames() -> list[bytes]:
    return frames(speech("I would like to book a table for two tonight.", RATE), RATE)


@pytest.fixture(scope="module")
def reply() -> bytes:
    return speech("Of course, for what time?", RATE)


@pytest.fixture
def recording_process():
    w = RecordingProcess()
    yield w
    w.stop(10.0)


def read_wav(path) -> tuple[int, int, bytes]:
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.getframerate(), w.readframes(w.getnframes())


def record(rec, caller_frames: list[bytes], reply: bytes) -> bytes:
    """The caller's frames in order and, from frame 40 on, the reply frame by frame 0.3 s ahead of
    them (as a call plays it); what of the reply was added."""
    played = frames(reply, RATE)[: len(caller_frames) - 40]
    for i, frame in enumerate(caller_frames):
        at = i * FRAME_SECONDS
        rec.add_caller(frame, at)
        if 40 <= i < 40 + len(played):
            rec.add_assistant(played[i - 40], at + 0.3)
        if i % 10 == 0:
            gevent.sleep(0)  # the hub sends what was handed over
    return b"".join(played)


def test_same_files_as_a_recorder_on_the_hub(tmp_path, recording_process, caller_frames, reply):
    thread_writer = RecordingWriter(batch_seconds=0.02)
    paths = {}
    try:
        for name in ("thread", "process"):
            mono, stereo = tmp_path / f"{name}.wav", tmp_path / f"{name}-s.wav"
            if name == "thread":
                rec = CallRecorder(RATE, str(mono), str(stereo), phase=0.5, writer=thread_writer)
            else:
                rec = recording_process.recorder(RATE, str(mono), str(stereo), phase=0.5)
            played = record(rec, caller_frames, reply)
            rec.close(timeout=10)
            assert rec.writer_samples_dropped == 0 and rec.late_samples_dropped == 0
            paths[name] = (mono, stereo)
    finally:
        assert thread_writer.stop(5.0)
    assert recording_process.pid is not None and recording_process.pid != os.getpid()
    for a, b in zip(paths["thread"], paths["process"], strict=True):
        assert a.read_bytes() == b.read_bytes()
    channels, rate, stereo = read_wav(paths["process"][1])
    assert (channels, rate) == (2, RATE)
    # the caller's speech is in the left channel, word for word; the reply is on the right
    left = b"".join(stereo[i : i + 2] for i in range(0, len(stereo), 4))
    right = b"".join(stereo[i + 2 : i + 4] for i in range(0, len(stereo), 4))
    assert left[: len(b"".join(caller_frames))] == b"".join(caller_frames)
    reply_at = int((40 * FRAME_SECONDS + 0.3) * RATE) * 2
    assert right[reply_at : reply_at + len(played)] == played
    assert not any(right[:reply_at])


def test_a_short_assistant_utterance_is_not_held_back_until_late(
    tmp_path, recording_process, caller_frames
):
    """Assistant frames are batched on the hub; a batch shorter than a full one goes along with the
    caller's next, so three frames said early are in the file, not dropped as late at the close."""
    mono, stereo = tmp_path / "m.wav", tmp_path / "s.wav"
    rec = recording_process.recorder(RATE, str(mono), str(stereo), phase=0.5)
    beep = b"\x00\x20" * int(RATE * FRAME_SECONDS)
    for i, frame in enumerate(caller_frames[:200]):  # 4 s of caller audio
        at = i * FRAME_SECONDS
        rec.add_caller(frame, at)
        if 5 <= i < 8:
            rec.add_assistant(beep, at)
        if i % 10 == 0:
            gevent.sleep(0)
    rec.close(timeout=10)
    assert rec.late_samples_dropped == 0 and rec.error is None
    channels, _, data = read_wav(stereo)
    right = data[3::4]  # the high byte of each right-channel sample
    start = 5 * int(RATE * FRAME_SECONDS)
    assert channels == 2
    assert set(right[start : start + 3 * int(RATE * FRAME_SECONDS)]) == {0x20}
    assert set(right[: start - 1]) == {0} and set(right[start + 3 * 320 :]) == {0}


class _CountingSocket(_socket.socket):
    """The hub's end of the recording process's socket, counting its ``sendmsg`` calls."""

    sends = 0

    def sendmsg(self, buffers, *args):
        _CountingSocket.sends += 1
        return super().sendmsg(buffers, *args)


def _counting_pair(family, kind):
    parent, child = _socket.socketpair(family, kind)
    return _CountingSocket(family, kind, fileno=parent.detach()), child


def test_batches_handed_over_together_go_in_one_send(tmp_path, caller_frames, monkeypatch):
    """The batches of many calls handed over before the hub's next turn (one reader tick) leave in
    one ``sendmsg``, not one each, and every frame is in its file."""
    monkeypatch.setattr(recording_process_module, "_socketpair", _counting_pair)
    writer = RecordingProcess(batch_frames=2)
    try:
        recs = [writer.recorder(RATE, str(tmp_path / f"{i}.wav"), phase=0.5) for i in range(5)]
        gevent.sleep(0.1)  # the opens are sent
        before = _CountingSocket.sends
        for k in range(4):  # two full batches per call, in one go
            for rec in recs:
                rec.add_caller(caller_frames[k], k * FRAME_SECONDS)
        assert _CountingSocket.sends == before  # nothing sent before the hub's turn
        gevent.sleep(0.1)
        assert _CountingSocket.sends == before + 1
        for rec in recs:
            rec.close(timeout=10)
            assert rec.error is None and rec.writer_samples_dropped == 0
    finally:
        writer.stop(10.0)
    for i in range(5):
        assert read_wav(tmp_path / f"{i}.wav")[2] == b"".join(caller_frames[:4])


def test_files_are_valid_while_recording_and_sync_waits(tmp_path, recording_process, caller_frames):
    mono = tmp_path / "m.wav"
    rec = recording_process.recorder(
        RATE, str(mono), hold_back_seconds=0.1, flush_seconds=0.2, phase=1.0
    )
    for i, frame in enumerate(caller_frames[:100]):
        rec.add_caller(frame, i * FRAME_SECONDS)
    assert rec.sync(timeout=10)
    channels, _rate, data = read_wav(mono)  # valid before close: the header counts what is there
    assert channels == 1
    assert len(data) == rec.committed_seconds * RATE * 2 > 0
    assert data == b"".join(caller_frames)[: len(data)]
    rec.close(timeout=10)
    assert len(read_wav(mono)[2]) == 100 * len(caller_frames[0])


def test_ctrl_c_on_the_console_does_not_end_the_recording_process(
    tmp_path, recording_process, caller_frames
):
    """Ctrl-C reaches the whole process group; the hub ends the recordings in order, so the recording
    process ignores it and keeps every frame."""
    mono = tmp_path / "m.wav"
    rec = recording_process.recorder(RATE, str(mono), phase=1.0)
    for i, frame in enumerate(caller_frames[:50]):
        rec.add_caller(frame, i * FRAME_SECONDS)
    assert rec.sync(timeout=10)
    pid = recording_process.pid
    os.kill(pid, signal.SIGINT)
    for i, frame in enumerate(caller_frames[50:100], 50):
        rec.add_caller(frame, i * FRAME_SECONDS)
    rec.close(timeout=10)
    assert recording_process.pid == pid  # still the same process: not killed and restarted
    assert rec.error is None and rec.writer_samples_dropped == 0
    assert read_wav(mono)[2] == b"".join(caller_frames[:100])


def test_a_process_that_dies_is_replaced_and_files_stay_aligned(
    tmp_path, recording_process, caller_frames
):
    mono, stereo = tmp_path / "m.wav", tmp_path / "s.wav"
    rec = recording_process.recorder(
        RATE, str(mono), str(stereo), hold_back_seconds=0.1, flush_seconds=0.1, phase=1.0
    )
    third = len(caller_frames) // 3
    for i, frame in enumerate(caller_frames[:third]):
        rec.add_caller(frame, i * FRAME_SECONDS)
    assert rec.sync(timeout=10)
    written = len(read_wav(mono)[2])
    assert written > 0
    first = recording_process.pid
    os.kill(first, signal.SIGSTOP)  # what is sent now sits unread in the dying process's socket
    for i, frame in enumerate(caller_frames[third : 2 * third], start=third):
        rec.add_caller(frame, i * FRAME_SECONDS)
    rec.flush()
    gevent.sleep(0.05)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while recording_process.pid == first and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert recording_process.pid != first and recording_process.starts == 2
    for i, frame in enumerate(caller_frames[2 * third :], start=2 * third):
        rec.add_caller(frame, i * FRAME_SECONDS)
    rec.close(timeout=10)
    assert rec.error is None
    everything = b"".join(caller_frames)
    mono_data = read_wav(mono)[2]
    assert len(mono_data) == len(everything)  # time-aligned: the lost audio became silence
    assert len(read_wav(stereo)[2]) == 2 * len(everything)
    assert mono_data[:written] == everything[:written]  # what was written before is intact
    tail = 2 * third * 640  # the audio sent after the restart is in its place
    assert mono_data[tail:] == everything[tail:]
    lost = mono_data[written:tail]
    assert lost == bytes(len(lost)) and everything[written:tail] != lost
    assert rec.writer_samples_dropped * 2 == len(lost)  # and counted


def test_a_stalled_writer_bounds_the_backlog_with_counted_silence(tmp_path, caller_frames):
    writer = RecordingProcess(max_backlog_bytes=64 * 1024, socket_buffer_bytes=32 * 1024)
    try:
        mono = tmp_path / "m.wav"
        rec = writer.recorder(RATE, str(mono), hold_back_seconds=0.1, flush_seconds=0.2, phase=1.0)
        assert rec.sync(timeout=10)
        os.kill(writer.pid, signal.SIGSTOP)
        try:
            loud = caller_frames * 40  # far more than the socket buffers and the backlog hold
            for i, frame in enumerate(loud):
                rec.add_caller(frame, i * FRAME_SECONDS)
            assert writer.backlog_bytes <= 64 * 1024
            assert rec.writer_samples_dropped > 0
        finally:
            os.kill(writer.pid, signal.SIGCONT)
        rec.close(timeout=20)
        data = read_wav(mono)[2]
        assert len(data) == len(loud) * 640  # silence where audio was dropped: still aligned
        assert data[:640] == loud[0]
        assert data.count(b"\x00" * 640) >= 1
    finally:
        assert writer.stop(10.0)


def test_bad_paths_fail_at_open(tmp_path, recording_process):
    with pytest.raises(OSError):
        recording_process.recorder(RATE, str(tmp_path / "missing-dir" / "m.wav"))
    with pytest.raises(OSError):
        recording_process.recorder(RATE, str(tmp_path / "m.wav"), str(tmp_path / "no" / "s.wav"))
    assert not (tmp_path / "m.wav").exists()  # nothing half-made is left behind


def test_a_file_the_writer_cannot_use_is_an_error_on_the_recording(tmp_path, recording_process):
    recording_process.start()
    os.kill(recording_process.pid, signal.SIGSTOP)
    try:
        path = tmp_path / "m.wav"
        rec = recording_process.recorder(RATE, str(path), phase=1.0)
        path.write_bytes(b"not a wav file at all, not even close")
    finally:
        os.kill(recording_process.pid, signal.SIGCONT)
    rec.add_caller(b"\x01\x00" * 320, 0.0)
    rec.close(timeout=10)
    assert isinstance(rec.error, OSError)
    assert "cannot open" in str(rec.error)


def test_a_writer_that_keeps_dying_fails_recordings_clearly(tmp_path, caller_frames):
    writer = RecordingProcess(max_restarts=1)
    try:
        rec = writer.recorder(RATE, str(tmp_path / "m.wav"))
        assert rec.sync(timeout=10)
        for _ in range(2):
            pid = writer.pid
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while writer.pid == pid and writer.failed is None and time.monotonic() < deadline:
                gevent.sleep(0.05)
        assert writer.failed is not None
        assert isinstance(rec.error, OSError)
        rec.add_caller(caller_frames[0], 0.0)
        rec.close(timeout=2)
        with pytest.raises(OSError, match="not running"):
            writer.recorder(RATE, str(tmp_path / "n.wav"))
    finally:
        writer.stop(5.0)


def test_stop_closes_everything_and_ends_the_process(tmp_path, caller_frames):
    writer = RecordingProcess()
    rec = writer.recorder(RATE, str(tmp_path / "m.wav"), phase=1.0)
    for i, frame in enumerate(caller_frames[:60]):
        rec.add_caller(frame, i * FRAME_SECONDS)
    rec.flush()
    pid = writer.pid
    assert writer.stop(10.0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert len(read_wav(tmp_path / "m.wav")[2]) == 60 * 640


# ---------------------------------------------------------------------------- WavWriter append


def test_wav_append_goes_on_after_the_counted_audio(tmp_path):
    path = tmp_path / "a.wav"
    w = WavWriter(str(path), RATE, 2)
    w.write(b"\x01\x00\x02\x00" * 100)
    w.close()
    with open(path, "ab") as f:
        f.write(b"\x07" * 13)  # a torn write past what the header counts
    a = WavWriter(str(path), RATE, 2, append=True)
    assert a.frames_written == 100
    a.write(b"\x03\x00\x04\x00" * 50)
    a.close()
    channels, _rate, data = read_wav(path)
    assert channels == 2 and data == b"\x01\x00\x02\x00" * 100 + b"\x03\x00\x04\x00" * 50
    with pytest.raises(ValueError, match="channels"):
        WavWriter(str(path), RATE, 1, append=True)
    (tmp_path / "junk.wav").write_bytes(b"RIFF")
    with pytest.raises(ValueError):
        WavWriter(str(tmp_path / "junk.wav"), RATE, 1, append=True)


# ---------------------------------------------------------------------------------- the wire


def test_wire_messages_survive_any_cut():
    messages = [
        wire.Message(wire.CALLER, 7, 1_600_000_000, 0, b"\x01" * 640),
        wire.Message(wire.ASSISTANT, 7, 1_700_000_000, 0, b"\x02" * 6400),
        wire.Message(wire.SYNC, 7, 42),
        wire.Message(wire.ERROR, 3, 0, 0, b"disk full"),
    ]
    request = wire.OpenRequest("m.wav", None, 0.5, 0.25, 0.75)
    stream = (
        b"".join(wire.encode(m) for m in messages)
        + wire.open_message(9, 8000, request)
        + wire.counters_message(9, 5, {"committed": 160, "late": 0, "dropped": 3, "error": None})
    )
    reader = wire.MessageReader()
    got = []
    for i in range(len(stream)):
        got.extend(reader.feed(stream[i : i + 1]))
    assert got[:4] == messages
    assert wire.open_request(got[4]) == request and got[4].a == 8000
    assert got[5].kind == wire.DONE and got[5].a == 5
    assert wire.counters(got[5]) == {"committed": 160, "late": 0, "dropped": 3, "error": None}
    assert reader.buffered == 0


def test_wire_rejects_what_is_not_ours():
    with pytest.raises(wire.WireError, match="kind"):
        wire.MessageReader().feed(wire.header(99, 1))
    with pytest.raises(wire.WireError, match="payload"):
        wire.MessageReader().feed(wire.header(wire.CALLER, 1, 0, 0, wire.MAX_PAYLOAD, 1))
    for body in (
        b"[]",
        b"{}",
        b'{"mono": 3, "stereo": null, "hold": 1, "flush": 1, "phase": 1}',
        b'{"mono": null, "stereo": null, "hold": 1, "flush": 1, "phase": 1}',
        b'{"mono": "m", "stereo": null, "hold": "x", "flush": 1, "phase": 1}',
    ):
        with pytest.raises(wire.WireError):
            wire.open_request(wire.Message(wire.OPEN, 1, 8000, 0, body))
    with pytest.raises(wire.WireError):
        wire.counters(wire.Message(wire.DONE, 1, 1, 0, b"[1]"))
