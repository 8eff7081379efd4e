"""Outbound calls (POST /call/phone, /call) and web calls, end to end against the fake FreeSWITCH."""

from __future__ import annotations

import gevent.event
import pytest
from test_calls_support import WAIT, Harness, make_phone_number, run_harness

from esl_controller.calls import ended_reason as er
from esl_controller.testing.switch import CallScenario

CUSTOMER = "+15550001111"


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_harness(settings, database, api_key)


def _post(harness, phone, number=CUSTOMER, path="/call/phone", **extra):
    body = {
        "assistantId": phone.assistant_id,
        "phoneNumberId": phone.id,
        "customer": {"number": number},
        **extra,
    }
    return harness.client.post(path, json=body)


def test_outbound_answered_then_customer_hangs_up(harness, database):
    phone = make_phone_number(database)
    gate = gevent.event.Event()
    harness.peer.scenarios[CUSTOMER] = CallScenario(outcome="answer", gate=gate)
    resp = _post(harness, phone)
    assert resp.status_code == 201, resp.get_json()
    call = resp.get_json()
    assert call["status"] == "queued" and call["type"] == "outboundPhoneCall"
    assert call["monitor"]["controlUrl"].endswith(f"/call/{call['id']}/control")
    session = harness.session(call["id"])
    cmd = harness.peer.commands.wait_for("bgapi originate", WAIT)
    gw = "gw_" + phone.credential_id.replace("-", "")
    assert f"sofia/gateway/{gw}/{CUSTOMER}" in cmd.line
    assert f"origination_uuid={session.channel_uuid}" in cmd.line
    assert "ignore_early_media=true" in cmd.line
    assert f"&socket(127.0.0.1:{harness.socket_port} async full)" in cmd.line
    harness.wait_status(session, "ringing")
    gate.set()
    harness.wait_status(session, "in-progress")
    leg = harness.peer.wait_leg(WAIT)
    assert session.wait_until(lambda s: session.socket is not None, WAIT)
    leg.hangup("NORMAL_CLEARING")
    harness.wait_ended(session)
    row = harness.row(call["id"])
    assert row.ended_reason == "customer-ended-call"
    assert row.started_at is not None and row.ended_at is not None


@pytest.mark.parametrize(
    "outcome,reason",
    [
        ("busy", "customer-busy"),
        ("no_answer", "customer-did-not-answer"),
        ("failure", er.originate_failure_reason("NORMAL_TEMPORARY_FAILURE", None)),
        ("reject", er.originate_failure_reason("CALL_REJECTED", None)),
    ],
)
def test_outbound_not_answered(harness, database, outcome, reason):
    phone = make_phone_number(database)
    harness.peer.scenarios[CUSTOMER] = CallScenario(outcome=outcome)
    call = _post(harness, phone).get_json()
    session = harness.session(call["id"])
    harness.wait_ended(session)
    row = harness.row(call["id"])
    assert row.status == "ended"
    assert row.ended_reason == reason
    assert row.started_at is None


def test_outbound_to_sip_uri(harness, database):
    phone = make_phone_number(database)
    body = {
        "assistantId": phone.assistant_id,
        "phoneNumberId": phone.id,
        "customer": {"sipUri": "sip:bob@example.com"},
    }
    resp = harness.client.post("/call", json=body)
    assert resp.status_code == 201
    cmd = harness.peer.commands.wait_for("bgapi originate", WAIT)
    assert "sofia/external/bob@example.com" in cmd.line


