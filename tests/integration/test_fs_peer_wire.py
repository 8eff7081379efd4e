"""The FreeSWITCH peer at the byte level (raw sockets), and full call flows through it."""

from __future__ import annotations

import json
import socket

import gevent
import gevent.event
import gevent.queue
import pytest

from esl_controller.esl import commands
from esl_controller.esl.inbound import InboundConnection, InboundSettings
from esl_controller.esl.outbound import OutboundServer
from esl_controller.esl.protocol import (
    DISCONNECT_BODY,
    FrameParser,
    disconnect_notice,
    parse_event,
    serialize_command,
)
from esl_controller.testing import CallScenario, FreeSwitchPeer


class RawClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.parser = FrameParser()
        self.raw = bytearray()

    def send(self, line: str, headers=()) -> None:
        self.sock.sendall(serialize_command(line, headers))

    def frame(self):
        while True:
            frame = self.parser.next_frame()
            if frame is not None:
                return frame
            data = self.sock.recv(65536)
            if not data:
                self.parser.feed_eof()
                return None
            self.raw += data
            self.parser.feed(data)

    def close(self):
        self.sock.close()


@pytest.fixture
def peer():
    p = FreeSwitchPeer(password="ClueCon")
    p.start()
    yield p
    p.stop()


def test_auth_wire_exchange_matches_freeswitch(peer):
    c = RawClient(peer.port)
    assert c.frame().content_type == "auth/request"
    c.send("api status")
    assert c.frame().reply_text == "-ERR command not found"
    c.send("auth wrong")
    assert c.frame().reply_text == "-ERR invalid"
    bye = c.frame()
    assert bye.content_type == "text/disconnect-notice" and bye.body == DISCONNECT_BODY
    assert c.frame() is None  # closed
    assert bytes(c.raw).startswith(b"Content-Type: auth/request\n\n")


def test_rude_rejection(peer):
    peer.reject_connections = True
    c = RawClient(peer.port)
    f = c.frame()
    assert f.content_type == "text/rude-rejection" and f.body == b"Access Denied, go away.\n"
    assert c.frame() is None


def test_event_frames_are_byte_faithful(peer):
    c = RawClient(peer.port)
    c.frame()
    c.send("auth ClueCon")
    assert c.frame().reply_text == "+OK accepted"
    c.send("event plain CHANNEL_CREATE BACKGROUND_JOB CUSTOM mod_audio_fork::connect")
    assert c.frame().reply_text == "+OK event listener enabled plain"
    c.send("bgapi status", [("Job-UUID", "d2f4a6b8-1c3e-4f5a-8b7c-9d0e1f2a3b4c")])
    reply = c.frame()
    assert reply.reply_text == "+OK Job-UUID: d2f4a6b8-1c3e-4f5a-8b7c-9d0e1f2a3b4c"
    start = len(c.raw)
    job = c.frame()
    raw = bytes(c.raw[start:])
    assert raw.startswith(b"Content-Length: ") and b"\nContent-Type: text/event-plain\n\n" in raw
    event = parse_event(job)
    names = [n for n, _ in event.items]
    assert names[:13] == [
        "Event-Name",
        "Core-UUID",
        "FreeSWITCH-Hostname",
        "FreeSWITCH-Switchname",
        "FreeSWITCH-IPv4",
        "FreeSWITCH-IPv6",
        "Event-Date-Local",
        "Event-Date-GMT",
        "Event-Date-Timestamp",
        "Event-Calling-File",
        "Event-Calling-Function",
        "Event-Calling-Line-Number",
        "Event-Sequence",
    ]
    assert event.get("Job-Owner-UUID") == "_undef_"
    assert b"FreeSWITCH-IPv6: %3A%3A1\n" in raw
    assert b"is ready" in event.body
    c.send("exit")
    assert c.frame().reply_text == "+OK bye"
    assert c.frame().content_type == "text/disconnect-notice"


def test_outbound_leg_swallows_a_first_command_other_than_connect(peer):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    leg = peer.place_call("127.0.0.1", srv.getsockname()[1])
    conn, _ = srv.accept()
    conn.settimeout(5)
    client_parser = FrameParser()
    conn.sendall(b"myevents\n\n")  # swallowed: no reply
    conn.sendall(b"connect\n\n")
    frames = []
    while not frames:
        client_parser.feed(conn.recv(65536))
        frames = list(client_parser)
    assert frames[0].reply_text == "+OK\n"
    assert frames[0].get("Unique-ID") == leg.uuid
    assert frames[0].get("Event-Name") == "CHANNEL_DATA"
    conn.close()
    srv.close()


@pytest.fixture
def controller(peer):
    """An inbound connection plus an outbound server, as the real controller would run them."""
    calls = gevent.queue.Queue()
    seen = gevent.queue.Queue()

    def on_call(call):
        call.add_handler(seen.put)
        call.myevents()
        call.linger()
        calls.put(call)
        call.expect(lambda ev: ev.name == "CHANNEL_HANGUP_COMPLETE").get(timeout=15)

    server = OutboundServer("127.0.0.1", 0, on_call, command_timeout=3)
    server.start()
    conn = InboundConnection(
        InboundSettings(port=peer.port, password="ClueCon", command_timeout=3, backoff_initial=0.05)
    )
    conn.start()
    assert conn.wait_connected(5)
    yield conn, server, calls, seen
    conn.stop()
    server.stop()


