"""Inbound calls through the outbound socket, end to end against the fake FreeSWITCH."""

from __future__ import annotations

import pytest
from test_calls_support import WAIT, make_phone_number, run_harness


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_harness(settings, database, api_key)


def test_inbound_call_answered_then_caller_hangs_up(harness, database):
    phone = make_phone_number(database, "+15557654321")
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
