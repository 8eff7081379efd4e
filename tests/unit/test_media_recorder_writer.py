"""Recordings through the process-wide writer: exact alignment, files valid after every commit,
staggered commits, the bounded hand-off when the writer stalls, close() waiting, shared writer."""

import logging
import shutil
import subprocess
import sys
import textwrap
import time
import wave
from array import array

import gevent
import pytest
from gevent import monkey

from esl_controller.media import codecs
from esl_controller.media.recorder import CallRecorder
from esl_controller.media.recording_writer import RecordingWriter, WavWriter

RATE = 8000
FRAME = RATE // 50  # samples in 20 ms

_allocate_lock = monkey.get_original("_thread", "allocate_lock")


def pcm(values) -> bytes:
    return array("h", values).tobytes()


def samples(path) -> tuple[int, array]:
    with wave.open(str(path), "rb") as w:
        data = array("h")
        data.frombytes(w.readframes(w.getnframes()))
        return w.getnchannels(), data


def frame_value(i: int) -> int:
    return 100 + i  # every caller frame distinct and non-zero


@pytest.fixture
def writer():
    w = RecordingWriter(batch_seconds=0.02)
    yield w
    assert w.stop(5.0)


class Gate:
    """Stalls a WavWriter's writes (on the writer thread) until opened."""

    def __init__(self, wav: WavWriter) -> None:
        self.lock = _allocate_lock()
        self.lock.acquire()
        self.entered = 0
        inner = wav.write

        def write(data):
            self.entered += 1
            if self.lock.acquire(True, 10.0):
                self.lock.release()
            inner(data)

        wav.write = write

    def open(self) -> None:
        self.lock.release()


def test_alignment_with_gaps_and_late_audio_is_exact(tmp_path, writer):
    rec = CallRecorder(
        RATE, str(tmp_path / "m.wav"), str(tmp_path / "s.wav"),
        hold_back_seconds=0.5, flush_seconds=0.2, phase=1.0, writer=writer,
    )  # fmt: skip
    total = 4 * RATE
    left = array("h", bytes(2 * total))
    right = array("h", bytes(2 * total))
    gap = range(100, 120)  # frames 2.0 s to 2.4 s never arrive
    for i in range(200):
        t = i * 0.02
        if i not in gap:
            rec.add_caller(pcm([frame_value(i)] * FRAME), t)
            left[i * FRAME : (i + 1) * FRAME] = array("h", [frame_value(i)] * FRAME)
        if i == 60:  # caller at 1.2 s: a 0.3 s burst at 1.0 s, inside the hold-back: placed
            rec.add_assistant(pcm([-7] * int(0.3 * RATE)), 1.0)
            right[RATE : RATE + int(0.3 * RATE)] = array("h", [-7] * int(0.3 * RATE))
        if i == 75:  # caller at 1.5 s, committed up to 1.0 s: 0.1 s to 0.3 s is dropped
            assert rec.committed_seconds == pytest.approx(1.0)
            rec.add_assistant(pcm([9] * int(0.2 * RATE)), 0.1)
            # 0.9 s to 1.1 s: the first half is dropped, the second overwrites the burst
            rec.add_assistant(pcm([5] * int(0.2 * RATE)), 0.9)
            right[RATE : RATE + int(0.1 * RATE)] = array("h", [5] * int(0.1 * RATE))
    assert rec.late_samples_dropped == int(0.2 * RATE) + int(0.1 * RATE)
    rec.close()
    assert rec.files.mono.closed and rec.files.stereo.closed
    ch, stereo = samples(tmp_path / "s.wav")
    assert ch == 2 and len(stereo) == 2 * total
    assert stereo[0::2] == left
    assert stereo[1::2] == right
    _, mono = samples(tmp_path / "m.wav")
    assert mono.tobytes() == codecs.mix(left.tobytes(), right.tobytes())


