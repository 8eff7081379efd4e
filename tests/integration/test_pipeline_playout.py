"""Paced audio out: whole 20 ms frames in order, gap-free across chunks, stop at once, bounded queue."""

import gevent
import pytest
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


def test_burst_sends_several_frames_per_wake_up_and_on_heard_gets_exact_times():
    pcm = speech("Thank you very much, goodbye.", RATE)
    heard = []
    sent = []
    p = Playout(
        RATE,
        sent.append,
        lead_frames=1,
        burst_frames=5,
        on_heard=lambda f, at: heard.append((f, at)),
    )
    p.enqueue(pcm)
    gevent.sleep(0)  # the pacer's first run: frame 0 is due (a frame's lead), four more go with it
    assert len(sent) == 5
    assert p.playing()
    p.stop()
    assert len(heard) == 1  # only frame 0 had begun to be heard: the four sent with it never are
    p.enqueue(pcm[: 20 * FRAME])
    done = Event()
    p.on_heard = lambda f, at: (heard.append((f, at)), len(heard) >= 21 and done.set())
    assert done.wait(timeout=5)
    frames = [f for f, _ in heard]
    assert frames[1:] == [pcm[i : i + FRAME] for i in range(0, 20 * FRAME, FRAME)]
    times = [at for _, at in heard[1:]]
    steps = [round(b - a, 9) for a, b in zip(times, times[1:], strict=False)]
    # each frame at its place on the utterance's timeline, not at the time it was sent (up to 100 ms
    # earlier, five at once); only a pacer stalled past its one frame of lead would shift the timeline
    assert min(steps) == 0.02 and steps.count(0.02) >= len(steps) - 2
    assert times[0] >= heard[0][1]  # the new utterance starts after the cut one
    p.close()


def test_on_heard_is_told_of_what_was_heard_when_a_burst_is_cut_off():
    now = [100.0]  # a clock that moves only when the test moves it
    heard = []
    p = Playout(
        RATE,
        lambda f: None,
        lead_frames=1,
        burst_frames=5,
        clock=lambda: now[0],
        on_heard=lambda f, at: heard.append(at),
    )
    p.enqueue(b"\x01\x00" * RATE)
    gevent.sleep(0)
    assert p.frames_sent == 5 and heard == [100.0]  # frame 0 is heard at once, the rest not yet
    now[0] += 0.05  # frames 0, 1 and 2 have begun to be heard (at 100.00, 100.02, 100.04)
    assert p.stop() == pytest.approx(0.05)
    assert heard == pytest.approx([100.0, 100.02, 100.04])
    gevent.sleep(0.05)
    assert len(heard) == 3  # frames 3 and 4 were cut off before they were heard: never told
    p.close()


def test_frames_sent_early_in_a_burst_are_not_heard_early():
    now = [100.0]  # a clock that stands still: no time passes for the far end
    p = Playout(RATE, lambda f: None, lead_frames=1, burst_frames=5, clock=lambda: now[0])
    p.enqueue(b"\x01\x00" * RATE)
    gevent.sleep(0)
    assert p.frames_sent == 5 and p.playing()
    assert p.heard_seconds() == 0.0
    now[0] += 0.05
    assert p.heard_seconds() == pytest.approx(0.05)
    assert p.stop() == pytest.approx(0.05)
    p.close()


def test_default_sends_one_frame_per_wake_up_after_the_lead():
    sent = []
    p = Playout(RATE, sent.append)
    p.enqueue(b"\x01\x00" * RATE)
    gevent.sleep(0)
    assert len(sent) == 4  # frame 0 and the three of the lead
    p.close()


def test_unplayed_seconds_is_when_the_far_end_will_have_heard_everything():
    now = [10.0]
    p = Playout(RATE, lambda f: None, lead_frames=1, burst_frames=5, clock=lambda: now[0])
    assert p.unplayed_seconds() == 0.0
    p.enqueue(b"\x01\x00" * (RATE // 2))  # 0.5 s, queued before the pacer has run
    assert p.unplayed_seconds() == pytest.approx(0.5)
    gevent.sleep(0)  # five frames sent, the first being heard from 10.00
    assert p.unplayed_seconds() == pytest.approx(0.5)
    now[0] += 0.06  # three of the five frames sent have been heard, twenty wait
    assert p.unplayed_seconds() == pytest.approx(0.44)
    p.enqueue(b"\x01\x00" * 100)  # a partial frame more: padded to a whole one
    assert p.unplayed_seconds() == pytest.approx(0.46)
    now[0] += 0.3  # the pacer has not run since: the rest cannot be heard before it is sent
    assert p.unplayed_seconds() == pytest.approx(0.42)
    p.stop()
    assert p.unplayed_seconds() == 0.0
    p.close()
