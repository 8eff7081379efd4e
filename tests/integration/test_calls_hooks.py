"""FreeSWITCH HTTP hooks: /freeswitch/inbound, /freeswitch/events, /freeswitch/audio,
/internal/calls/<id>/audio."""

from __future__ import annotations

import uuid

import pytest
from audio_fixtures import frames, speech
from test_calls_support import WAIT, make_phone_number, run_harness

from esl_controller.testing.model import FakeChannel, new_uuid

SECRET = "hook-s3cret"


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_harness(settings, database, api_key, hook_secret=SECRET)


@pytest.fixture
def hook(harness):
    c = harness.app.test_client()
    c.environ_base["HTTP_X_HOOK_SECRET"] = SECRET
    return c


def fake_channel(harness, destination="15557654321"):
    ch = FakeChannel(
        uuid=new_uuid(),
        direction="inbound",
        caller_number="+15551230001",
        destination_number=destination,
    )
    runner = harness.peer.switch.new_channel(ch)
    runner.fire("CHANNEL_CREATE")
    return runner


def test_inbound_hook_then_events_hook(harness, database, hook):
    make_phone_number(database)
    runner = fake_channel(harness)
    resp = hook.post(
        "/freeswitch/inbound",
        json={"uuid": runner.uuid, "destination": "15557654321", "caller": "+15551230001"},
    )
    assert resp.status_code == 200, resp.get_json()
    answer = resp.get_json()
    assert answer["action"] == "park"
    session = harness.session(answer["callId"])
    assert harness.peer.commands.wait_for(f"api uuid_answer {runner.uuid}", WAIT)
    harness.wait_status(session, "in-progress")

    pcm = speech("Hello, I would like to book a table for two.", 16000)
    chunk = b"".join(frames(pcm, 16000)[:25])
    resp = hook.post(
        f"/internal/calls/{session.call_id}/audio",
        data=chunk,
        headers={"Content-Type": "audio/l16;rate=16000"},
    )
    assert resp.status_code == 202 and resp.get_json()["accepted"] is True
    resp = hook.post(
        f"/freeswitch/audio?callId={session.call_id}&rate=8000",
        data=chunk,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 202
    assert session.counters["audio_in"] == 2

    event = {
        "Event-Name": "CHANNEL_HANGUP_COMPLETE",
        "Core-UUID": str(uuid.uuid4()),
        "Event-Sequence": "77",
        "Unique-ID": runner.uuid,
        "Hangup-Cause": "NORMAL_CLEARING",
        "variable_sip_hangup_disposition": "recv_bye",
        "variable_billsec": "12",
    }
    resp = hook.post("/freeswitch/events", json=event)
    assert resp.status_code == 200 and resp.get_json()["routed"] is True
    harness.wait_ended(session)
    row = harness.row(session.call_id)
    assert row.ended_reason == "customer-ended-call"
    assert row.data["freeswitch"]["billsec"] == 12

    resp = hook.post(
        f"/internal/calls/{session.call_id}/audio",
        data=chunk,
        headers={"Content-Type": "audio/l16;rate=16000"},
    )
    assert resp.status_code == 409


def test_inbound_hook_unknown_number(harness, database, hook):
    make_phone_number(database)
    runner = fake_channel(harness, "15550000000")
    resp = hook.post(
        "/freeswitch/inbound", json={"uuid": runner.uuid, "destination": "15550000000"}
    )
    assert resp.status_code == 200
    assert resp.get_json() == {
        "action": "hangup",
        "cause": "UNALLOCATED_NUMBER",
        "message": "no phone number matches 15550000000",
    }


def test_events_for_unknown_channels_are_counted(harness, hook):
    body = {"Event-Name": "CHANNEL_ANSWER", "Unique-ID": str(uuid.uuid4())}
    resp = hook.post("/freeswitch/events", json=body)
    assert resp.status_code == 202 and resp.get_json()["ignored"] is True
    assert harness.registry.counters["events_unknown_channel"] >= 1
    assert hook.post("/freeswitch/events", json={"Unique-ID": "x"}).status_code == 400


def test_hooks_need_credentials(harness):
    anon = harness.app.test_client()
    assert anon.post("/freeswitch/events", json={"Event-Name": "X"}).status_code == 401
    anon.environ_base["HTTP_X_HOOK_SECRET"] = "wrong"
    assert anon.post("/freeswitch/events", json={"Event-Name": "X"}).status_code == 401


def test_audio_hook_validation(harness, database, hook):
    make_phone_number(database)
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    url = f"/internal/calls/{session.call_id}/audio"
    pcm = speech("Testing one two three.", 8000)
    ok = {"Content-Type": "audio/l16;rate=8000"}
    assert (
        hook.post(url, data=pcm[:3200], headers={"Content-Type": "text/plain"}).status_code == 415
    )
    bad_rate = {"Content-Type": "audio/l16;rate=44100"}
    assert hook.post(url, data=pcm[:3200], headers=bad_rate).status_code == 400
    assert hook.post(url, data=pcm[:3201], headers=ok).status_code == 400
    big = pcm * (harness.settings.calls.audio_chunk_max_bytes // len(pcm) + 1)
    assert hook.post(url, data=big, headers=ok).status_code == 413
    assert (
        hook.post(f"/internal/calls/{uuid.uuid4()}/audio", data=pcm[:3200], headers=ok).status_code
        == 404
    )
    # the queue is bounded: beyond it chunks are dropped and counted, never buffered
    size = harness.settings.calls.audio_queue_chunks
    answers = [
        hook.post(url, data=pcm[:3200], headers=ok).get_json()["accepted"] for _ in range(size + 3)
    ]
    assert answers.count(False) == 3
    assert session.counters["audio_dropped"] == 3
