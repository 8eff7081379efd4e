"""Paced audio out: whole 20 ms frames in order, gap-free across chunks, stop at once, bounded queue."""

import gevent
from audio_fixtures import speech
from gevent.event import Event

from esl_controller.media.playout import Playout

RATE = 16000
FRAME = 640


class Sink:
    def __init__(self, until_frames):
        self.frames = []
        self.done = Event()
        self.until = until_frames

    def __call__(self, frame):
        self.frames.append(frame)
        if len(self.frames) >= self.until:
            self.done.set()


def test_frames_in_order_and_gap_free_across_uneven_chunks():
    pcm = speech("Thank you very much, goodbye.", RATE)
    first, second = pcm[: len(pcm) // 2 + 3], pcm[len(pcm) // 2 + 3 :]
    sink = Sink(len(pcm) // FRAME)
    p = Playout(RATE, sink)
    p.enqueue(first)
    p.enqueue(second)
    assert p.playing()
    assert sink.done.wait(timeout=10)
    assert all(len(f) == FRAME for f in sink.frames)
    assert b"".join(sink.frames)[: len(pcm)] == pcm
    assert p.utterances == 1 and p.frames_dropped == 0
    p.close()


def test_stop_drops_queue_and_reports_heard():
    pcm = speech("Hello, I would like to book a table for two people tonight.", RATE)
    sink = Sink(25)  # half a second
    p = Playout(RATE, sink)
    p.enqueue(pcm)
    assert sink.done.wait(timeout=10)
    heard = p.stop()
    sent = len(sink.frames)
    assert 0.3 < heard <= sent * 0.02
    assert not p.playing() and p.queued_seconds == 0
    gevent.sleep(0.1)  # nothing more may be sent after stop
    assert len(sink.frames) == sent
    p.close()


def test_bounded_queue_drops_and_counts():
    sink = Sink(10**9)
    p = Playout(RATE, sink, max_seconds=0.2)
    p.enqueue(speech("Yes, seven thirty works for me.", RATE))
    assert p.frames_dropped > 0
    assert p.queued_seconds <= 0.2
    p.close()


def test_send_failure_stops_the_pacer():
    calls = []

    def broken(frame):
        calls.append(frame)
        raise OSError("gone")

    p = Playout(RATE, broken)
    p.enqueue(speech("Yes, seven thirty works for me.", RATE))
    assert p._greenlet.join(timeout=5) is None and p._greenlet.dead
    assert p.errors == 1 and len(calls) == 1 and not p.playing()
