"""Issue 5 end to end on a live fork call: a mid-call handoff to another stored assistant (by the control
API and by the handoff tool) keeps the conversation and answers with the new assistant's rules; a live
listener on ``monitor.listenUrl`` hears the caller left and the assistant right; a slow listener is dropped
without hurting the call. Real controller, fake FreeSWITCH, fork look-alike client, real speech."""

from __future__ import annotations

import dataclasses

import pytest
from test_calls_support import make_phone_number, run_harness
from test_e2e_calls import (
    FIRST,
    MODEL,
    fork_client,
    messages,
    next_json,
    send_speech,
    until,
)

ORG = "00000000-0000-4000-8000-000000000000"
SECOND_FIRST = "Billing desk, I have your notes."
SECOND_MODEL = {
    "provider": "custom-llm",
    "model": "scripted",
    "url": "scripted://",
    "rules": [{"keywords": ["table"], "reply": "Billing cannot book tables, sorry."}],
}
CALLER = "Hello, I would like to book a table for two people tonight."


@pytest.fixture
def harness(settings, database, api_key, monkeypatch):
    from esl_controller.controller import Controller

    start = Controller.start

    def start_with_pipeline(self):  # the shared harness turns the voice pipeline off
        media = dataclasses.replace(self.settings.media, pipeline_enabled=True)
        self.settings = dataclasses.replace(self.settings, media=media)
        return start(self)

    monkeypatch.setattr(Controller, "start", start_with_pipeline)
    media = dataclasses.replace(settings.media, webcall_port=0, listen_port=0, warm_stt=False)
    yield from run_harness(dataclasses.replace(settings, media=media), database, api_key)


def setup_assistants(database, phone, model=MODEL):
    from esl_controller.db.models import Assistant

    with database.connection_context():
        Assistant.update(data={"name": "front", "model": model, "firstMessage": FIRST}).where(
            Assistant.id == phone.assistant_id
        ).execute()
        second = Assistant.create(
            org_id=ORG,
            name="billing",
            data={"name": "billing", "model": SECOND_MODEL, "firstMessage": SECOND_FIRST},
        )
    return second


def start_call(harness):
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    client = fork_client(harness, session)
    next_json(client, "playAudio")  # the first message
    until(lambda: not session.pipeline.port.playing())
    return leg, session, client


def reply_with(client, words, timeout=20):
    """The next playAudio whose text contains ``words``."""
    while True:
        msg = next_json(client, "playAudio", timeout=timeout)
        if words in (msg["data"].get("textContent") or ""):
            return msg


def test_handoff_by_control_keeps_history_and_switches_rules(harness, database):
    phone = make_phone_number(database)
    second = setup_assistants(database, phone)
    leg, session, client = start_call(harness)

    # the front assistant answers with its rules
    send_speech(client, CALLER)
    reply_with(client, "how many people")
    until(lambda: not session.pipeline.port.playing())

    resp = harness.client.post(
        f"/call/{session.call_id}/control",
        json={
            "type": "handoff",
            "destination": {"type": "assistant", "assistantName": "billing"},
        },
    )
    assert resp.status_code in (200, 202), resp.get_json()
    # the new assistant speaks its first message, then answers with its own rules
    reply_with(client, "Billing desk")
    until(lambda: not session.pipeline.port.playing())
    send_speech(client, CALLER)
    reply_with(client, "Billing cannot book tables")

    conv = session.pipeline.conversation

    # context carried over: the first exchange is still in the history the model sees
    def texts():
        return [m["content"] for m in conv.history.openai_messages()]

    until(lambda: any("Billing cannot" in t for t in texts()))
    assert any("how many people" in t for t in texts())
    until(lambda: harness.row(session.call_id).assistant_id == second.id)
    until(lambda: any(e.kind == "pipeline.handoff" for e in harness.events(session.call_id)))
    ev = [e for e in harness.events(session.call_id) if e.kind == "pipeline.handoff"][0]
    assert ev.data.get("status") == "completed" and ev.data.get("assistantName") == "billing"
    bots = [m for r, m in messages(harness, session.call_id) if r == "bot"]
    assert any("how many" in m for m in bots) and any("Billing" in m for m in bots)
    leg.hangup()
    harness.wait_ended(session)


def test_handoff_by_tool_and_unknown_assistant(harness, database):
    phone = make_phone_number(database)
    model = dict(MODEL)
    model["rules"] = [
        {
            "keywords": ["billing"],
            "reply": "Let me get billing.",
            "toolCall": {"name": "handoff", "arguments": {"destination": "billing"}},
        },
        *MODEL["rules"],
    ]
    model["tools"] = [
        {
            "type": "handoff",
            "destinations": [{"type": "assistant", "assistantName": "billing"}],
        }
    ]
    setup_assistants(database, phone, model)
    leg, session, client = start_call(harness)

    # an unknown assistant: reported, the call goes on with the same assistant
    resp = harness.client.post(
        f"/call/{session.call_id}/control",
        json={"type": "handoff", "destination": {"type": "assistant", "assistantName": "nobody"}},
    )
    assert resp.status_code in (200, 202)
    until(
        lambda: any(
            e.kind == "pipeline.handoff" and e.data.get("status") == "failed"
            for e in harness.events(session.call_id)
        )
    )
    send_speech(client, "I need to talk to billing please.")
    reply_with(client, "Billing desk")
    until(lambda: not session.pipeline.port.playing())
    send_speech(client, CALLER)
    reply_with(client, "Billing cannot book tables")
    leg.hangup()
    harness.wait_ended(session)