@pytest.mark.parametrize(
    "mutate,fragment",
    [
        (lambda b: b.update(assistantId="6b0e8d4c-3a9b-4f1e-9c2d-1a2b3c4d5e6f"), "assistant"),
        (lambda b: b.update(phoneNumberId="6b0e8d4c-3a9b-4f1e-9c2d-1a2b3c4d5e6f"), "not found"),
        (lambda b: b.update(customer={"number": "5550001111"}), "E.164"),
        (lambda b: b.update(customer={"number": "+1555 &uuid_kill"}), "E.164"),
        (lambda b: b.update(customer={"number": "+15550001111,x=1"}), "E.164"),
        (lambda b: b.update(customer={"sipUri": "sip:bob@example.com' &park()"}), "customer"),
        (lambda b: b.update(customer={"sipUri": "sip:a@b}{x=1"}), "customer"),
        (lambda b: b.update(customer={}), "customer"),
        (lambda b: b.update(surprise=1), "surprise"),
    ],
)
def test_outbound_bad_bodies(harness, database, mutate, fragment):
    phone = make_phone_number(database)
    body = {
        "assistantId": phone.assistant_id,
        "phoneNumberId": phone.id,
        "customer": {"number": CUSTOMER},
    }
    mutate(body)
    resp = harness.client.post("/call/phone", json=body)
    assert resp.status_code == 400, resp.get_json()
    assert fragment in str(resp.get_json()["message"])
    assert harness.peer.commands.find("bgapi") is None


def test_missing_assistant(harness, database):
    phone = make_phone_number(database, assistant=False)
    resp = harness.client.post(
        "/call/phone", json={"phoneNumberId": phone.id, "customer": {"number": CUSTOMER}}
    )
    assert resp.status_code == 400
    assert "assistantId or assistant is required" in resp.get_json()["message"]


def test_phone_number_without_credential(harness, database):
    phone = make_phone_number(database, credential=False)
    resp = _post(harness, phone)
    assert resp.status_code == 400
    assert "credential" in resp.get_json()["message"]


def test_batch_and_idempotency(harness, database):
    phone = make_phone_number(database)
    body = {
        "assistantId": phone.assistant_id,
        "phoneNumberId": phone.id,
        "customers": [{"number": CUSTOMER}, {"number": "nope"}],
    }
    resp = harness.client.post("/call", json=body, headers={"Idempotency-Key": "k1"})
    assert resp.status_code == 201
    data = resp.get_json()
    assert len(data["results"]) == 1 and len(data["errors"]) == 1
    again = harness.client.post("/call", json=body, headers={"Idempotency-Key": "k1"})
    assert again.get_json()["results"][0]["id"] == data["results"][0]["id"]
    harness.peer.commands.wait_for("bgapi originate", WAIT)
    assert len([c for c in harness.peer.commands.lines() if c.startswith("bgapi originate")]) == 1


def test_freeswitch_not_configured_or_not_connected(settings, database, api_key):
    h = Harness(settings, database, api_key, freeswitch=False)
    try:
        phone = make_phone_number(database)
        resp = _post(h, phone)
        assert resp.status_code == 503
        assert "not configured" in resp.get_json()["message"]
    finally:
        h.close()
    h = Harness(settings, database, api_key)
    try:
        down = gevent.event.Event()
        h.controller.inbound.add_state_listener(
            lambda state, reason: down.set() if state.value != "connected" else None
        )
        h.peer.reject_connections = True
        h.peer.drop_connections()
        assert down.wait(WAIT)
        resp = _post(h, phone)
        assert resp.status_code == 503
        assert "not connected" in resp.get_json()["message"]
        assert h.client.get("/ready").status_code == 503
    finally:
        h.close()


def test_web_call(harness, database):
    phone = make_phone_number(database)
    resp = harness.client.post("/call/web", json={"assistantId": phone.assistant_id})
    assert resp.status_code == 201
    call = resp.get_json()
    assert call["type"] == "webCall" and call["status"] == "queued"
    assert f"/call/{call['id']}/web?token=" in call["webCallUrl"]
    assert call["transport"]["provider"] == "vapi.websocket"
    assert call["transport"]["websocketCallUrl"].startswith("ws")
    session = harness.session(call["id"])
    closed = gevent.event.Event()
    session.attach_transport(closed.set)
    session.web_connected()
    harness.wait_status(session, "in-progress")
    resp = harness.client.post(f"/call/{call['id']}/control", json={"type": "end-call"})
    assert resp.status_code == 200
    harness.wait_ended(session)
    assert closed.wait(WAIT)
    assert harness.row(call["id"]).ended_reason == "manually-canceled"
