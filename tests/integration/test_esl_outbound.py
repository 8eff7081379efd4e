"""OutboundServer against the peer's outbound-socket client over real TCP (ephemeral ports)."""

from __future__ import annotations

import gevent
import gevent.event
import gevent.queue
import pytest

from esl_controller.esl import commands
from esl_controller.esl.errors import ChannelGone, CommandTimeout, ConnectionLost
from esl_controller.esl.outbound import CallClosed, OutboundCall, OutboundServer
from esl_controller.esl.protocol import DisconnectNotice, Event
from esl_controller.testing import FreeSwitchPeer


@pytest.fixture
def peer():
    p = FreeSwitchPeer()
    p.start()
    yield p
    p.stop()


class Harness:
    """Runs ``script(call)`` for each connection; records everything the handler saw."""

    def __init__(self, script):
        self.script = script
        self.items: gevent.queue.Queue = gevent.queue.Queue()
        self.calls: gevent.queue.Queue = gevent.queue.Queue()
        self.errors: list[BaseException] = []
        self.done = gevent.event.Event()
        self.server = OutboundServer(
            "127.0.0.1", 0, self.on_call, connect_timeout=3, command_timeout=3
        )

    def on_call(self, call: OutboundCall) -> None:
        call.add_handler(self.items.put)
        self.calls.put(call)
        try:
            self.script(call)
        except Exception as exc:
            self.errors.append(exc)
            raise
        finally:
            self.done.set()

    def next_item(self, pred=lambda item: True, timeout=5.0):
        with gevent.Timeout(timeout):
            while True:
                item = self.items.get()
                if pred(item):
                    return item


@pytest.fixture
def harness_factory():
    made = []

    def make(script):
        h = Harness(script)
        h.server.start()
        made.append(h)
        return h

    yield make
    for h in made:
        h.server.stop()


def _basic(call: OutboundCall) -> None:
    call.myevents()
    call.linger()
    done = call.execute("answer", timeout=5)
    assert done.name == "CHANNEL_EXECUTE_COMPLETE"
    assert done.get("Application") == "answer"
    # wait until the caller hangs up and CHANNEL_HANGUP_COMPLETE arrives (lingering socket)
    complete = call.expect(lambda ev: ev.name == "CHANNEL_HANGUP_COMPLETE")
    complete.get(timeout=10)


def test_connect_myevents_linger_answer_and_caller_hangup(peer, harness_factory):
    h = harness_factory(_basic)
    leg = peer.place_call(
        "127.0.0.1", h.server.port, caller="+15551230001", destination="15557654321"
    )
    call = h.calls.get(timeout=5)
    assert call.uuid == leg.uuid
    assert call.channel_data.get("Caller-Caller-ID-Number") == "+15551230001"
    assert call.channel_data.get("Channel-Destination-Number") == "15557654321"
    assert call.variable("sip_req_user") == "15557654321"
    assert call.socket_mode == "async" and call.control == "full"
    lines = [peer.commands.wait_for(p).line for p in ("connect", "myevents", "linger", "sendmsg")]
    assert lines == ["connect", "myevents", "linger", "sendmsg"]
    sendmsg = peer.commands.wait_for("sendmsg")
    assert sendmsg.header("call-command") == "execute"
    assert sendmsg.header("execute-app-name") == "answer"
    assert sendmsg.header("event-lock") == "true"
    answered = h.next_item(lambda i: isinstance(i, Event) and i.name == "CHANNEL_ANSWER")
    assert answered.get("Answer-State") == "answered"
    leg.hangup("NORMAL_CLEARING")
    notice = h.next_item(lambda i: isinstance(i, DisconnectNotice))
    assert notice.disposition == "linger"
    complete = h.next_item(lambda i: isinstance(i, Event) and i.name == "CHANNEL_HANGUP_COMPLETE")
    assert complete.variable("hangup_cause") == "NORMAL_CLEARING"
    assert h.done.wait(5) and not h.errors
    peer.commands.wait_for("exit")  # the server says exit after on_call returns
    closed = h.next_item(lambda i: isinstance(i, CallClosed))
    assert closed.reason
    assert leg.wait_closed(5)


def test_dtmf_and_audio_fork_events_reach_the_handler(peer, harness_factory):
    def script(call):
        call.myevents()
        call.subscribe(subclasses=["mod_audio_fork::connect", "mod_audio_fork::play_audio"])
        call.execute("answer", timeout=5)
        r = call.api(
            commands.audio_fork_start(call.uuid, "ws://127.0.0.1:9/media", metadata={"callId": "x"})
        )
        assert r.text == "+OK Success"
        call.expect(lambda ev: ev.name == "CHANNEL_HANGUP").get(timeout=10)

    h = harness_factory(script)
    leg = peer.place_call("127.0.0.1", h.server.port)
    fork = h.next_item(lambda i: isinstance(i, Event) and i.subclass == "mod_audio_fork::connect")
    assert fork.unique_id == leg.uuid
    leg.dtmf("5")
    dtmf = h.next_item(lambda i: isinstance(i, Event) and i.name == "DTMF")
    assert dtmf.get("DTMF-Digit") == "5"
    body = b'{"audioContentType":"raw","sampleRate":16000,"file":"/tmp/x.r16"}'
    leg.custom("mod_audio_fork::play_audio", body)
    play = h.next_item(
        lambda i: isinstance(i, Event) and i.subclass == "mod_audio_fork::play_audio"
    )
    assert play.body == body
    leg.hangup("NORMAL_CLEARING")
    assert h.done.wait(5) and not h.errors


