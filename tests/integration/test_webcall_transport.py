"""The web-call WebSocket transport with a Python WebSocket client (wsproto over a socket): access check,
real speech in, paced reply audio and JSON messages out, barge-in clear, controls and hangup."""

import json
import time

import pytest
from audio_fixtures import speech

from esl_controller.media.codecs import rms, silence, ulaw_decode, ulaw_encode
from esl_controller.media.fork_client import ForkClient, ForkClosed, ForkRejected
from esl_controller.media.webcall import (
    PipelineWebCallSession,
    WebCallServer,
    audio_format,
    parse_path,
)
from esl_controller.pipeline.conversation import Conversation
from esl_controller.pipeline.providers import registry
from esl_controller.pipeline.providers.testing import FakeTranscriber

MODEL = {
    "provider": "custom-llm",
    "model": "scripted",
    "url": "scripted://",
    "rules": [{"keywords": ["table"], "reply": "Sure, for how many people?"}],
}
LONG = "Welcome to the test line. We are open every day from nine in the morning until eleven at night."


@pytest.fixture
def server():
    state = {"sessions": [], "notices": [], "assistant": {"model": MODEL}, "texts": []}

    def factory(port):
        return Conversation(
            state["assistant"],
            port,
            stt=FakeTranscriber(state["texts"]),
            llm=registry.build_model(MODEL),
            tts=registry.build_synthesizer(None),
            call_id=port.call_id,
        )

    def on_connect(call_id, token):
        if token != "secret-" + call_id:
            return None
        session = PipelineWebCallSession(factory, state["notices"].append)
        state["sessions"].append(session)
        return session

    srv = WebCallServer("127.0.0.1", 0, on_connect)
    srv.start()
    srv.state = state
    yield srv
    srv.stop()


def connect(server, path):
    host, port = server.address
    return ForkClient(host, port, path, subprotocol=None, timeout=5).connect()


def collect(client, until, timeout=15):
    """Messages (decoded JSON dicts and binary audio) until ``until(messages)`` is true."""
    out = []
    deadline = time.monotonic() + timeout
    while not until(out):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got {[m for m in out if isinstance(m, dict)]}"
        msg = client.recv(timeout=remaining)
        if msg is None:
            continue
        out.append(json.loads(msg) if isinstance(msg, str) else msg)
    return out


def has(kind, **fields):
    def check(msgs):
        return any(
            isinstance(m, dict)
            and m.get("type") == kind
            and all(m.get(k) == v for k, v in fields.items())
            for m in msgs
        )

    return check


def audio(msgs):
    return b"".join(m for m in msgs if isinstance(m, bytes))


def send_speech(client, text, rate=16000, chunk=1000, mulaw=False):
    pcm = speech(text, rate) + silence(0.6, rate)
    data = ulaw_encode(pcm) if mulaw else pcm
    for i in range(0, len(data), chunk):  # odd sizes: the server re-frames
        client.send_audio(data[i : i + chunk])


def test_paths_and_formats():
    assert parse_path("/call/abc/ws?token=t&sampleRate=8000") == (
        "abc",
        {"token": "t", "sampleRate": "8000"},
    )
    assert parse_path("/call/abc") is None and parse_path("/fork/abc/ws") is None
    assert audio_format({}, 16000) == ("pcm_s16le", 16000)
    assert audio_format({"audioFormat": {"format": "mulaw"}}, 16000) == ("mulaw", 8000)
    with pytest.raises(ValueError):
        audio_format({"sampleRate": "44100"}, 16000)


def test_access_is_checked(server):
    with pytest.raises(ForkRejected) as exc:
        connect(server, "/call/c1/ws?token=wrong")
    assert exc.value.status == 403
    with pytest.raises(ForkRejected) as exc:
        connect(server, "/nothing/here")
    assert exc.value.status == 404
    assert server.state["sessions"] == []


