"""backgroundSound on web calls: the bed is mixed under each assistant chunk the WebCallPort sends (as on
fork calls); off (the web-call default) leaves the audio the client receives unchanged."""

import json
import time

import pytest

from esl_controller.media import background as bg
from esl_controller.media.codecs import rms
from esl_controller.media.fork_client import ForkClient
from esl_controller.media.webcall import PipelineWebCallSession, WebCallServer
from esl_controller.pipeline.conversation import Conversation
from esl_controller.pipeline.providers import registry
from esl_controller.pipeline.providers.testing import FakeTranscriber

RATE = 16000
FRAME = 640
MODEL = {"provider": "custom-llm", "model": "scripted", "url": "scripted://", "rules": []}
GREETING = "Welcome to the test line. We are open every day from nine until eleven."


@pytest.fixture
def server():
    state = {"assistant": {}, "ports": []}

    def factory(port):
        body = {"model": MODEL, "firstMessage": GREETING, **state["assistant"]}
        # what the pipeline factory does for a web call (direction "web": default off)
        choice = bg.setting(body.get("backgroundSound"), "web")
        if choice == "office":
            port.background = bg.BackgroundMixer(bg.office_bed(port.sample_rate))
        state["ports"].append(port)
        return Conversation(
            body,
            port,
            stt=FakeTranscriber([]),
            llm=registry.build_model(MODEL),
            tts=registry.build_synthesizer(None),
            call_id=port.call_id,
        )

    def on_connect(call_id, token):
        return PipelineWebCallSession(factory, lambda notice: None)

    srv = WebCallServer("127.0.0.1", 0, on_connect)
    srv.start()
    srv.state = state
    yield srv
    srv.stop()


def greeting_audio(server, call_id: str) -> bytes:
    host, port = server.address
    client = ForkClient(host, port, f"/call/{call_id}/ws?token=t", subprotocol=None, timeout=5)
    client.connect()
    client.send_text(json.dumps({"type": "start", "sampleRate": RATE, "format": "pcm_s16le"}))
    chunks: list[bytes] = []
    deadline = time.monotonic() + 20
    try:
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no end of the greeting"
            msg = client.recv(timeout=remaining)
            if isinstance(msg, bytes):
                chunks.append(msg)
            elif isinstance(msg, str):
                m = json.loads(msg)
                if m.get("type") == "speech-update" and m.get("status") == "stopped":
                    break
    finally:
        client.send_text(json.dumps({"type": "hangup"}))
        client.abort()
    return b"".join(chunks)


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]


def test_office_bed_is_mixed_under_the_speech_and_off_leaves_it_unchanged(server):
    plain = greeting_audio(server, "w-default")  # no backgroundSound: off on web calls
    assert server.state["ports"][-1].background is None
    server.state["assistant"] = {"backgroundSound": "off"}
    off = greeting_audio(server, "w-off")
    assert server.state["ports"][-1].background is None
    server.state["assistant"] = {"backgroundSound": "office"}
    office = greeting_audio(server, "w-office")
    assert server.state["ports"][-1].background is not None

    assert rms(plain) > 300 and len(plain) > RATE * 2
    assert abs(len(off) - len(plain)) <= 2 * FRAME  # off: the speech as without any setting

    # the greeting's pauses are silent without a bed and carry the bed with one
    quiet = [i for i, f in enumerate(frames(off)) if rms(f) < 5]
    assert len(quiet) >= 5
    office_frames = frames(office)
    assert (
        abs(len(office) - len(off)) <= 2 * FRAME
    )  # the last frame may be cut at the end of speech
    quiet = [i for i in quiet if i < len(office_frames) - 2]
    assert len(quiet) >= 5 and all(rms(office_frames[i]) > 20 for i in quiet)
    plain_frames = frames(plain)
    assert sum(1 for i in quiet if i < len(plain_frames) and rms(plain_frames[i]) < 5) >= 0.9 * len(
        quiet
    )
