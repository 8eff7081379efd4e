"""Inbound calls through the outbound socket, end to end against the fake FreeSWITCH."""

from __future__ import annotations

import pytest
from test_calls_support import WAIT, make_phone_number, run_harness


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_harness(settings, database, api_key)


def test_inbound_call_answered_then_caller_hangs_up(harness, database):
    phone = make_phone_number(database, "+15557654321")
    ready = harness.client.get("/ready").get_json()
    assert ready["checks"]["freeswitch"] == {"ok": True, "detail": "inbound ESL connected"}
    leg = harness.place_call(caller="+15551230001", destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    assert harness.peer.commands.wait_for(
        lambda c: c.line.startswith("api uuid_audio_fork") or "uuid_audio_fork" in c.line, WAIT
    )
    assert session.wait_until(lambda s: s.fork_connected, WAIT)
    leg.hangup("NORMAL_CLEARING")
    harness.wait_ended(session)
    row = harness.row(session.call_id)
    assert row.status == "ended"
    assert row.ended_reason == "customer-ended-call"
    assert row.type == "inboundPhoneCall"
    assert row.phone_number_id == phone.id
    assert row.assistant_id == phone.assistant_id
    assert row.customer_number == "+15551230001"
    assert row.started_at is not None and row.ended_at is not None
    assert row.ended_at >= row.started_at
    assert row.data["freeswitch"]["billsec"] is not None
    kinds = [e.kind for e in harness.events(session.call_id)]
    assert "channel.answer" in kinds and "channel.hangup" in kinds
    body = harness.client.get(f"/call/{session.call_id}").get_json()
    assert body["status"] == "ended" and body["endedReason"] == "customer-ended-call"
    assert body["monitor"]["controlUrl"].endswith(f"/call/{session.call_id}/control")
    assert leg.wait_closed(WAIT)


def test_unknown_number_rejected_with_configured_cause(harness, database):
    make_phone_number(database, "+15557654321")
    leg = harness.place_call(destination="15550000000")
    cmd = harness.peer.commands.wait_for(lambda c: c.header("hangup-cause") is not None, WAIT)
    assert cmd.header("hangup-cause") == "UNALLOCATED_NUMBER"
    assert leg.wait_closed(WAIT)
    assert leg.runner.channel.hangup_cause == "UNALLOCATED_NUMBER"
    assert harness.registry.counters["inbound_rejected_unknown_number"] == 1
    from esl_controller.db.models import Call

    with database.connection_context():
        assert Call.select().count() == 0


def test_socket_dropped_mid_call_ends_with_clear_reason(harness, database):
    make_phone_number(database, "+15557654321")
    leg = harness.place_call(destination="+15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    leg.drop()
    harness.wait_ended(session)
    row = harness.row(session.call_id)
    assert row.ended_reason == "phone-call-provider-closed-websocket"
    assert "dropped" in row.data["endedMessage"]
    # the channel itself was still up: it is killed over the inbound connection
    assert harness.peer.commands.wait_for(lambda c: c.line.startswith("api uuid_kill"), WAIT)
    assert leg.runner.gone.wait(WAIT)


def test_freeswitch_never_answers_the_answer_command(harness, database):
    make_phone_number(database, "+15557654321")
    harness.peer.switch.stall("sendmsg")
    try:
        leg = harness.place_call(destination="15557654321")
        session = harness.session_for_channel(leg.uuid)
        harness.wait_ended(session)
        row = harness.row(session.call_id)
        assert row.ended_reason == "call.ringing.error-sip-inbound-call-failed-to-connect"
        assert row.data["endedMessage"]
        assert row.started_at is None
        # the hangup went out over the inbound connection once the socket stopped answering
        assert harness.peer.commands.wait_for(lambda c: c.line.startswith("api uuid_kill"), WAIT)
        assert leg.runner.gone.wait(WAIT)
    finally:
        harness.peer.switch.release_stalls()
    assert leg.wait_closed(WAIT)


class AssistantServer:
    """A customer's server on loopback answering assistant-request with a chosen behaviour."""

    def __init__(self, mode: str, answer=None) -> None:
        import json

        import gevent.event
        from gevent.pywsgi import WSGIServer

        self.mode, self.answer = mode, answer
        self.requests: list = []
        self.release = gevent.event.Event()

        def app(environ, start_response):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            self.requests.append(json.loads(environ["wsgi.input"].read(length)))
            if self.mode == "hang":
                self.release.wait(timeout=10)
            if self.mode == "http-500":
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
                return [b"boom"]
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(self.answer).encode()]

        self.server = WSGIServer(("127.0.0.1", 0), app, log=None)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/vapi"

    def close(self) -> None:
        self.release.set()
        self.server.stop(timeout=2)


@pytest.mark.parametrize(
    "mode,answer,reason",
    [
        ("ok", None, None),
        ("hang", None, "assistant-request-failed"),
        ("http-500", None, "assistant-request-failed"),
        ("json", {"error": "no agents on duty"}, "assistant-request-returned-error"),
        ("json", {"assistant": "not an object"}, "assistant-request-returned-invalid-assistant"),
        (
            "json",
            {"assistantId": "6b0e8d4c-3a9b-4f1e-9c2d-1a2b3c4d5e6f"},
            "assistant-request-returned-invalid-assistant",
        ),
        ("json", {}, "assistant-request-returned-no-assistant"),
    ],
)
def test_assistant_request(harness, database, mode, answer, reason):
    if mode == "ok":
        answer = {"assistant": {"name": "from-server", "maxDurationSeconds": 120}}
    server = AssistantServer(mode, answer)
    try:
        make_phone_number(database, "+15557654321", assistant=False, server_url=server.url)
        leg = harness.place_call(caller="+15551230001", destination="15557654321")
        session = harness.session_for_channel(leg.uuid)
        if reason is None:
            harness.wait_status(session, "in-progress")
            row = harness.row(session.call_id)
            assert row.data["assistant"]["name"] == "from-server"
            assert session.state.config.max_duration_seconds == 120
            leg.hangup()
            harness.wait_ended(session)
        else:
            harness.wait_ended(session)
            row = harness.row(session.call_id)
            assert row.ended_reason == reason
            assert row.started_at is None
            assert leg.runner.channel.hangup_cause == "CALL_REJECTED"
        message = server.requests[0]["message"]
        assert message["type"] == "assistant-request"
        assert message["call"]["id"] == session.call_id
        assert message["customer"]["number"] == "+15551230001"
    finally:
        server.close()


def test_no_assistant_and_no_server(harness, database):
    make_phone_number(database, "+15557654321", assistant=False)
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_ended(session)
    assert harness.row(session.call_id).ended_reason == (
        "call-start-error-neither-assistant-nor-server-set"
    )


def test_shutdown_ends_live_calls(harness, database):
    make_phone_number(database, "+15557654321")
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    harness.controller.stop(timeout=5)
    assert session.done.is_set()
    row = harness.row(session.call_id)
    assert row.status == "ended" and row.ended_reason == "worker-shutdown"
    assert leg.runner.gone.wait(WAIT)
    assert leg.runner.channel.hangup_cause == "SYSTEM_SHUTDOWN"


def test_failed_database_write_is_retried(harness, database, monkeypatch):
    from esl_controller.calls import persist

    make_phone_number(database, "+15557654321")
    real, failures = persist.write, []

    def flaky(call_id, statuses, events):
        statuses = list(statuses)
        if any(s.status == "in-progress" for s in statuses) and not failures:
            failures.append(call_id)
            raise RuntimeError("database unavailable")
        return real(call_id, statuses, events)

    monkeypatch.setattr(persist, "write", flaky)
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    leg.hangup()
    harness.wait_ended(session)
    assert failures == [session.call_id]
    assert session.counters["db_write_failures"] == 1
    row = harness.row(session.call_id)
    assert row.status == "ended" and row.started_at is not None
    kinds = [e.kind for e in harness.events(session.call_id)]
    assert kinds.count("channel.answer") == 1
