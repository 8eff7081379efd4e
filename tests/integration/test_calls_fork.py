"""The fork WebSocket server routes a call's mod_audio_fork stream to its session and pipeline."""

from __future__ import annotations

from urllib.parse import urlparse

import gevent.event
import pytest
from audio_fixtures import frames, speech
from test_calls_support import WAIT, make_phone_number, run_harness

from esl_controller.media.fork_client import ForkClient
from esl_controller.pipeline.ports import PipelineNotice


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_harness(settings, database, api_key)


class RecordingPipeline:
    def __init__(self, session, want: int) -> None:
        self.session, self.want = session, want
        self.audio = bytearray()
        self.enough = gevent.event.Event()

    def start(self) -> None:
        self.session.notify(PipelineNotice("ready"))

    def feed(self, pcm: bytes, at: float) -> None:
        self.audio += pcm
        if len(self.audio) >= self.want:
            self.enough.set()

    def control(self, command) -> None:
        pass

    def stop(self, timeout: float = 5.0) -> None:
        pass


def test_fork_stream_reaches_the_pipeline(harness, database):
    make_phone_number(database)
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    cmd = harness.peer.commands.wait_for(lambda c: "uuid_audio_fork" in c.line, WAIT)
    url = cmd.line.split()[4]
    assert url.startswith("ws://127.0.0.1:") and f"/fork/{session.call_id}?" in url
    assert cmd.line.split()[5:8] == ["mono", "16k", "esl_fork"]
    pcm = speech("Hello, I would like to book a table for two.", 16000)
    pipeline = RecordingPipeline(session, want=len(pcm) - len(pcm) % 640)
    session.attach_pipeline(pipeline)
    parsed = urlparse(url)
    client = ForkClient(parsed.hostname, parsed.port, f"{parsed.path}?{parsed.query}").connect()
    client.send_metadata({"callId": session.call_id})
    # the stream reaches the session once its first message arrived; then frames go inline
    assert session.wait_until(lambda s: session.fork_stream is not None, WAIT)
    for frame in frames(pcm, 16000):
        client.send_audio(frame)
    assert pipeline.enough.wait(WAIT)
    assert bytes(pipeline.audio[:640]) == pcm[:640]
    client.close()
    assert session.wait_until(lambda s: not s.fork_connected, WAIT)
    leg.hangup()
    harness.wait_ended(session)
    kinds = [e.kind for e in harness.events(session.call_id)]
    assert "fork.closed" in kinds


def test_fork_stream_for_unknown_call_is_closed(harness):
    host, port = harness.controller.fork_server.address
    client = ForkClient("127.0.0.1", port, "/fork/6b0e8d4c-3a9b-4f1e-9c2d-1a2b3c4d5e6f").connect()
    client.send_metadata({"callId": "x"})
    client.send_audio(b"\x00\x01" * 320)
    with pytest.raises(Exception):  # noqa: B017 - closed by the server, whichever way it surfaces
        for _ in range(50):
            client.recv(timeout=WAIT)
    assert client.close_code == 1008