def test_files_are_valid_and_sized_after_each_commit_and_after_close(tmp_path, writer):
    rec = CallRecorder(
        RATE, str(tmp_path / "m.wav"), str(tmp_path / "s.wav"),
        hold_back_seconds=0.2, flush_seconds=0.3, writer=writer,
    )  # fmt: skip
    sent = array("h")
    commits = 0
    for i in range(150):
        before = rec.committed_seconds
        rec.add_caller(pcm([frame_value(i)] * FRAME), i * 0.02)
        sent.extend([frame_value(i)] * FRAME)
        if rec.committed_seconds == before:
            continue
        commits += 1
        assert rec.sync(5.0)
        n = round(rec.committed_seconds * RATE)
        shutil.copy(tmp_path / "m.wav", tmp_path / "crash.wav")  # a crash now
        ch, mono = samples(tmp_path / "crash.wav")
        assert ch == 1 and mono == sent[:n]
        ch, stereo = samples(tmp_path / "s.wav")
        assert ch == 2 and stereo[0::2] == sent[:n] and not any(stereo[1::2])
        assert (tmp_path / "s.wav").stat().st_size == 44 + 4 * n
    assert commits >= 8  # 3 s of audio in spans of 0.3 s
    rec.close()
    _, mono = samples(tmp_path / "m.wav")
    assert mono == sent
    assert (tmp_path / "m.wav").stat().st_size == 44 + 2 * len(sent)


def test_a_file_copied_at_any_moment_is_a_valid_prefix(tmp_path, writer):
    rec = CallRecorder(
        RATE, str(tmp_path / "m.wav"), hold_back_seconds=0.1, flush_seconds=0.1, writer=writer
    )
    sent = array("h")
    for i in range(300):
        rec.add_caller(pcm([frame_value(i)] * FRAME), i * 0.02)
        sent.extend([frame_value(i)] * FRAME)
        if i % 10 == 0:
            gevent.sleep(0.003)  # the writer runs meanwhile
            shutil.copy(tmp_path / "m.wav", tmp_path / "now.wav")
            _, now = samples(tmp_path / "now.wav")
            assert now == sent[: len(now)]
    rec.close()


def first_commit_frame(rec: CallRecorder) -> int:
    for i in range(500):
        rec.add_caller(pcm([1] * FRAME), i * 0.02)
        if rec.committed_seconds:
            return i
    raise AssertionError("no commit")


def test_recorders_started_together_commit_in_different_frames(tmp_path, writer):
    # hold-back 1 s, spans of 1 s: the first commit comes at 1 s + phase x 1 s of audio
    a = CallRecorder(RATE, str(tmp_path / "a.wav"), phase=0.3, writer=writer)
    b = CallRecorder(RATE, str(tmp_path / "b.wav"), phase=0.8, writer=writer)
    fa, fb = first_commit_frame(a), first_commit_frame(b)
    assert (fa, fb) == (64, 89)  # 1.3 s and 1.8 s of audio (frames end at 0.02 x (i + 1))
    for rec in (a, b):  # after that, every flush_seconds: the phase stays
        base = rec.committed_seconds
        for i in range(90):
            rec.add_caller(
                pcm([1] * FRAME), 1.8 + 0.02 * (i + 1) if rec is b else 1.3 + 0.02 * (i + 1)
            )
        assert rec.committed_seconds == pytest.approx(base + 1.0)
        rec.close()
    recs = [CallRecorder(RATE, str(tmp_path / f"r{k}.wav"), writer=writer) for k in range(10)]
    firsts = {first_commit_frame(r) for r in recs}  # a random phase each
    assert len(firsts) > 1
    assert all(49 <= f <= 99 for f in firsts)
    for r in recs:
        r.close()


