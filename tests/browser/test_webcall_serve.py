"""The web-call page end to end through the real controller, in headless Chromium with a fake microphone
that plays real speech.

Nothing here is wired by the test: the app is served like ``esl-controller serve`` serves it, with the
``Controller`` running (web-call WebSocket server, per-call tokens, the voice pipeline built by
``calls.pipeline_factory``: embedded whisper STT, the assistant's scripted model, embedded espeak-ng voice).
The test creates an assistant and a web call through the REST API, opens the ``webCallUrl`` the API handed
out, talks, hangs up in the page, and reads the stored call back through ``GET /call/<id>``.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import gevent
import pytest
from browser_support import ASSISTANT, shot

ASSISTANT = {**ASSISTANT, "name": "Harbour Bistro (browser test)"}


@pytest.fixture(scope="module")
def assistant_id(controlled, stt) -> str:
    status, body = controlled.api("POST", "/assistant", ASSISTANT)
    assert status == 201, body
    return body["id"]


def new_web_call(controlled, assistant_id: str) -> dict:
    status, call = controlled.api("POST", "/call/web", {"assistantId": assistant_id})
    assert status == 201, call
    return call


def wait_call(controlled, call_id: str, pred, timeout: float = 15.0) -> dict:
    """Poll ``GET /call/<id>`` (bounded) until ``pred`` holds for the call the API returns."""
    deadline = time.monotonic() + timeout
    while True:
        status, call = controlled.api("GET", f"/call/{call_id}")
        assert status == 200, call
        if pred(call):
            return call
        assert time.monotonic() < deadline, f"call never reached the expected state: {call}"
        gevent.sleep(0.1)


def test_web_call_through_the_controller(page, controlled, assistant_id):
    call = new_web_call(controlled, assistant_id)
    call_id = call["id"]
    page_url = urlsplit(call["webCallUrl"])
    ws_url = urlsplit(call["transport"]["websocketCallUrl"])
    # the URLs the API hands out point at this process and the controller's web-call server
    assert f"{page_url.scheme}://{page_url.netloc}" == controlled.url
    assert page_url.path == f"/call/{call_id}/web"
    host, port = controlled.controller.webcall_server.address
    assert (ws_url.hostname, ws_url.port) == ("127.0.0.1", port)
    assert ws_url.path == f"/call/{call_id}/ws"
    token = parse_qs(page_url.query)["token"]
    assert token and token == parse_qs(ws_url.query)["token"]

    page.goto(call["webCallUrl"])
    shot(page, "20-webcall-serve-idle")
    page.get_by_role("button", name="Start call").click()
    assistant_lines = page.locator("#transcript li.assistant")
    user_lines = page.locator("#transcript li.user")
    # the first message, then the caller's words from the fake microphone, then the scripted answer
    assistant_lines.filter(has_text="Harbour Bistro").wait_for(timeout=20_000)
    user_lines.filter(has_text=re.compile(r"table|book|people", re.I)).first.wait_for(
        timeout=30_000
    )
    assistant_lines.filter(has_text="how many people").wait_for(timeout=20_000)
    stats = page.evaluate("() => window.webCallStats()")
    assert stats["bytesOut"] > 16000 * 2 and stats["bytesIn"] > 16000  # audio went both ways
    live = wait_call(controlled, call_id, lambda c: c["status"] == "in-progress")
    assert live["type"] == "webCall"
    shot(page, "21-webcall-serve-talking")

    page.get_by_role("button", name="Hang up").click()
    page.wait_for_function("() => document.getElementById('main').dataset.state === 'ended'")
    assert "customer-ended-call" in page.locator("main").inner_text()
    shot(page, "22-webcall-serve-ended")

    ended = wait_call(
        controlled,
        call_id,
        lambda c: c["status"] == "ended" and c.get("artifact", {}).get("transcript"),
    )
    assert ended["endedReason"] == "customer-ended-call"
    users = [m.get("message", "") for m in ended["messages"] if m.get("role") == "user"]
    assert any(re.search(r"table|book|people", m, re.I) for m in users), ended["messages"]
    bots = [m.get("message", "") for m in ended["messages"] if m.get("role") == "bot"]
    assert any("Harbour Bistro" in m for m in bots) and any("how many people" in m for m in bots)
    transcript = ended["artifact"]["transcript"]
    assert "AI: Hello, this is the Harbour Bistro." in transcript
    assert re.search(r"User: .*(table|book|people)", transcript, re.I), transcript
    assert page.errors == []


def test_wrong_token_is_refused(page, controlled, assistant_id):
    call = new_web_call(controlled, assistant_id)
    call_id = call["id"]
    token = parse_qs(urlsplit(call["webCallUrl"]).query)["token"][0]
    wrong = call["webCallUrl"].split("?", 1)[0] + "?token=not-the-token"
    resp = page.goto(wrong)
    # the page is public: it must not hand out the call's token (the stored socket URL carries it)
    assert token not in resp.text()
    page.get_by_role("button", name="Start call").click()
    page.get_by_text("Could not connect to the call.").wait_for()
    shot(page, "23-webcall-serve-wrong-token")
    # the refused socket joined nothing: the call was not answered and nobody spoke on it
    status, after = controlled.api("GET", f"/call/{call_id}")
    assert status == 200, after
    assert after["status"] != "in-progress" and not after.get("messages"), after
    assert [e for e in page.errors if "Unexpected response code: 403" not in e] == []
