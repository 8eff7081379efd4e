"""ForkMediaPort: ``playing()`` covers the whole way from ``play`` to the caller's ear, including a
``playAudio`` send that yields (a large message on a busy socket)."""

import math
import time

import gevent
import pytest
from gevent.event import Event

from esl_controller.calls.media import ForkMediaPort

RATE = 16000


class SlowStream:
    def __init__(self) -> None:
        self.sent: list[int] = []
        self.killed = 0

    def play_audio(self, pcm, sample_rate=None, text=None):
        gevent.sleep(0.2)  # the socket takes the message in pieces
        self.sent.append(len(pcm))

    def kill_audio(self):
        self.killed += 1


class Session:
    call_id = "port-test"

    def __init__(self) -> None:
        self.fork_stream = SlowStream()
        self.done = Event()
        self.api: list[str] = []

    def channel_api(self, build, what):
        self.api.append(what)
        return True


def test_playing_stays_true_while_play_audio_is_being_sent():
    session = Session()
    port = ForkMediaPort(session, RATE, clock=time.monotonic)
    try:
        port.play(b"\x00\x10" * RATE)  # one second
        seen = []
        started = time.monotonic()
        while time.monotonic() - started < 0.5:
            seen.append(port.playing())
            gevent.sleep(0.01)
        assert session.fork_stream.sent == [2 * RATE]
        assert all(seen), "playing() went false while the audio was still on its way"
    finally:
        port.close()


def test_barge_in_during_the_send_drops_the_audio():
    session = Session()
    port = ForkMediaPort(session, RATE, clock=time.monotonic)
    try:
        port.play(b"\x00\x10" * RATE)
        gevent.sleep(0.05)  # the send is under way
        assert port.stop_playback() == 0.0
        gevent.sleep(0.3)
        assert not port.playing()  # the audio sent meanwhile was cut off: not in the speaker
        assert session.api == ["break"] and session.fork_stream.killed == 1
        port.play(b"\x00\x10" * (RATE // 5))  # the next utterance is counted afresh
        assert port.playing()
    finally:
        port.close()


class QuickStream(SlowStream):
    def play_audio(self, pcm, sample_rate=None, text=None):
        self.sent.append(len(pcm))


def test_after_a_barge_in_the_recording_holds_only_what_was_heard():
    """The virtual speaker sends frames a burst (0.1 s) at a time; those sent ahead but cut off by the
    barge-in never reach the recording (or a listener): it gets exactly the frames begun."""
    session = Session()
    session.fork_stream = QuickStream()
    recorded: list[tuple[bytes, float]] = []
    port = ForkMediaPort(
        session, RATE, clock=time.monotonic, on_assistant=lambda f, at: recorded.append((f, at))
    )
    try:
        port.play(b"\x00\x10" * RATE)  # one second of speech
        gevent.sleep(0.25)
        heard = port.stop_playback()
        sent = port.speaker.frames_sent
        gevent.sleep(0.2)
        begun = min(sent, math.floor(heard / 0.02 + 1e-6) + 1)
        assert heard > 0.05  # (some of it was heard: the speaker sends five frames at a time)
        assert len(recorded) == begun  # sent ahead and cut off: not recorded
        assert recorded[-1][1] - recorded[0][1] == pytest.approx((begun - 1) * 0.02)
        assert len(port.heard_frames) == begun  # the live listeners' share: the same frames
    finally:
        port.close()


def test_unplayed_seconds_counts_the_speech_still_on_its_way():
    session = Session()  # its playAudio send takes 0.2 s
    now = [20.0]  # the call clock: it moves only when the test moves it
    port = ForkMediaPort(session, RATE, clock=lambda: now[0])
    try:
        port.play(b"\x00\x10" * RATE)  # one second
        gevent.sleep(0.05)  # the send is under way: nothing is in the speaker yet
        assert port.speaker.unplayed_seconds() == 0.0
        assert port.unplayed_seconds() == pytest.approx(1.0)
        deadline = time.monotonic() + 5
        while not session.fork_stream.sent and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert session.fork_stream.sent == [2 * RATE]  # sent: the speaker has it, none heard
        assert port.unplayed_seconds() == pytest.approx(1.0)
        now[0] += 0.3  # the speaker sent its first five frames; the rest wait for it
        assert port.unplayed_seconds() == pytest.approx(0.9)
        port.stop_playback()
        assert port.unplayed_seconds() == 0.0
    finally:
        port.close()


class _Conversation:
    def start(self):
        pass

    def feed(self, pcm, at):
        pass


class _Hub:
    def __init__(self):
        self.published = []

    def publish(self, call_id, caller, assistant, rate):
        self.published.append((caller, assistant))


def test_a_web_call_listener_gets_the_assistant_frames_the_client_heard():
    """The web port's heard frames are wired in after the pipeline is built (as the factory does); the
    listeners still get them, one per caller frame."""
    from esl_controller.calls.media import MediaPipeline
    from esl_controller.calls.pipeline_factory import _tap_web_port
    from esl_controller.media.playout import Playout

    class WebPort:
        sample_rate = RATE
        playout = Playout(RATE, None)

    hub = _Hub()
    pipeline = MediaPipeline(
        _Conversation(), WebPort(), call_id="web-1", clock=time.monotonic, hub=hub
    )
    _tap_web_port(pipeline.port, pipeline)
    pipeline.start()
    said = b"\x00\x10" * (RATE // 50)
    pipeline.port.playout.on_heard(said, time.monotonic())
    caller = b"\x00\x01" * (RATE // 50)
    pipeline.feed(caller, 0.0)
    pipeline.feed(caller, 0.02)
    assert hub.published == [(caller, said), (caller, None)]