def test_originate_into_the_controller_socket_then_kill(peer, controller):
    conn, server, calls, seen = controller
    uuid = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    gate = gevent.event.Event()
    peer.scenarios["+15551230001"] = CallScenario(outcome="answer", gate=gate)
    events = gevent.queue.Queue()
    for name in ("CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE"):
        conn.add_handler(name, events.put)
    cmd = commands.originate(
        commands.gateway_dialstring("byo_trunk", "+15551230001"),
        uuid=uuid,
        variables={"origination_caller_id_number": "15557654321"},
        target=commands.SocketTarget("127.0.0.1", server.port),
    )
    job = conn.bgapi_start(cmd)
    assert events.get(timeout=5).name == "CHANNEL_CREATE"
    assert events.get(timeout=5).name == "CHANNEL_PROGRESS"  # ringing, waiting for the gate
    assert conn.api(commands.uuid_exists(uuid)).text == "true"
    listing = json.loads(conn.api(commands.show_channels_json()).body)
    assert listing["row_count"] == 1 and listing["rows"][0]["uuid"] == uuid
    gate.set()
    assert job.wait(5).value == uuid
    assert events.get(timeout=5).name == "CHANNEL_ANSWER"
    call = calls.get(timeout=5)
    assert call.uuid == uuid
    assert call.channel_data.get("Call-Direction") == "outbound"
    assert call.channel_data.get("Answer-State") == "answered"
    assert call.variable("sip_gateway") == "byo_trunk"
    assert conn.api(commands.uuid_kill(uuid, "NORMAL_CLEARING")).text == "+OK"
    complete = events.get(timeout=5)
    assert complete.name == "CHANNEL_HANGUP_COMPLETE" and complete.unique_id == uuid
    kinds = []
    with gevent.Timeout(5):
        while "closed" not in kinds:
            item = seen.get()
            kinds.append(
                getattr(item, "name", None) or ("closed" if hasattr(item, "reason") else "notice")
            )
    assert (
        kinds.index("CHANNEL_HANGUP")
        < kinds.index("notice")
        < kinds.index("CHANNEL_HANGUP_COMPLETE")
    )
    assert conn.api(commands.uuid_exists(uuid)).text == "false"
    assert json.loads(conn.api(commands.show_channels_json()).body) == {"row_count": 0}


@pytest.mark.parametrize(
    "scenario, cause",
    [
        (CallScenario(outcome="busy"), "USER_BUSY"),
        (CallScenario(outcome="no_answer"), "NO_ANSWER"),
        (CallScenario(outcome="failure"), "NORMAL_TEMPORARY_FAILURE"),
        (CallScenario(outcome="reject"), "CALL_REJECTED"),
    ],
)
def test_failed_originates_never_reach_the_socket(peer, controller, scenario, cause):
    conn, server, calls, _ = controller
    peer.scenarios["15550001111"] = scenario
    uuid = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9"
    complete = gevent.event.AsyncResult()
    conn.add_handler("CHANNEL_HANGUP_COMPLETE", complete.set)
    result = conn.bgapi(
        commands.originate(commands.gateway_dialstring("gw", "15550001111"), uuid=uuid), timeout=5
    )
    assert not result.ok and result.value == cause
    ev = complete.get(timeout=5)
    assert ev.variable("hangup_cause") == cause and ev.unique_id == uuid
    assert calls.empty() and not peer.switch.legs


def test_no_linger_loses_hangup_complete_on_the_socket(peer):
    items = gevent.queue.Queue()

    def on_call(call):
        call.add_handler(items.put)
        call.myevents()
        call.closed.wait(timeout=10)

    server = OutboundServer("127.0.0.1", 0, on_call)
    server.start()
    try:
        leg = peer.place_call("127.0.0.1", server.port)
        peer.commands.wait_for("myevents")
        leg.hangup("NORMAL_CLEARING")
        got = []
        with gevent.Timeout(5):
            while True:
                item = items.get()
                got.append(item)
                if hasattr(item, "reason"):
                    break
        names = [getattr(i, "name", type(i).__name__) for i in got]
        assert "CHANNEL_HANGUP" in names and "CHANNEL_HANGUP_COMPLETE" not in names
        notice = next(i for i in got if type(i).__name__ == "DisconnectNotice")
        assert notice.disposition == "disconnect"
    finally:
        server.stop()


def test_disconnect_notice_helper_on_linger_frame():
    parser = FrameParser()
    parser.feed(
        b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: u\nContent-Disposition: linger\n"
        b"Channel-Name: sofia/x\nLinger-Time: 5\nContent-Length: 0\n\n"
    )
    notice = disconnect_notice(parser.next_frame())
    assert notice.disposition == "linger" and notice.linger_time == "5"
