"""A fake Deepgram ``/v1/listen`` WebSocket (wsproto on a gevent StreamServer).

It listens to the audio for real: 20 ms frames are classed as speech or silence by their RMS, so an
utterance starts with speech and ends after ``endpointing`` ms of silence (from the query string), measured
in audio time, not wall time. While an utterance is spoken it sends interim ``Results`` revealing the
scripted transcript word by word; at its end a ``Results`` with ``is_final`` and ``speech_final``. It answers
``Finalize`` (a final with ``from_finalize``), counts ``KeepAlive``, and on ``CloseStream`` flushes, sends
``Metadata`` and closes with 1000. Knobs: ``fail_status`` (reject the handshake), ``latency`` (before the
handshake answer), ``malformed_after`` (a garbage text message after that many messages),
``disconnect_after`` (drop the TCP connection after that many messages), ``close_code`` (close with that
code after the first final).
"""

from __future__ import annotations

import audioop
import json
import socket
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import gevent
from gevent.server import StreamServer
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

SPEECH_RMS = 300
WORD_MS = 250  # reveal one word per this much speech


@dataclass
class DGKnobs:
    latency: float = 0.0
    fail_status: int | None = None
    malformed_after: int | None = None
    disconnect_after: int | None = None
    close_code: int | None = None


@dataclass
class Session:
    query: dict[str, list[str]]
    headers: dict[str, str]
    audio_bytes: int = 0
    controls: list[str] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)


class FakeDeepgram:
    def __init__(
        self,
        transcripts: list[str] | tuple[str, ...] = ("hello world",),
        *,
        api_key: str = "dg-test-key",
        knobs: DGKnobs | None = None,
    ) -> None:
        self.transcripts = list(transcripts)
        self.api_key = api_key
        self.knobs = knobs or DGKnobs()
        self.sessions: list[Session] = []
        self.server = StreamServer(("127.0.0.1", 0), self._serve)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeDeepgram:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(timeout=1)

    def _serve(self, sock: socket.socket, _addr: object) -> None:
        try:
            _Conn(self, sock).run()
        except (OSError, gevent.GreenletExit):
            pass
        finally:
            sock.close()


class _Drop(Exception):
    pass


class _Conn:
    def __init__(self, fake: FakeDeepgram, sock: socket.socket) -> None:
        self.fake = fake
        self.k = fake.knobs
        self.sock = sock
        self.ws = WSConnection(ConnectionType.SERVER)
        self.session: Session | None = None
        self.rate = 16000
        self.endpointing_ms = 300
        self.utterance = 0
        self.speech_ms = 0
        self.silence_ms = 0
        self.in_speech = False
        self.revealed = 0
        self.pending = b""
        self.messages = 0

    def send(self, event) -> None:
        self.sock.sendall(self.ws.send(event))

    def send_json(self, obj: dict) -> None:
        if self.k.disconnect_after is not None and self.messages >= self.k.disconnect_after:
            raise _Drop()
        if self.k.malformed_after is not None and self.messages == self.k.malformed_after:
            self.send(TextMessage(data='{"type": "Results", "channel": '))
        self.messages += 1
        self.session.sent.append(obj)
        self.send(TextMessage(data=json.dumps(obj)))

    def run(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                self.ws.receive_data(data or None)
                for event in self.ws.events():
                    if not self.handle(event):
                        return
                if not data:
                    return
        except _Drop:
            self.sock.shutdown(socket.SHUT_RDWR)

    def handle(self, event) -> bool:
        if isinstance(event, Request):
            return self.accept(event)
        if isinstance(event, BytesMessage):
            self.audio(event.data)
        elif isinstance(event, TextMessage):
            msg = json.loads(event.data)
            self.session.controls.append(msg["type"])
            if msg["type"] == "Finalize":
                self.final(from_finalize=True)
            elif msg["type"] == "CloseStream":
                self.final()
                self.send_json(
                    {"type": "Metadata", "request_id": "dg-req-1", "duration": self.duration()}
                )
                self.send(CloseConnection(code=1000))
                return False
        elif isinstance(event, Ping):
            self.send(event.response())
        elif isinstance(event, CloseConnection):
            self.send(event.response())
            return False
        return True

    def accept(self, event: Request) -> bool:
        if self.k.latency:
            gevent.sleep(self.k.latency)
        url = urlsplit(event.target)
        headers = {k.decode().lower(): v.decode() for k, v in event.extra_headers}
        self.session = Session(parse_qs(url.query), headers)
        self.fake.sessions.append(self.session)
        status = self.k.fail_status
        if headers.get("authorization") != f"Token {self.fake.api_key}":
            status = 401
        if status:
            body = json.dumps(
                {"err_code": "REJECTED", "err_msg": f"fake rejection {status}"}
            ).encode()
            self.send(
                RejectConnection(
                    status_code=status,
                    has_body=True,
                    headers=[(b"content-type", b"application/json")],
                )
            )
            self.send(RejectData(data=body, body_finished=True))
            return False
        self.rate = int(self.session.query["sample_rate"][0])
        self.endpointing_ms = int(self.session.query.get("endpointing", ["300"])[0])
        self.send(AcceptConnection(extra_headers=[(b"dg-request-id", b"dg-req-1")]))
        return True

    def duration(self) -> float:
        return self.session.audio_bytes / (2.0 * self.rate)

    def words(self) -> list[str]:
        if self.utterance < len(self.fake.transcripts):
            return self.fake.transcripts[self.utterance].split()
        return []

    def results(
        self, text: str, *, is_final: bool, speech_final: bool = False, from_finalize: bool = False
    ):
        obj = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": 0.5,
            "start": self.duration(),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.98, "words": []}]},
            "metadata": {"request_id": "dg-req-1", "model_info": {"name": "fake"}},
        }
        if from_finalize:
            obj["from_finalize"] = True
        self.send_json(obj)

    def audio(self, data: bytes) -> None:
        self.session.audio_bytes += len(data)
        self.pending += data
        frame = self.rate // 50 * 2
        while len(self.pending) >= frame:
            chunk, self.pending = self.pending[:frame], self.pending[frame:]
            self.frame(audioop.rms(chunk, 2) > SPEECH_RMS)

    def frame(self, speech: bool) -> None:
        if speech:
            self.in_speech = True
            self.silence_ms = 0
            self.speech_ms += 20
            words = self.words()
            want = min(len(words), 1 + self.speech_ms // WORD_MS)
            if want > self.revealed and self.speech_ms % 100 == 0:
                self.revealed = want
                self.results(" ".join(words[:want]), is_final=False)
        elif self.in_speech:
            self.silence_ms += 20
            if self.silence_ms >= self.endpointing_ms:
                self.final(speech_final=True)

    def final(self, *, speech_final: bool = False, from_finalize: bool = False) -> None:
        if not self.in_speech:
            if from_finalize:
                self.results("", is_final=True, from_finalize=True)
            return
        self.results(
            " ".join(self.words()),
            is_final=True,
            speech_final=speech_final,
            from_finalize=from_finalize,
        )
        self.utterance += 1
        self.in_speech, self.speech_ms, self.silence_ms, self.revealed = False, 0, 0, 0
        if self.k.close_code is not None:
            self.send(CloseConnection(code=self.k.close_code, reason="fake close"))
            raise _Drop()
