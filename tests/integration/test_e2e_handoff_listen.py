"""Issue 5 end to end on a live fork call: a mid-call handoff to another stored assistant (by the control
API and by the handoff tool) keeps the conversation and answers with the new assistant's rules; a live
listener on ``monitor.listenUrl`` hears the caller left and the assistant right; a slow listener is dropped
without hurting the call. Real controller, fake FreeSWITCH, fork look-alike client, real speech."""

from __future__ import annotations

import audioop
from urllib.parse import urlparse

import pytest
from test_calls_support import WAIT, make_phone_number, run_pipeline_harness
from test_e2e_calls import (
    CALLER,
    FIRST,
    MODEL,
    fork_client,
    messages,
    next_json,
    send_speech,
    until,
)

from esl_controller.media.codecs import rms
from esl_controller.media.fork_client import ForkClient

ORG = "00000000-0000-4000-8000-000000000000"
SECOND_FIRST = "Billing desk, I have your notes."
SECOND_MODEL = {
    "provider": "custom-llm",
    "model": "scripted",
    "url": "scripted://",
    "rules": [{"keywords": ["table"], "reply": "Billing cannot book tables, sorry."}],
}


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_pipeline_harness(settings, database, api_key)


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


# ---------------------------------------------------------------------------------- live listen


class PacedCaller:
    """What mod_audio_fork does: one 20 ms caller frame every 20 ms (speech when queued, else silence)."""

    def __init__(self, client):
        import gevent

        self.client = client
        self.pending = bytearray()
        self.running = True
        self.greenlet = gevent.spawn(self._run)

    def say(self, text):
        from audio_fixtures import speech

        self.pending += speech(text, 16000)

    def _run(self):
        import time

        import gevent

        step, t = 0.02, time.monotonic()
        while self.running:
            frame = bytes(self.pending[:640]).ljust(640, b"\0")
            del self.pending[:640]
            self.client.send_audio(frame)
            t += step
            gevent.sleep(max(0.0, t - time.monotonic()))  # real-time pacing, not a synchronisation

    def stop(self):
        self.running = False
        self.greenlet.join(timeout=2)


def open_listener(url):
    parts = urlparse(url)
    client = ForkClient(parts.hostname, parts.port, f"{parts.path}?{parts.query}", subprotocol=None)
    return client.connect()


def test_live_listener_hears_both_sides_and_a_slow_one_is_dropped(harness, database, monkeypatch):
    import gevent
    from gevent.event import Event

    from esl_controller.media import listen
    from esl_controller.media.fork_client import ForkClosed

    phone = make_phone_number(database)
    setup_assistants(database, phone)
    # the second listener's connection does not drain (a stalled supervisor link)
    stalled, release = [], Event()
    write_loop = listen._ListenConnection._write_loop

    def maybe_stalled(self, listener):
        if stalled:
            release.wait(WAIT)
        stalled.append(listener)
        return write_loop(self, listener)

    monkeypatch.setattr(listen._ListenConnection, "_write_loop", maybe_stalled)

    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    client = fork_client(harness, session)
    caller = PacedCaller(client)
    try:
        call = harness.client.get(f"/call/{session.call_id}").get_json()
        url = (call.get("monitor") or {}).get("listenUrl") or listen.listen_url(
            harness.service.listen_ws_base, session.call_id
        )
        good = open_listener(url)
        start = good.recv_json(timeout=WAIT)
        assert start["type"] == "start" and start["channels"] == 2 and start["sampleRate"] == 16000
        until(lambda: len(stalled) == 1)
        slow = open_listener(url)
        frames = []

        def read():
            while True:
                try:
                    msg = good.recv(timeout=WAIT)
                except ForkClosed:
                    return
                if isinstance(msg, bytes):
                    frames.append(msg)

        reader = gevent.spawn(read)
        next_json(client, "playAudio")  # the first message
        caller.say(CALLER)
        reply_with(client, "how many people")
        # the stalled listener was dropped (1013) while the call went on
        until(lambda: listen.default_hub().listeners_dropped >= 1)
        release.set()
        with pytest.raises(ForkClosed) as closed:
            while True:
                slow.recv(timeout=WAIT)
        assert closed.value.code == 1013
        until(lambda: session.pipeline.port.playing())
        until(lambda: not session.pipeline.port.playing())
        assert session.state.status == "in-progress"
    finally:
        caller.stop()
    leg.hangup()
    harness.wait_ended(session)
    reader.join(timeout=WAIT)

    pcm = b"".join(frames)
    assert len(pcm) > 16000 * 4 * 3  # > 3 s of stereo
    left, right = audioop.tomono(pcm, 2, 1, 0), audioop.tomono(pcm, 2, 0, 1)
    step = 640 * 5  # 100 ms of mono
    windows = [
        (rms(left[i : i + step]), rms(right[i : i + step])) for i in range(0, len(left), step)
    ]
    assert any(lv > 300 and rv < lv / 4 for lv, rv in windows)  # the caller alone: left
    assert any(rv > 300 and lv < rv / 4 for lv, rv in windows)  # the assistant alone: right
