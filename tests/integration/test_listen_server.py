"""The live-listen WebSocket server with real WebSocket clients (wsproto over loopback sockets)."""

import json
import socket
import time

import gevent
import pytest
from audio_fixtures import committed_wav, frames, speech
from gevent.event import Event
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

from esl_controller.media.codecs import resample, stereo_split
from esl_controller.media.listen import ListenHub, ListenServer

CALL = "0f6d1c9a-3b2e-4c5d-8e7f-a1b2c3d4e5f6"


class Rejected(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


class Client:
    """A minimal listener: handshake, then complete messages (str for text, bytes for binary)."""

    def __init__(self, address, path, rcvbuf=None, headers=(), timeout=5.0):
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.timeout = timeout
        self.close_code = None
        self.close_reason = None
        self.eof = False
        self._msgs = []
        self._parts = []
        host = f"{address[0]}:{address[1]}"
        self.sock.sendall(
            self.ws.send(Request(host=host, target=path, extra_headers=list(headers)))
        )
        while True:
            data = self.sock.recv(65536)
            assert data, "closed during handshake"
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise Rejected(event.status_code)

    def recv(self):
        """Next message; None once the stream is over (close frame or EOF)."""
        deadline = time.monotonic() + self.timeout
        self._events()  # bytes that came with the handshake are already buffered
        while not self._msgs:
            if self.close_code is not None or self.eof:
                return None
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                self.eof = True
            self.ws.receive_data(data or None)
            self._events()
        return self._msgs.pop(0)

    def _events(self):
        for event in self.ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._parts.append(event.data)
                if event.message_finished:
                    join = "" if isinstance(event, TextMessage) else b""
                    self._msgs.append(join.join(self._parts))
                    self._parts = []
            elif isinstance(event, CloseConnection):
                self.close_code, self.close_reason = event.code, event.reason
                try:
                    self.sock.sendall(self.ws.send(event.response()))
                except Exception:  # noqa: BLE001 - the server may be gone already
                    pass

    def close(self):
        try:
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except Exception:  # noqa: BLE001
            pass
        self.sock.close()


@pytest.fixture
def hub():
    return ListenHub(secret="test-secret", max_listeners_per_call=3, queue_frames=8)


@pytest.fixture
def server(hub):
    srv = ListenServer("127.0.0.1", 0, hub, send_buffer=4096, close_timeout=2.0)
    srv.start()
    yield srv
    srv.stop(timeout=2)


def path(hub, call_id=CALL):
    return f"/call/{call_id}/listen?token={hub.issue_token(call_id)}"


def wait_listeners(hub, n, call_id=CALL):
    with gevent.Timeout(5):
        while hub.listeners(call_id) != n:
            gevent.sleep(0.005)


def test_start_audio_and_call_ended_at_8k(hub, server):
    c = Client(server.address, path(hub))
    start = json.loads(c.recv())
    assert start == {
        "type": "start",
        "callId": CALL,
        "sampleRate": 16000,
        "channels": 2,
        "encoding": "pcm_s16le",
    }
    wait_listeners(hub, 1)
    caller = speech("Yes, seven thirty works for me.", 8000)
    bot = speech("Hello, I would like to book a table for two people tonight.", 8000)[: len(caller)]
    got = []
    for cf, bf in zip(frames(caller, 8000), frames(bot, 8000), strict=True):
        assert hub.publish(CALL, cf, bf, 8000) == 1
        got.append(c.recv())  # one binary frame per published frame, in order
    assert all(isinstance(m, bytes) and len(m) in (1276, 1280, 1284) for m in got)
    left, right = stereo_split(b"".join(got))
    assert left == resample(caller, 8000, 16000)
    assert right == resample(bot, 8000, 16000)
    hub.close_call(CALL)
    assert json.loads(c.recv()) == {"type": "call-ended"}
    assert c.recv() is None and c.close_code == 1000
    wait_listeners(hub, 0)


def test_two_listeners_get_the_same_16k_audio_and_silence_when_the_assistant_is_quiet(hub, server):
    caller, rate = committed_wav("yes_seven_thirty_16k.wav")
    a, b = Client(server.address, path(hub)), Client(server.address, path(hub))
    assert json.loads(a.recv())["type"] == json.loads(b.recv())["type"] == "start"
    wait_listeners(hub, 2)
    out_a, out_b = [], []
    for f in frames(caller, rate):
        assert hub.publish(CALL, f, None, rate) == 2
        out_a.append(a.recv())
        out_b.append(b.recv())
    assert out_a == out_b
    left, right = stereo_split(b"".join(out_a))
    assert left == caller[: len(left)] and len(left) == len(caller) // 640 * 640
    assert right == bytes(len(right))
    a.close()  # one listener leaves; the other keeps receiving
    wait_listeners(hub, 1)
    assert hub.publish(CALL, caller[:640], caller[640:1280], rate) == 1
    assert stereo_split(b.recv()) == (caller[:640], caller[640:1280])
    hub.close_call(CALL)
    assert json.loads(b.recv()) == {"type": "call-ended"}


def test_bad_token_missing_token_and_wrong_path_are_refused(hub, server):
    with pytest.raises(Rejected) as err:
        Client(server.address, f"/call/{CALL}/listen?token=" + "0" * 64)
    assert err.value.status == 403
    with pytest.raises(Rejected) as err:
        Client(server.address, f"/call/{CALL}/listen")
    assert err.value.status == 403
    other = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(Rejected) as err:  # another call's token
        Client(server.address, f"/call/{CALL}/listen?token={hub.issue_token(other)}")
    assert err.value.status == 403
    with pytest.raises(Rejected) as err:
        Client(server.address, f"/call/{CALL}/control?token={hub.issue_token(CALL)}")
    assert err.value.status == 404
    assert hub.listeners(CALL) == 0


def test_bearer_token_and_listener_limit(hub, server):
    auth = [(b"Authorization", f"Bearer {hub.issue_token(CALL)}".encode())]
    clients = [Client(server.address, f"/call/{CALL}/listen", headers=auth) for _ in range(3)]
    wait_listeners(hub, 3)
    with pytest.raises(Rejected) as err:
        Client(server.address, path(hub))
    assert err.value.status == 429
    for c in clients:
        c.close()
    wait_listeners(hub, 0)


def test_slow_listener_is_dropped_and_the_other_keeps_receiving(hub, server):
    slow = Client(server.address, path(hub), rcvbuf=2048)  # never reads until the end
    fast = Client(server.address, path(hub))
    assert json.loads(fast.recv())["type"] == "start"
    wait_listeners(hub, 2)
    received = []
    got_one = Event()

    def reader():
        while True:
            m = fast.recv()
            if m is None:
                return
            received.append(m)
            got_one.set()

    g = gevent.spawn(reader)
    pcm = speech("Hello, I would like to book a table for two people tonight.", 16000)
    sent = 0
    ran = []
    for f in frames(pcm, 16000):
        ran.clear()
        gevent.spawn(ran.append, 1)
        hub.publish(CALL, f, f, 16000)
        assert ran == []  # publish returned without yielding to any other greenlet
        sent += 1
        # let the sockets move; wait for the fast listener to have this frame
        got_one.clear()
        if len(received) < sent + 1:  # + the start message already taken
            assert got_one.wait(timeout=5)
    assert hub.listeners_dropped == 1 and hub.listeners(CALL) == 1
    hub.close_call(CALL)
    g.join(timeout=5)
    assert json.loads(received[-1]) == {"type": "call-ended"}
    audio = [m for m in received if isinstance(m, bytes)]
    assert len(audio) == sent  # the fast listener lost nothing
    # the slow one got a prefix of the stream, then a close with the reason (or the socket cut)
    got = []
    while True:
        m = slow.recv()
        if m is None:
            break
        got.append(m)
    slow_audio = [m for m in got if isinstance(m, bytes)]
    assert 0 < len(slow_audio) < sent
    assert slow_audio == audio[: len(slow_audio)]
    assert slow.close_code == 1013 and slow.close_reason == "listener too slow"


def test_listener_disconnecting_abruptly_is_forgotten(hub, server):
    c = Client(server.address, path(hub))
    wait_listeners(hub, 1)
    c.sock.close()  # no close frame
    wait_listeners(hub, 0)
    pcm = speech("Thank you very much, goodbye.", 16000)
    assert hub.publish(CALL, pcm[:640], None, 16000) == 0


def test_call_already_ended_tells_a_late_listener(hub, server):
    hub.close_call(CALL)
    c = Client(server.address, path(hub))
    assert json.loads(c.recv()) == {"type": "call-ended"}
    assert c.recv() is None and c.close_code == 1000


def test_is_live_refuses_unknown_calls(hub):
    srv = ListenServer("127.0.0.1", 0, hub, is_live=lambda call_id: False)
    srv.start()
    try:
        with pytest.raises(Rejected) as err:
            Client(srv.address, path(hub))
        assert err.value.status == 404
    finally:
        srv.stop(timeout=2)


def test_server_stop_closes_listeners_with_1001(hub):
    srv = ListenServer("127.0.0.1", 0, hub)
    srv.start()
    c = Client(srv.address, path(hub))
    assert json.loads(c.recv())["type"] == "start"
    wait_listeners(hub, 1)
    srv.stop(timeout=2)
    assert c.recv() is None
    assert (c.close_code, c.close_reason) == (1001, "server stopping")
    assert not hub.ended(CALL)
