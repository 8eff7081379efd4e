"""The fork WebSocket server with a real WebSocket client acting like mod_audio_fork."""

import base64
import json

import gevent
import pytest
from audio_fixtures import frames, speech
from gevent.event import Event
from gevent.queue import Queue

from esl_controller.media import codecs
from esl_controller.media.fork_client import ForkClient, ForkClosed, ForkRejected
from esl_controller.media.fork_server import ForkServer, StreamClosed
from esl_controller.media.vad import SpeechEnded, VoiceActivityDetector


@pytest.fixture
def streams():
    return Queue()


@pytest.fixture
def server(streams):
    srv = ForkServer("127.0.0.1", 0, streams.put, queue_frames=500, idle_timeout=10)
    srv.start()
    yield srv
    srv.stop(timeout=2)


def client(server, path, **kw):
    host, port = server.address
    return ForkClient(host, port, path, **kw).connect()


def test_metadata_audio_and_play_kill(server, streams):
    rate = 16000
    pcm = speech("Hello, can you hear me?", rate)
    c = client(server, "/fork/call-1?rate=16000")
    assert c.subprotocol == "audio.drachtio.org"
    c.send_metadata({"callId": "call-1", "from": "+15550100"})
    # mod_audio_fork sends whatever accumulated: here 3 packets at a time, plus odd sizes.
    for i in range(0, len(pcm), 1920 + 2):
        c.send_audio(pcm[i : i + 1920 + 2])
    stream = streams.get(timeout=5)
    assert stream.call_id == "call-1"
    assert stream.metadata == {"callId": "call-1", "from": "+15550100"}
    assert stream.sample_rate == rate and stream.subprotocol == "audio.drachtio.org"
    got = []
    while len(got) < len(pcm) // 640:
        frame = stream.read(timeout=5)
        assert frame is not None
        got.append(frame)
    assert b"".join(f.caller for f in got) == pcm[: len(got) * 640]
    assert [f.index for f in got] == list(range(len(got)))

    reply = speech("Yes, I can hear you.", rate)
    stream.play_audio(reply, text="Yes, I can hear you.")
    msg = c.recv_json(timeout=5)
    assert msg["type"] == "playAudio"
    assert msg["data"]["sampleRate"] == rate and msg["data"]["audioContentType"] == "raw"
    assert base64.b64decode(msg["data"]["audioContent"]) == reply
    stream.kill_audio()
    assert c.recv_json(timeout=5) == {"type": "killAudio"}
    stream.send_text({"type": "transcription", "data": {"text": "hello"}})
    assert c.recv_json(timeout=5)["data"] == {"text": "hello"}
    assert stream.counters()["messages_out"] == 3

    c.send_text('{"type":"dtmf"}')
    assert stream.read_text(timeout=5) == '{"type":"dtmf"}'
    c.close()
    stream.closed.wait(timeout=5)
    assert stream.closed.is_set()
    assert stream.close_reason == "closed by peer (1000)"
    with pytest.raises(StreamClosed):
        for _ in range(100):
            stream.read(timeout=1)
    assert "call-1" not in server.streams


def test_call_id_from_metadata_and_rate_from_metadata(server, streams):
    c = client(server, "/fork")
    c.send_metadata({"callId": "meta-call", "sampleRate": 8000, "mix": "stereo"})
    left = speech("Left.", 8000)
    c.send_audio(codecs.stereo_interleave(left, bytes(len(left))))
    stream = streams.get(timeout=5)
    assert (stream.call_id, stream.sample_rate, stream.mix) == ("meta-call", 8000, "stereo")
    frame = stream.read(timeout=5)
    assert len(frame.caller) == 320 and frame.assistant == bytes(320)
    c.close()


def test_no_call_id_is_closed_with_policy_violation(server, streams):
    c = client(server, "/fork")
    c.send_audio(bytes(640))
    with pytest.raises(ForkClosed) as info:
        while True:
            assert c.recv(timeout=5) is not None
    assert info.value.code == 1008
    assert streams.empty()
    c.abort()


def test_wrong_path_is_rejected(server):
    with pytest.raises(ForkRejected) as info:
        client(server, "/elsewhere/x")
    assert info.value.status == 404


def test_other_subprotocol_is_echoed(server, streams):
    c = client(server, "/fork/c2", subprotocol="audio.example.org")
    assert c.subprotocol == "audio.example.org"
    c.close()


