"""A call talks end to end: the real controller and voice pipeline (embedded whisper STT, scripted model,
espeak-ng voice) against the fake FreeSWITCH, with a mod_audio_fork look-alike client carrying real speech,
and a web call over its WebSocket. Synchronised on messages and events (bounded waits)."""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from urllib.parse import urlparse

import gevent
import pytest
from audio_fixtures import speech
from test_calls_support import WAIT, make_phone_number, run_pipeline_harness

from esl_controller.media.codecs import rms, silence
from esl_controller.media.fork_client import ForkClient, ForkRejected

MODEL = {
    "provider": "custom-llm",
    "model": "scripted",
    "url": "scripted://",
    "rules": [{"keywords": ["table"], "reply": "Sure, for how many people?"}],
}
FIRST = "Hello, how can I help?"
LONG_FIRST = (
    "Welcome to the test line. We are open every day from nine in the morning until eleven at night, "
    "and we would be glad to book a table for you and your friends."
)
CALLER = "Hello, I would like to book a table for two people tonight."


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_pipeline_harness(settings, database, api_key)


# waits that include real speech recognition (whisper in worker processes) get more room on a busy machine
SPEECH_WAIT = 30.0


def until(pred, timeout=SPEECH_WAIT):
    """Bounded wait for a condition another greenlet makes true."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        gevent.sleep(0.02)


def set_assistant(database, phone, **fields):
    from esl_controller.db.models import Assistant

    body = {"name": "e2e", "model": MODEL, "firstMessage": FIRST, **fields}
    with database.connection_context():
        Assistant.update(data=body).where(Assistant.id == phone.assistant_id).execute()


def fork_client(harness, session):
    cmd = harness.peer.commands.wait_for(lambda c: "uuid_audio_fork" in c.line, WAIT)
    url = urlparse(cmd.line.split()[4])
    client = ForkClient(url.hostname, url.port, f"{url.path}?{url.query}").connect()
    client.send_metadata({"callId": session.call_id})
    return client


def next_json(client, kind, timeout=SPEECH_WAIT):
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {kind} message"
        msg = client.recv(timeout=remaining)
        if isinstance(msg, str):
            body = json.loads(msg)
            if body.get("type") == kind:
                return body


def send_speech(client, text):
    pcm = speech(text, 16000) + silence(1.0, 16000)
    for i in range(0, len(pcm), 640):
        client.send_audio(pcm[i : i + 640])


def caller_books_a_table(harness, session, client, timeout=SPEECH_WAIT):
    """The caller asks for a table: the speech is heard ("table" in the user message) and the
    scripted reply ("how many people") comes back as real audio and is stored."""
    send_speech(client, CALLER)
    reply = next_json(client, "playAudio", timeout=timeout)
    assert "how many people" in (reply["data"].get("textContent") or "")
    assert rms(base64.b64decode(reply["data"]["audioContent"])) > 300
    until(
        lambda: any(r == "bot" and "how many" in m for r, m in messages(harness, session.call_id))
    )
    user = [m for r, m in messages(harness, session.call_id) if r == "user"]
    assert user and "table" in user[0].lower()


def messages(harness, call_id):
    from esl_controller.db.models import CallMessage

    with harness.database.connection_context():
        q = CallMessage.select().where(CallMessage.call == call_id).order_by(CallMessage.seq)
        return [(m.role, m.message or "") for m in q]


def test_phone_call_talks_and_records(harness, database):
    phone = make_phone_number(database)
    set_assistant(database, phone)
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    client = fork_client(harness, session)

    # the first message goes out as playAudio with real speech
    play = next_json(client, "playAudio")
    pcm = base64.b64decode(play["data"]["audioContent"])
    assert play["data"]["sampleRate"] == 16000 and rms(pcm) > 300
    # FreeSWITCH wrote it to a file and fires play_audio: the controller plays it on the channel
    body = {"audioContentType": "raw", "sampleRate": 16000, "file": "/tmp/fs_test_0.tmp.r16"}
    leg.custom("mod_audio_fork::play_audio", json.dumps(body).encode())
    cmd = harness.peer.commands.wait_for(lambda c: "uuid_broadcast" in c.line, WAIT)
    assert cmd.line.split()[-3:] == [leg.uuid, "/tmp/fs_test_0.tmp.r16", "aleg"]
    until(lambda: not session.pipeline.port.playing())

    # the caller speaks; whisper hears it; the scripted reply is synthesized and sent
    caller_books_a_table(harness, session, client, timeout=15)

    until(lambda: not session.pipeline.port.playing())
    leg.hangup()
    harness.wait_ended(session)
    call = harness.client.get(f"/call/{session.call_id}").get_json()
    roles = [r for r, _ in messages(harness, session.call_id)]
    assert "user" in roles and "bot" in roles
    assert call["artifact"]["recordingUrl"].endswith(f"/call/{session.call_id}/recording")

    # recordings: mono and stereo, caller left / assistant right
    until(lambda: harness.client.get(f"/call/{session.call_id}/recording").status_code == 200)
    mono = harness.client.get(f"/call/{session.call_id}/recording")
    stereo = harness.client.get(f"/call/{session.call_id}/recording/stereo")
    assert stereo.status_code == 200
    with wave.open(io.BytesIO(mono.data)) as w:
        assert w.getnchannels() == 1 and w.getframerate() == 16000
        assert w.getnframes() / 16000 > 2.0
    with wave.open(io.BytesIO(stereo.data)) as w:
        assert w.getnchannels() == 2
        frames = w.readframes(w.getnframes())
    import audioop

    left, right = audioop.tomono(frames, 2, 1, 0), audioop.tomono(frames, 2, 0, 1)
    assert rms(left) > 100 and rms(right) > 100  # caller speech left, assistant speech right
    # the first message (assistant) plays before the caller speaks: its opening second is right-only
    step = 640  # 20 ms
    start = next(i for i in range(0, len(right), step) if rms(right[i : i + step]) > 300)
    head = slice(start, start + 16000)  # the first half second of the first message
    assert rms(right[head]) > 3 * max(1, rms(left[head]))


def test_barge_in_over_the_fork(harness, database):
    phone = make_phone_number(database)
    set_assistant(
        database,
        phone,
        firstMessage=LONG_FIRST,
        firstMessageInterruptionsEnabled=True,
    )
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    client = fork_client(harness, session)
    next_json(client, "playAudio")
    assert session.pipeline.port.playing()
    send_speech(client, CALLER)
    next_json(client, "killAudio")
    cmd = harness.peer.commands.wait_for(lambda c: "uuid_break" in c.line, WAIT)
    assert leg.uuid in cmd.line and cmd.line.rstrip().endswith("all")
    until(lambda: any(r == "bot" for r, _ in messages(harness, session.call_id)))
    bot = [m for r, m in messages(harness, session.call_id) if r == "bot"][0]
    assert len(bot) < len(LONG_FIRST)  # truncated to what was heard
    leg.hangup()
    harness.wait_ended(session)


def test_web_call_end_to_end(harness, database):
    from test_webcall_transport import audio, collect

    resp = harness.client.post(
        "/call/web", json={"assistant": {"model": MODEL, "firstMessage": FIRST}}
    )
    assert resp.status_code == 201
    call = resp.get_json()
    url = urlparse(call["transport"]["websocketCallUrl"])
    assert url.path == f"/call/{call['id']}/ws" and "token=" in url.query
    assert call["webCallUrl"].endswith(f"/call/{call['id']}/web?{url.query}")
    assert "/listen?token=" in call["monitor"]["listenUrl"]
    with pytest.raises(ForkRejected) as bad:
        ForkClient(url.hostname, url.port, f"{url.path}?token=nope", subprotocol=None).connect()
    assert bad.value.status == 403
    client = ForkClient(url.hostname, url.port, f"{url.path}?{url.query}", subprotocol=None)
    client.connect()
    client.send_text(json.dumps({"type": "start", "sampleRate": 16000}))
    session = harness.session(call["id"])
    harness.wait_status(session, "in-progress")
    msgs = collect(client, lambda m: rms(audio(m)) > 300 and not session.pipeline.port.playing())
    pcm = speech(CALLER, 16000) + silence(1.0, 16000)
    for i in range(0, len(pcm), 640):
        client.send_audio(pcm[i : i + 640])

    def replied(msgs):
        finals = [m for m in msgs if isinstance(m, dict) and m.get("transcriptType") == "final"]
        return any(m["role"] == "assistant" and "how many" in m["transcript"] for m in finals)

    msgs = collect(client, replied, timeout=15)
    finals = [m for m in msgs if isinstance(m, dict) and m.get("transcriptType") == "final"]
    assert any(m["role"] == "user" and "table" in m["transcript"].lower() for m in finals)
    assert rms(audio(msgs)) > 300  # the reply's audio
    client.send_text(json.dumps({"type": "hangup"}))
    harness.wait_ended(session)
    row = harness.row(call["id"])
    assert row.ended_reason == "customer-ended-call"
    roles = [r for r, _ in messages(harness, call["id"])]
    assert "user" in roles and "bot" in roles
