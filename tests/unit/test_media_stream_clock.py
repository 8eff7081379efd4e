"""StreamClock: frames of chunked caller audio get consecutive stream times; a real pause stays a pause."""

import pytest

from esl_controller.media.stream_clock import StreamClock


def test_frames_of_a_chunk_follow_each_other_whatever_the_arrival_jitter():
    clock = StreamClock(0.02)
    times = []
    for k, jitter in enumerate((0.0, 0.013, -0.004, 0.021, 0.002)):  # 100 ms chunks, late or early
        clock.arrived(0.1 * (k + 1) + jitter, 0.1)
        times += [clock.next_frame() for _ in range(5)]
    assert times == pytest.approx([0.02 * i for i in range(25)])
    assert clock.jumps == 0


def test_a_sender_that_paused_resumes_at_its_arrival():
    clock = StreamClock(0.02, max_lag=0.5)
    clock.arrived(0.02, 0.02)
    assert clock.next_frame() == 0.0
    clock.arrived(2.02, 0.02)  # nothing for two seconds (muted): the pause is kept
    assert clock.next_frame() == pytest.approx(2.0)
    assert clock.jumps == 1
    clock.arrived(2.04, 0.02)
    assert clock.next_frame() == pytest.approx(2.02)


def test_a_burst_after_a_short_stall_does_not_overlap():
    clock = StreamClock(0.02, max_lag=0.5)
    clock.arrived(0.3, 0.3)  # 0.3 s arrives at once after a 0.3 s stall: under the lag, no jump
    times = [clock.next_frame() for _ in range(15)]
    assert times == pytest.approx([0.02 * i for i in range(15)])
    clock.arrived(0.32, 0.02)  # the arrivals are behind the audio now: the count goes on
    assert clock.next_frame() == pytest.approx(0.3)


def test_a_frame_length_must_be_positive():
    with pytest.raises(ValueError):
        StreamClock(0.0)