def test_a_stalled_writer_drops_audio_keeps_alignment_and_counts(tmp_path, caplog):
    writer = RecordingWriter(batch_seconds=0.0, max_backlog_bytes=3 * 2 * RATE)  # 3 s of caller
    rec = CallRecorder(
        RATE,
        str(tmp_path / "m.wav"),
        hold_back_seconds=1.0,
        flush_seconds=1.0,
        phase=1.0,
        writer=writer,
    )
    gate = Gate(rec.files.mono)
    sent = array("h")
    caplog.set_level(logging.WARNING, logger="esl_controller.media")
    for i in range(500):  # 10 s: commits of 1 s at 2 s, 3 s, ... 9 s of audio
        rec.add_caller(pcm([frame_value(i)] * FRAME), i * 0.02)
        sent.extend([frame_value(i)] * FRAME)
        assert writer.backlog_bytes <= writer.max_backlog_bytes
    assert rec.committed_seconds == pytest.approx(9.0)
    assert rec.writer_samples_dropped == 6 * RATE  # 3 s accepted, the next 6 s dropped
    gate.open()
    assert rec.sync(5.0) and writer.backlog_bytes == 0
    for i in range(500, 600):  # the writer has caught up: audio is kept again
        rec.add_caller(pcm([frame_value(i)] * FRAME), i * 0.02)
        sent.extend([frame_value(i)] * FRAME)
    rec.close()
    assert gate.entered >= 1
    _, mono = samples(tmp_path / "m.wav")
    assert len(mono) == len(sent) == 12 * RATE  # still time-aligned
    assert mono[: 3 * RATE] == sent[: 3 * RATE]
    assert not any(mono[3 * RATE : 9 * RATE])
    assert mono[9 * RATE :] == sent[9 * RATE :]
    assert rec.writer_samples_dropped == 6 * RATE
    behind = [r for r in caplog.records if "behind" in r.getMessage()]
    assert len(behind) == 1 and behind[0].name.startswith("esl_controller.media")
    assert writer.stop(5.0)


def test_close_waits_for_pending_writes_without_blocking_the_hub(tmp_path, writer):
    rec = CallRecorder(RATE, str(tmp_path / "m.wav"), str(tmp_path / "s.wav"), writer=writer)
    gate = Gate(rec.files.stereo)
    sent = array("h")
    for i in range(200):
        rec.add_caller(pcm([frame_value(i)] * FRAME), i * 0.02)
        sent.extend([frame_value(i)] * FRAME)
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(1000)])
    gevent.spawn_later(0.3, gate.open)  # the hub must keep running for this to happen
    started = time.monotonic()
    rec.close()
    waited = time.monotonic() - started
    ticker.kill()
    assert 0.25 <= waited < 4.0
    assert len(ticks) >= 10  # greenlets ran while close() waited
    assert rec.files.mono.closed and rec.files.stereo.closed
    _, mono = samples(tmp_path / "m.wav")
    ch, stereo = samples(tmp_path / "s.wav")
    assert mono == sent and stereo[0::2] == sent