def test_ping_is_answered(server, streams):
    c = client(server, "/fork/ping-call")
    c.send_audio(bytes(640))
    c.ping(b"abc")
    for _ in range(25):  # the client's recv loop consumes the pong
        if c.pongs:
            break
        assert c.recv(timeout=0.2) is None
    assert c.pongs == [b"abc"]
    assert c.ws.state.name == "OPEN"
    c.close()


def test_abrupt_disconnect_ends_the_stream(server, streams):
    c = client(server, "/fork/abrupt")
    c.send_audio(speech("Cut off", 8000)[:3200])
    stream = streams.get(timeout=5)
    c.abort()
    assert stream.closed.wait(timeout=5)
    assert stream.close_reason == "abrupt disconnect"
    n = 0
    for _ in stream.frames(poll=1):
        n += 1
    assert n == 3200 // 640  # default rate 16k: 640-byte frames; nothing lost before the cut


def test_graceful_shutdown_marker_then_server_close(server, streams):
    c = client(server, "/fork/graceful?rate=8000")
    c.send_audio(bytes(500))  # not a whole frame: flushed, padded, at end of audio
    c.send_end_of_audio()
    stream = streams.get(timeout=5)
    frames_seen = list(_until_quiet(stream))
    assert len(frames_seen) == 2 and len(frames_seen[-1].caller) == 320
    assert stream.ended_gracefully
    stream.close()
    with pytest.raises(ForkClosed) as info:
        while True:
            assert c.recv(timeout=5) is not None
    assert info.value.code == 1000
    assert stream.closed.wait(timeout=5)
    assert stream.close_reason == "closed by server"


def _until_quiet(stream):
    while True:
        frame = stream.read(timeout=0.5)
        if frame is None:
            return
        yield frame


def test_slow_consumer_drops_oldest_and_counts(streams):
    srv = ForkServer("127.0.0.1", 0, streams.put, queue_frames=5)
    srv.start()
    try:
        c = client(srv, "/fork/slow?rate=8000")
        pcm = speech("Nobody is reading this audio yet.", 8000)
        n = len(pcm) // 320
        c.send_audio(pcm[: n * 320])
        c.send_end_of_audio()
        stream = streams.get(timeout=5)
        done = Event()
        gevent.spawn(lambda: (stream.closed.wait(5), done.set()))
        c.close()
        assert done.wait(timeout=5)
        got = list(stream.frames(poll=1))
        assert stream.frames_in == n
        assert stream.frames_dropped >= n - 5 - 1
        assert len(got) + stream.frames_dropped == n
        assert got[-1].index == n - 1  # the newest audio survives
    finally:
        srv.stop(timeout=2)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_vad_over_the_fork(rate, streams):
    """Real speech over the socket in 20 ms packets is endpointed on the server side."""
    from audio_fixtures import PHRASES, speech_with_gaps

    results = Queue()

    def on_stream(stream):
        vad = VoiceActivityDetector(stream.sample_rate)
        ends = []
        for frame in stream.frames(poll=1):
            ends += [e for e in vad.process(frame.caller) if isinstance(e, SpeechEnded)]
            if len(ends) == 2:
                stream.send_text({"type": "transcription", "data": {"utterances": 2}})
        results.put(ends)

    srv = ForkServer("127.0.0.1", 0, on_stream, queue_frames=1000)
    srv.start()
    try:
        spoken = speech_with_gaps(PHRASES[:2], rate=rate, gap=0.8, lead=0.6)
        c = client(srv, f"/fork/vad?rate={rate}")
        c.send_metadata(json.dumps({"callId": "vad"}))
        for f in frames(spoken.audio, rate):
            c.send_audio(f)
        msg = c.recv_json(timeout=10)
        assert msg == {"type": "transcription", "data": {"utterances": 2}}
        c.close()
        ends = results.get(timeout=10)
        assert len(ends) == 2
        assert ends[0].started_at == pytest.approx(spoken.segments[0][0], abs=0.1)
    finally:
        srv.stop(timeout=2)


def test_idle_connection_is_closed(streams):
    srv = ForkServer("127.0.0.1", 0, streams.put, idle_timeout=0.3, close_timeout=0.5)
    srv.start()
    try:
        c = client(srv, "/fork/idle")
        c.send_audio(bytes(640))  # then FreeSWITCH goes quiet (paused, or a dead peer)
        stream = streams.get(timeout=5)
        with pytest.raises(ForkClosed) as info:
            while True:
                assert c.recv(timeout=5) is not None
        assert info.value.code == 1001
        assert stream.closed.wait(timeout=5)
        assert stream.close_reason == "idle timeout"
    finally:
        srv.stop(timeout=2)