def test_no_linger_disconnect_notice_and_controller_hangup(peer, harness_factory):
    def script(call):
        call.myevents()
        call.execute("answer", timeout=5)
        call.hangup("USER_BUSY")
        call.closed.wait(timeout=5)

    h = harness_factory(script)
    leg = peer.place_call("127.0.0.1", h.server.port)
    hang = peer.commands.wait_for(lambda c: c.header("call-command") == "hangup")
    assert hang.header("hangup-cause") == "USER_BUSY"
    notice = h.next_item(lambda i: isinstance(i, DisconnectNotice))
    assert notice.disposition == "disconnect"
    assert notice.body.startswith(b"Disconnected, goodbye.")
    h.next_item(lambda i: isinstance(i, CallClosed))
    assert h.done.wait(5) and not h.errors
    assert leg.runner.channel.hangup_cause == "USER_BUSY"


def test_peer_drop_during_execute_fails_the_waiter(peer, harness_factory):
    peer.switch.playback_blocks = True
    outcome = gevent.event.AsyncResult()

    def script(call):
        call.myevents()
        call.subscribe(["PLAYBACK_START"])
        call.execute("answer", timeout=5)
        try:
            call.execute("playback", "/tmp/prompt.wav", timeout=10)
        except ConnectionLost as exc:
            outcome.set(exc)

    h = harness_factory(script)
    leg = peer.place_call("127.0.0.1", h.server.port)
    h.next_item(lambda i: isinstance(i, Event) and i.name == "PLAYBACK_START")
    leg.drop()
    assert isinstance(outcome.get(timeout=5), ConnectionLost)
    closed = h.next_item(lambda i: isinstance(i, CallClosed))
    assert "closed" in closed.reason or "error" in closed.reason
    assert h.done.wait(5)


def test_hangup_during_execute_raises_channel_gone(peer, harness_factory):
    peer.switch.playback_blocks = True
    outcome = gevent.event.AsyncResult()

    def script(call):
        call.myevents()
        call.linger()
        call.subscribe(["PLAYBACK_START"])
        call.execute("answer", timeout=5)
        try:
            call.execute("playback", "/tmp/prompt.wav", timeout=10)
        except ChannelGone as exc:
            outcome.set(exc)
        with pytest.raises(ChannelGone):
            call.execute("answer", timeout=1)

    h = harness_factory(script)
    leg = peer.place_call("127.0.0.1", h.server.port)
    h.next_item(lambda i: isinstance(i, Event) and i.name == "PLAYBACK_START")
    leg.hangup("NORMAL_CLEARING")
    assert isinstance(outcome.get(timeout=5), ChannelGone)
    assert h.done.wait(5) and not h.errors


def test_uuid_break_stops_playback(peer, harness_factory):
    peer.switch.playback_blocks = True

    def script(call):
        call.myevents()
        call.subscribe(["PLAYBACK_START", "PLAYBACK_STOP"])
        call.execute("answer", timeout=5)
        run = call.execute_async("playback", "/tmp/prompt.wav")
        call.expect(lambda ev: ev.name == "PLAYBACK_START").get(timeout=5)
        assert call.api(commands.uuid_break(call.uuid)).text == "+OK"
        done = run.wait(5)
        assert done.get("Application-Response") == "FILE PLAYED"

    h = harness_factory(script)
    peer.place_call("127.0.0.1", h.server.port)
    stop = h.next_item(lambda i: isinstance(i, Event) and i.name == "PLAYBACK_STOP")
    assert stop.get("Playback-Status") == "break"
    assert h.done.wait(5) and not h.errors


def test_execute_times_out_when_completion_never_comes(peer, harness_factory):
    def script(call):
        # no myevents: FS never sends CHANNEL_EXECUTE_COMPLETE to this socket
        with pytest.raises(CommandTimeout):
            call.execute("answer", timeout=0.3)

    h = harness_factory(script)
    peer.place_call("127.0.0.1", h.server.port)
    assert h.done.wait(5) and not h.errors


def test_peer_that_closes_before_connect_reply(peer, harness_factory):
    h = harness_factory(lambda call: None)
    peer.switch.stall("connect")
    leg = peer.place_call("127.0.0.1", h.server.port)
    peer.commands.wait_for("connect")
    leg.drop()
    assert h.calls.empty()
    assert leg.wait_closed(5)


def test_bind_error_raises_instead_of_exiting(harness_factory):
    h = harness_factory(lambda call: None)
    other = OutboundServer("127.0.0.1", h.server.port, lambda call: None)
    with pytest.raises(OSError):
        other.start()
