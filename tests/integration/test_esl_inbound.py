"""InboundConnection against the FreeSWITCH peer over real TCP on ephemeral loopback ports."""

from __future__ import annotations

import gevent
import gevent.event
import pytest

from esl_controller.esl import commands
from esl_controller.esl.errors import CommandTimeout, ConnectionLost
from esl_controller.esl.inbound import ConnState, InboundConnection, InboundSettings
from esl_controller.testing import CallScenario, FreeSwitchPeer

PASSWORD = "s3cret-pass"


@pytest.fixture
def peer():
    p = FreeSwitchPeer(password=PASSWORD)
    p.start()
    yield p
    p.stop()


def _settings(peer, **kw) -> InboundSettings:
    base = dict(
        port=peer.port,
        password=PASSWORD,
        connect_timeout=2.0,
        command_timeout=2.0,
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    base.update(kw)
    return InboundSettings(**base)


@pytest.fixture
def conn(peer):
    c = InboundConnection(_settings(peer))
    c.start()
    assert c.wait_connected(5)
    yield c
    c.stop()


def test_auth_subscribe_and_api(peer, conn):
    assert conn.state == ConnState.CONNECTED
    auth = peer.commands.wait_for("auth ")
    assert auth.line == f"auth {PASSWORD}"
    sub = peer.commands.wait_for("event plain")
    assert "BACKGROUND_JOB" in sub.line.split()
    result = conn.api("status")
    assert result.ok and "is ready" in result.body
    missing = conn.api(commands.uuid_kill("00000000-0000-0000-0000-000000000000"))
    assert not missing.ok and missing.text == "-ERR No such channel!"
    unknown = conn.api("nosuchcmd")
    assert unknown.text == "-ERR nosuchcmd Command not found!"


def test_wrong_password_never_connects(peer):
    c = InboundConnection(_settings(peer, password="wrong"))
    c.start()
    try:
        assert not c.wait_connected(0.5)
        peer.commands.wait_for("auth wrong")
        assert c.state != ConnState.CONNECTED
        assert "auth refused: -ERR invalid" in c.last_error or "closed" in c.last_error
    finally:
        c.stop()
    assert c.state == ConnState.STOPPED


def test_acl_rejection_is_reported(peer):
    peer.reject_connections = True
    c = InboundConnection(_settings(peer))
    states = []
    seen = gevent.event.Event()

    def listener(state, reason):
        states.append((state, reason))
        if "refused" in reason:
            seen.set()

    c.add_state_listener(listener)
    c.start()
    try:
        assert seen.wait(5), states
        assert not c.wait_connected(0)
    finally:
        c.stop()


def test_bgapi_originate_returns_background_job_result(peer, conn):
    uuid = "f0e1d2c3-b4a5-4968-8776-655443322110"
    cmd = commands.originate(
        commands.gateway_dialstring("byo_trunk", "15557654321"),
        uuid=uuid,
        variables={"ignore_early_media": "true"},
    )
    answered = gevent.event.AsyncResult()
    conn.add_handler("CHANNEL_ANSWER", answered.set)
    result = conn.bgapi(cmd, timeout=5)
    assert result.ok and result.value == uuid
    assert answered.get(timeout=5).unique_id == uuid
    sent = peer.commands.wait_for("bgapi originate")
    assert sent.header("Job-UUID")
    assert conn.api(commands.uuid_exists(uuid)).text == "true"


def test_bgapi_busy_and_no_answer(peer, conn):
    peer.scenarios["15550000001"] = CallScenario(outcome="busy")
    peer.scenarios["15550000002"] = CallScenario(outcome="no_answer")
    peer.scenarios["15550000003"] = CallScenario(outcome="failure", cause="GATEWAY_DOWN")
    hangups = []
    done = gevent.event.Event()

    def on_complete(ev):
        hangups.append(ev.get("Hangup-Cause"))
        if len(hangups) == 3:
            done.set()

    conn.add_handler("CHANNEL_HANGUP_COMPLETE", on_complete)
    results = [
        conn.bgapi(
            commands.originate(
                commands.gateway_dialstring("gw", n), uuid=commands.validate_uuid(u)
            ),
            timeout=5,
        )
        for n, u in [
            ("15550000001", "11111111-1111-4111-8111-111111111111"),
            ("15550000002", "22222222-2222-4222-8222-222222222222"),
            ("15550000003", "33333333-3333-4333-8333-333333333333"),
        ]
    ]
    assert [r.text for r in results] == ["-ERR USER_BUSY", "-ERR NO_ANSWER", "-ERR GATEWAY_DOWN"]
    assert done.wait(5)
    assert hangups == ["USER_BUSY", "NO_ANSWER", "GATEWAY_DOWN"]


def test_handler_exception_is_contained_and_star_fallback(peer, conn):
    got = gevent.event.AsyncResult()

    def broken(ev):
        raise RuntimeError("handler bug")

    conn.add_handler("CHANNEL_CREATE", broken)
    conn.add_handler("*", lambda ev: got.set(ev) if ev.name == "CHANNEL_ANSWER" else None)
    uuid = "44444444-4444-4444-8444-444444444444"
    conn.bgapi(
        commands.originate(commands.gateway_dialstring("gw", "15551112222"), uuid=uuid), timeout=5
    )
    assert got.get(timeout=5).unique_id == uuid  # dispatch survived the broken handler
    assert conn.api("status").ok


def test_peer_that_never_answers_times_out(peer, conn):
    peer.switch.stall("api uuid_answer")
    with pytest.raises(CommandTimeout):
        conn.api(commands.uuid_answer("55555555-5555-4555-8555-555555555555"), timeout=0.3)


def test_peer_drop_fails_pending_waiters_and_reconnects(peer, conn):
    peer.switch.stall("api uuid_answer")
    peer.scenarios["15559999999"] = CallScenario(outcome="answer", gate=gevent.event.Event())
    results = {}

    def pending_api():
        try:
            conn.api(commands.uuid_answer("55555555-5555-4555-8555-555555555555"), timeout=10)
        except ConnectionLost as exc:
            results["api"] = exc

    def pending_job():
        try:
            conn.bgapi(
                commands.originate(
                    commands.gateway_dialstring("gw", "15559999999"),
                    uuid="66666666-6666-4666-8666-666666666666",
                ),
                timeout=10,
            )
        except ConnectionLost as exc:
            results["job"] = exc

    g2 = gevent.spawn(pending_job)  # accepted at once, its BACKGROUND_JOB waits for the gate
    peer.commands.wait_for("bgapi originate")
    g1 = gevent.spawn(pending_api)  # never answered
    peer.commands.wait_for("api uuid_answer")
    peer.drop_connections()
    peer.switch.release_stalls()
    gevent.joinall([g1, g2], timeout=5)
    assert isinstance(results.get("api"), ConnectionLost)
    assert isinstance(results.get("job"), ConnectionLost)
    # the supervisor reconnects with backoff
    assert peer.wait_inbound_connections(1, timeout=5)
    assert conn.wait_connected(5)
    assert conn.api("status").ok
    peer.scenarios["15559999999"].gate.set()
