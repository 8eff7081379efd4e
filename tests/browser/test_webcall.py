"""The web-call page in headless Chromium with a fake microphone that plays real speech.

The page (served at the call's ``webCallUrl``, ``/call/<id>/web?token=...``) joins the web-call WebSocket
named by the stored call's ``transport.websocketCallUrl``. Here that socket is the real transport
(``esl_controller.media.webcall.WebCallServer``) running the real pipeline: the embedded STT, the scripted
model and the embedded espeak-ng voice. The call service does not run this transport yet, so the test
wires it itself (its ``on_connect`` checks the per-call token) and checks what the transport delivered;
storing the transcript on the call is the call service's part and is checked only once it is wired.
"""

from __future__ import annotations

import re
import uuid

import gevent
import pytest
from browser_support import ASSISTANT, MODEL, shot

from esl_controller.db.fields import utcnow


@pytest.fixture(scope="module")
def transport(stt):
    from esl_controller.media.webcall import PipelineWebCallSession, WebCallServer
    from esl_controller.pipeline.conversation import Conversation
    from esl_controller.pipeline.providers import registry

    state = {"tokens": {}, "sessions": {}, "notices": []}

    def factory(port):
        return Conversation(
            ASSISTANT,
            port,
            stt=stt,
            llm=registry.build_model(MODEL),
            tts=registry.build_synthesizer(None),
            call_id=port.call_id,
        )

    def on_connect(call_id, token):
        if not token or state["tokens"].get(call_id) != token:
            return None
        session = PipelineWebCallSession(factory, state["notices"].append)
        state["sessions"][call_id] = session
        return session

    server = WebCallServer("127.0.0.1", 0, on_connect)
    server.start()
    server.state = state
    yield server
    server.stop(timeout=2)


def new_web_call(served, transport, status="in-progress", ended_reason=None):
    from esl_controller.db import database
    from esl_controller.db.models import Call

    call_id = str(uuid.uuid4())
    token = uuid.uuid4().hex
    host, port = transport.address
    transport.state["tokens"][call_id] = token
    with database.connection_context():
        Call.create(
            id=call_id,
            org_id=served.settings.org_id,
            type="webCall",
            status=status,
            ended_reason=ended_reason,
            created_at=utcnow(),
            updated_at=utcnow(),
            data={
                "webCallUrl": f"{served.url}/call/{call_id}/web",
                "transport": {
                    "provider": "vapi.websocket",
                    "websocketCallUrl": f"ws://{host}:{port}/call/{call_id}/ws",
                },
            },
        )
    return call_id, token


def test_talk_to_the_assistant_and_hang_up(page, served, transport):
    call_id, token = new_web_call(served, transport)
    page.goto(f"{served.url}/call/{call_id}/web?token={token}")
    shot(page, "10-webcall-idle")
    page.get_by_role("button", name="Start call").click()
    main = page.locator("main")
    assistant_lines = page.locator("#transcript li.assistant")
    user_lines = page.locator("#transcript li.user")
    # the first message, then the caller's words from the fake microphone, then the scripted answer
    assistant_lines.filter(has_text="Harbour Bistro").wait_for(timeout=30_000)
    user_lines.first.wait_for(timeout=45_000)
    heard = user_lines.first.inner_text().lower()
    assert re.search(r"table|book|people", heard), heard
    assistant_lines.filter(has_text="how many people").wait_for(timeout=30_000)
    stats = page.evaluate("() => window.webCallStats()")
    assert stats["bytesOut"] > 16000 * 2 and stats["bytesIn"] > 16000  # audio went both ways
    shot(page, "11-webcall-talking")

    page.get_by_role("button", name="Mute").click()
    assert page.get_by_role("button", name="Unmute").get_attribute("aria-pressed") == "true"
    page.get_by_role("button", name="Hang up").click()
    page.wait_for_function("() => document.getElementById('main').dataset.state === 'ended'")
    assert "customer-ended-call" in main.inner_text()
    session = transport.state["sessions"][call_id]
    with gevent.Timeout(10):
        session.closed.wait()
    roles = {
        n.data.get("role")
        for n in transport.state["notices"]
        if n.kind == "transcript" and n.data.get("transcriptType") == "final"
    }
    assert {"user", "assistant"} <= roles
    shot(page, "12-webcall-ended")
    assert page.errors == []


def test_wrong_token_and_ended_call_and_denied_microphone(page, served, transport):
    call_id, _token = new_web_call(served, transport)
    page.goto(f"{served.url}/dashboard/webcall/{call_id}?token=wrong")
    page.get_by_role("button", name="Start call").click()
    page.get_by_text("Could not connect to the call.").wait_for()
    assert call_id not in transport.state["sessions"]

    ended_id, token = new_web_call(
        served, transport, status="ended", ended_reason="assistant-ended-call"
    )
    page.goto(f"{served.url}/call/{ended_id}/web?token={token}")
    page.get_by_text(re.compile("The call has ended: the assistant ended the call")).wait_for()
    assert page.get_by_role("button", name="Start call").is_disabled()

    resp = page.goto(f"{served.url}/call/{uuid.uuid4()}/web?token=x")
    assert resp.status == 404
    page.get_by_text("This web call does not exist.").wait_for()

    # the browser refuses the microphone (here: getUserMedia rejects as it does when the user says no)
    page.add_init_script(
        "navigator.mediaDevices.getUserMedia = () =>"
        " Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));"
    )
    page.goto(f"{served.url}/call/{call_id}/web?token=whatever")
    page.get_by_role("button", name="Start call").click()
    page.get_by_text(re.compile("Microphone access was denied")).wait_for()
    shot(page, "13-webcall-mic-denied")
    # the only console error is Chromium's own line about the refused handshake
    assert [e for e in page.errors if "Unexpected response code: 403" not in e] == []