def _raw_client_bytes(path: str):
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import Request

    ws = WSConnection(ConnectionType.CLIENT)
    return ws, ws.send(Request(host="127.0.0.1", target=path, subprotocols=["audio.drachtio.org"]))


def _in_memory_client_frames():
    """A client connection that did its handshake in memory, to build masked frames."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    cli, srv = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    srv.receive_data(cli.send(Request(host="x", target="/fork/x")))
    next(srv.events())
    cli.receive_data(srv.send(AcceptConnection()))
    list(cli.events())
    return cli


def test_audio_in_the_same_packet_as_the_handshake(server, streams):
    import socket

    from wsproto.events import BytesMessage, TextMessage

    pcm = speech("Everything in one packet.", 16000)[: 640 * 10]
    _, request = _raw_client_bytes("/fork/one-packet?rate=16000")
    cli = _in_memory_client_frames()
    wire = request + cli.send(TextMessage(data='{"callId":"one-packet"}'))
    wire += cli.send(BytesMessage(data=pcm[:1000])) + cli.send(BytesMessage(data=pcm[1000:]))
    sock = socket.create_connection(server.address, timeout=5)
    try:
        sock.sendall(wire)
        stream = streams.get(timeout=5)
        assert stream.metadata == {"callId": "one-packet"}
        got = b"".join(stream.read(timeout=5).caller for _ in range(10))
        assert got == pcm
    finally:
        sock.close()


def test_unmasked_client_frame_is_a_protocol_error(server, streams):
    import socket

    from wsproto.events import AcceptConnection, TextMessage

    ws, request = _raw_client_bytes("/fork/unmasked?rate=16000")
    sock = socket.create_connection(server.address, timeout=5)
    try:
        sock.sendall(request)
        while not any(isinstance(e, AcceptConnection) for e in ws.events()):
            ws.receive_data(sock.recv(4096))
        sock.sendall(ws.send(TextMessage(data='{"callId":"unmasked"}')))
        stream = streams.get(timeout=5)
        sock.sendall(bytes([0x82, 4]) + speech("No mask.", 16000)[:4])  # binary, mask bit clear
        assert stream.closed.wait(timeout=5)
        assert stream.close_reason.startswith("protocol error")
        reply = sock.recv(4096)
        assert reply[:1] == b"\x88" and int.from_bytes(reply[2:4], "big") == 1002
    finally:
        sock.close()


def test_a_stuck_peer_does_not_stall_other_calls(streams):
    """Frame handlers run in the one reader greenlet: a handler whose writes cannot go out (its peer
    never reads) must not hold up another call's audio."""
    srv = ForkServer("127.0.0.1", 0, streams.put, send_timeout=8, idle_timeout=60)
    srv.start()
    try:
        stuck = client(srv, "/fork/stuck?rate=16000")  # never reads what the server sends
        lively = client(srv, "/fork/lively?rate=16000")
        stuck.send_audio(bytes(640))
        lively.send_audio(bytes(640))
        by_id = {}
        for _ in range(2):
            s = streams.get(timeout=5)
            by_id[s.call_id] = s
        big = "x" * 200_000
        sent = []

        def flood(frame):  # each stuck frame queues 200 KB for a peer that does not read
            by_id["stuck"].send_text(big)
            sent.append(frame.index)

        by_id["stuck"].set_frame_handler(flood)
        got = []
        by_id["lively"].set_frame_handler(lambda f: got.append(f.caller))
        pcm = speech("Still here and talking.", 16000)[: 640 * 50]
        for i in range(0, len(pcm), 640):
            stuck.send_audio(bytes(640))
            lively.send_audio(pcm[i : i + 640])
            gevent.sleep(0.002)
        deadline = gevent.Timeout(5, AssertionError("lively call's audio stalled"))
        with deadline:
            while len(got) < 50:
                gevent.sleep(0.01)
        assert b"".join(got) == pcm
        assert len(sent) >= 40  # the stuck call's frames were handled too, not parked on its writes
        stuck.abort()  # the queued writes fail at once instead of waiting out send_timeout
    finally:
        srv.stop(timeout=2)