def test_conversation_over_the_socket(server):
    server.state["assistant"] = {"model": MODEL, "firstMessage": "Hello, how can I help?"}
    server.state["texts"].append("a table please")
    client = connect(server, "/call/c2/ws?token=secret-c2")
    client.send_text(json.dumps({"type": "start", "sampleRate": 16000, "format": "pcm_s16le"}))
    first = collect(client, has("speech-update", role="assistant", status="stopped"))
    greeting = audio(first)
    assert len(greeting) > 16000 and rms(greeting) > 300
    assert all(len(m) == 640 for m in first if isinstance(m, bytes))  # 20 ms frames
    send_speech(client, "Hello, I would like to book a table for two people tonight.")
    reply = collect(
        client, has("transcript", role="assistant", transcript="Sure, for how many people?")
    )
    assert has("transcript", role="user", transcriptType="final", transcript="a table please")(
        reply
    )
    assert has("speech-update", role="user", status="started")(reply)
    assert rms(audio(reply)) > 300
    notices = [n.kind for n in server.state["notices"]]
    assert "turn-timing" in notices
    client.send_text(json.dumps({"type": "hangup"}))
    end = collect(client, has("call-ended"))
    assert end[-1] == {"type": "call-ended", "endedReason": "customer-ended-call"}
    with pytest.raises(ForkClosed):
        collect(client, lambda m: False, timeout=5)
    session = server.state["sessions"][0]
    assert session.closed.wait(timeout=5) and session.closed_reason


def test_barge_in_sends_clear(server):
    server.state["assistant"] = {
        "model": MODEL,
        "firstMessage": LONG,
        "firstMessageInterruptionsEnabled": True,
    }
    server.state["texts"].append("a table")
    client = connect(server, "/call/c3/ws?token=secret-c3&sampleRate=16000")
    client.send_audio(bytes(640))  # audio first: the query gives the format
    collect(client, lambda m: len(audio(m)) >= 16000)  # a second of the greeting arrived
    send_speech(client, "Stop, I want a table.")
    msgs = collect(client, has("user-interrupted"))
    kinds = [m["type"] for m in msgs if isinstance(m, dict)]
    assert "clear" in kinds and kinds.index("clear") < kinds.index("user-interrupted")
    reply = collect(
        client, has("transcript", role="assistant", transcript="Sure, for how many people?")
    )
    assert reply
    client.close()


def test_controls_and_mulaw(server):
    client = connect(server, "/call/c4/ws?token=secret-c4")
    client.send_text(
        json.dumps({"type": "start", "audioFormat": {"format": "mulaw", "sampleRate": 8000}})
    )
    client.send_text(
        json.dumps({"type": "say", "content": "This is a live say.", "endCallAfterSpoken": True})
    )
    msgs = collect(client, has("call-ended"))
    frames = [m for m in msgs if isinstance(m, bytes)]
    assert frames and all(len(f) == 160 for f in frames)  # 20 ms of µ-law at 8 kHz
    assert rms(ulaw_decode(b"".join(frames))) > 300
    assert msgs[-1] == {
        "type": "call-ended",
        "endedReason": "assistant-ended-call-after-message-spoken",
    }


def test_bad_control_and_bad_json_get_errors(server):
    client = connect(server, "/call/c5/ws?token=secret-c5")
    client.send_text("not json")
    client.send_text(json.dumps({"type": "say"}))
    msgs = collect(
        client, lambda m: sum(1 for x in m if isinstance(x, dict) and x["type"] == "error") >= 2
    )
    errors = [m["message"] for m in msgs if isinstance(m, dict) and m["type"] == "error"]
    assert "JSON" in errors[0] and "content" in errors[1]
    client.close()


def test_frames_of_bigger_chunks_get_consecutive_stream_times():
    """A client sending 100 ms chunks: each 20 ms frame gets its own place in the stream (the recording
    places audio by it), not its chunk's arrival time."""
    seen = []

    class Session:
        def on_start(self, port):
            pass

        def on_audio(self, pcm16, at):
            seen.append((len(pcm16), at))

        def on_control(self, body):
            pass

        def on_hangup(self):
            pass

        def on_close(self, reason):
            pass

    srv = WebCallServer("127.0.0.1", 0, lambda call_id, token: Session())
    srv.start()
    try:
        client = ForkClient(*srv.address, "/call/chunks/ws?token=t", subprotocol=None, timeout=5)
        client.connect()
        pcm = speech("Hello, I would like to book a table.", 16000)
        chunk = 3200  # 100 ms
        for i in range(0, len(pcm) - chunk + 1, chunk):
            client.send_audio(pcm[i : i + chunk])
        count = (len(pcm) // chunk) * 5
        deadline = time.monotonic() + 10
        while len(seen) < count and time.monotonic() < deadline:
            client.recv(timeout=0.05)
        client.close()
    finally:
        srv.stop()
    assert len(seen) == count
    assert all(n == 640 for n, _ in seen)
    assert [at for _, at in seen] == pytest.approx([0.02 * i for i in range(count)])
