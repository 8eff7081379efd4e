"""Live control (POST /call/:id/control) on real calls through the fake FreeSWITCH."""

from __future__ import annotations

import uuid

import pytest
from test_calls_support import WAIT, make_phone_number, run_harness

from esl_controller.calls.control import AddMessageCommand, ChannelControlCommand, SayCommand
from esl_controller.pipeline.ports import PipelineNotice


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_harness(settings, database, api_key)


class FakePipeline:
    def __init__(self, session) -> None:
        self.session = session
        self.commands: list = []
        self.stopped = False

    def start(self) -> None:
        self.session.notify(PipelineNotice("ready"))

    def feed(self, pcm, at) -> None:
        pass

    def control(self, command) -> None:
        self.commands.append(command)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped = True


def live_call(harness, database):
    make_phone_number(database)
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    return leg, session


def control(harness, session, body):
    return harness.client.post(f"/call/{session.call_id}/control", json=body)


def test_say_and_add_message_queued_until_pipeline_ready(harness, database):
    leg, session = live_call(harness, database)
    resp = control(harness, session, {"type": "say", "content": "Hello there"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "queued"
    resp = control(
        harness, session, {"type": "add-message", "message": {"role": "system", "content": "x"}}
    )
    assert resp.get_json()["status"] == "queued"
    assert len(session.state.queued) == 2
    pipeline = FakePipeline(session)
    session.attach_pipeline(pipeline)
    assert session.wait_until(lambda s: s.pipeline_ready, WAIT)
    assert pipeline.commands[:2] == [
        SayCommand("Hello there"),
        AddMessageCommand("system", "x"),
    ]
    resp = control(
        harness, session, {"type": "say", "content": "Stop", "interruptAssistantEnabled": True}
    )
    assert resp.get_json()["status"] == "accepted"
    assert harness.peer.commands.wait_for(lambda c: "uuid_break" in c.line, WAIT)
    resp = control(harness, session, {"type": "control", "control": "mute-assistant"})
    assert resp.status_code == 200
    assert pipeline.commands[-1] == ChannelControlCommand("mute-assistant")
    session.notify(
        PipelineNotice("message", {"role": "bot", "message": "Hi", "secondsFromStart": 1})
    )
    session.notify(PipelineNotice("transcript", {"role": "user", "transcript": "hey"}))
    session.notify(PipelineNotice("end-call", {"reason": "assistant-said-end-call-phrase"}))
    harness.wait_ended(session)
    assert harness.row(session.call_id).ended_reason == "assistant-said-end-call-phrase"
    from esl_controller.db.models import CallMessage

    with database.connection_context():
        assert [m.message for m in CallMessage.select()] == ["Hi"]
    kinds = [e.kind for e in harness.events(session.call_id)]
    assert "control.say" in kinds and "control.add-message" in kinds
    assert "pipeline.transcript" in kinds
    assert pipeline.stopped or session.pipeline is None


def test_dtmf_hold_and_end_call_reach_freeswitch(harness, database):
    leg, session = live_call(harness, database)
    assert control(harness, session, {"type": "dtmf", "digits": "12#"}).status_code == 200
    cmd = harness.peer.commands.wait_for(lambda c: "uuid_send_dtmf" in c.line, WAIT)
    assert cmd.line.endswith(f"uuid_send_dtmf {leg.uuid} 12#")
    assert control(harness, session, {"type": "hold"}).status_code == 200
    assert harness.peer.commands.wait_for(lambda c: f"uuid_hold {leg.uuid}" in c.line, WAIT)
    assert control(harness, session, {"type": "end-call"}).status_code == 200
    cmd = harness.peer.commands.wait_for(lambda c: "uuid_kill" in c.line, WAIT)
    assert leg.uuid in cmd.line
    harness.wait_ended(session)
    assert harness.row(session.call_id).ended_reason == "manually-canceled"
    resp = control(harness, session, {"type": "say", "content": "too late"})
    assert resp.status_code == 400
    assert "ended" in resp.get_json()["message"]
    kinds = [e.kind for e in harness.events(session.call_id)]
    assert {"control.dtmf", "control.hold", "control.end-call"} <= set(kinds)


def test_transfer_to_number_uses_uuid_transfer_through_the_gateway(harness, database):
    leg, session = live_call(harness, database)
    body = {"type": "transfer", "destination": {"type": "number", "number": "+15559998888"}}
    assert control(harness, session, body).status_code == 200
    setvar = harness.peer.commands.wait_for(lambda c: "uuid_setvar" in c.line, WAIT)
    assert "esl_transfer_gateway gw_" in setvar.line
    cmd = harness.peer.commands.wait_for(lambda c: "uuid_transfer" in c.line, WAIT)
    assert cmd.line.endswith(f"uuid_transfer {leg.uuid} 15559998888 XML esl_transfer")
    harness.wait_ended(session)
    row = harness.row(session.call_id)
    assert row.ended_reason == "assistant-forwarded-call"
    assert row.data["destination"]["number"] == "+15559998888"


def test_transfer_to_sip_uri_uses_deflect(harness, database):
    leg, session = live_call(harness, database)
    body = {"type": "transfer", "destination": {"type": "sip", "sipUri": "sip:desk@example.com"}}
    assert control(harness, session, body).status_code == 200
    cmd = harness.peer.commands.wait_for(lambda c: "uuid_deflect" in c.line, WAIT)
    assert cmd.line.endswith(f"uuid_deflect {leg.uuid} sip:desk@example.com")
    harness.wait_ended(session)
    assert harness.row(session.call_id).ended_reason == "assistant-forwarded-call"


@pytest.mark.parametrize(
    "body",
    [
        {"type": "dtmf", "digits": "1; uuid_kill all"},
        {"type": "transfer", "destination": {"type": "number", "number": "+1555 &park()"}},
        {"type": "transfer", "destination": {"type": "sip", "sipUri": "sip:a@b' x"}},
        {"type": "nope"},
        {"content": "no type"},
    ],
)
def test_bad_control_bodies(harness, database, body):
    leg, session = live_call(harness, database)
    before = len(harness.peer.commands.lines())
    resp = control(harness, session, body)
    assert resp.status_code == 400, resp.get_json()
    assert session.is_live
    new = harness.peer.commands.lines()[before:]
    assert not [c for c in new if "uuid_" in c and "audio_fork" not in c]


def test_control_unknown_call_and_other_node(harness, database):
    resp = harness.client.post(f"/call/{uuid.uuid4()}/control", json={"type": "end-call"})
    assert resp.status_code == 404
    from esl_controller.db.models import Call

    with database.connection_context():
        row = Call.create(
            org_id=harness.settings.org_id,
            type="inboundPhoneCall",
            status="in-progress",
            node_id="node-9",
        )
    resp = harness.client.post(f"/call/{row.id}/control", json={"type": "end-call"})
    assert resp.status_code == 409
    assert "node-9" in resp.get_json()["message"]