def test_close_gives_up_after_its_timeout_and_the_writer_finishes_later(tmp_path, caplog):
    writer = RecordingWriter(batch_seconds=0.0)
    rec = CallRecorder(RATE, str(tmp_path / "m.wav"), writer=writer)
    gate = Gate(rec.files.mono)
    for i in range(100):
        rec.add_caller(pcm([frame_value(i)] * FRAME), i * 0.02)
    started = time.monotonic()
    rec.close(timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert rec.closed and not rec.files.mono.closed
    assert any("not finished writing" in r.getMessage() for r in caplog.records)
    gate.open()
    assert writer.stop(5.0)
    assert rec.files.mono.closed
    _, mono = samples(tmp_path / "m.wav")
    assert len(mono) == 100 * FRAME


def hole(i: int, k: int) -> bool:
    return (i + k) % 37 == 0 and i < 149  # (a recording ends with the newest audio: no hole last)


def test_many_recorders_share_one_writer_and_keep_their_own_bytes(tmp_path, writer):
    recs = [
        CallRecorder(
            RATE,
            str(tmp_path / f"m{k}.wav"),
            str(tmp_path / f"s{k}.wav"),
            hold_back_seconds=0.1,
            flush_seconds=0.2,
            writer=writer,
        )  # fmt: skip
        for k in range(40)
    ]
    for i in range(150):
        for k, rec in enumerate(recs):
            if i == 50 + k:
                rec.add_assistant(pcm([-(k + 1)] * FRAME), i * 0.02)
            if hole(i, k):
                continue  # each stream has its own holes
            rec.add_caller(pcm([k + 1] * FRAME), i * 0.02)
    for rec in recs:
        rec.close()
    assert writer.batches < 150  # batched, not one hand-off per commit
    for k in range(40):
        left = array("h")
        for i in range(150):
            left.extend([0 if hole(i, k) else k + 1] * FRAME)
        right = array("h", bytes(len(left) * 2))
        right[(50 + k) * FRAME : (51 + k) * FRAME] = array("h", [-(k + 1)] * FRAME)
        _, stereo = samples(tmp_path / f"s{k}.wav")
        assert stereo[0::2] == left and stereo[1::2] == right
        _, mono = samples(tmp_path / f"m{k}.wav")
        assert mono.tobytes() == codecs.mix(left.tobytes(), right.tobytes())


def test_wav_writer_header_is_right_after_every_write(tmp_path):
    w = WavWriter(str(tmp_path / "w.wav"), RATE, 2)
    written = b""
    for k in range(1, 5):
        chunk = pcm([k, -k] * (100 * k))
        w.write(chunk)
        written += chunk
        with wave.open(str(tmp_path / "w.wav"), "rb") as r:
            assert (r.getnchannels(), r.getsampwidth(), r.getframerate()) == (2, 2, RATE)
            assert r.getnframes() == len(written) // 4 == w.frames_written
            assert r.readframes(r.getnframes()) == written
    w.write_silence(RATE)
    assert w.seconds == pytest.approx(1.0 + 1000 / RATE)
    w.close()
    assert (tmp_path / "w.wav").read_bytes()[-4 * RATE :] == bytes(4 * RATE)


def test_recording_works_with_plain_threads(tmp_path):
    """A process that is not gevent-patched (a CLI): native threads, native waits."""
    script = textwrap.dedent(
        """
        import sys, threading, wave
        from esl_controller.media.recorder import CallRecorder
        from gevent import monkey
        assert not monkey.is_module_patched("threading")

        def record(k):
            rec = CallRecorder(8000, f"{sys.argv[1]}/t{k}.wav", hold_back_seconds=0.1, flush_seconds=0.1)
            for i in range(100):
                rec.add_caller(bytes([k + 1, 0]) * 160, i * 0.02)
            rec.close()
            assert rec.files.mono.closed

        threads = [threading.Thread(target=record, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for k in range(4):
            with wave.open(f"{sys.argv[1]}/t{k}.wav", "rb") as w:
                assert w.readframes(w.getnframes()) == bytes([k + 1, 0]) * 16000
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_audio_one_sample_off_the_end_is_placed_where_its_timestamp_says(tmp_path, writer):
    rec = CallRecorder(RATE, stereo_path=str(tmp_path / "s.wav"), writer=writer)
    rec.add_caller(pcm([1] * FRAME), 0.0)
    rec.add_caller(pcm([2] * FRAME), (FRAME + 1) / RATE)  # one sample of silence before it
    rec.add_caller(pcm([3] * FRAME), (2 * FRAME) / RATE)  # starts one sample early: overwrites
    rec.add_caller(pcm([4] * FRAME), (3 * FRAME + 0.4) / RATE)  # rounds to the end: contiguous
    rec.close()
    _, stereo = samples(tmp_path / "s.wav")
    expected = [1] * FRAME + [0] + [2] * (FRAME - 1) + [3] * FRAME + [4] * FRAME
    assert stereo[0::2] == array("h", expected)


def test_a_long_gap_grows_the_track_buffer_and_later_audio_stays_exact(tmp_path, writer):
    rec = CallRecorder(RATE, str(tmp_path / "m.wav"), phase=1.0, writer=writer)
    expected = array("h")
    for i in range(150):  # 3 s, then a 7 s hole, then 3 s more
        rec.add_caller(pcm([frame_value(i)] * FRAME), i * 0.02)
        expected.extend([frame_value(i)] * FRAME)
    expected.extend([0] * (7 * RATE))
    for i in range(500, 650):
        if 560 <= i < 575:  # a second hole, after the buffer was compacted and shrunk
            expected.extend([0] * FRAME)
            continue
        rec.add_caller(pcm([frame_value(i)] * FRAME), i * 0.02)
        expected.extend([frame_value(i)] * FRAME)
    rec.close()
    _, mono = samples(tmp_path / "m.wav")
    assert mono == expected
