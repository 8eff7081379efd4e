"""Deepgram streaming speech-to-text over a WebSocket (wsproto on a gevent socket).

One stream per call: ``wss://api.deepgram.com/v1/listen?encoding=linear16&sample_rate=..&channels=1
&interim_results=true&endpointing=..&model=..&language=..`` with ``Authorization: Token <key>``. Audio goes
out as binary frames; ``Results`` messages come back with ``is_final`` (this segment will not change) and
``speech_final`` (Deepgram's endpointer saw the end of speech). Segments are joined into utterances by
:class:`UtteranceAssembler` (pure): interim text is a partial :class:`Transcript`, and the utterance becomes
final on ``speech_final``, on ``UtteranceEnd`` or on the answer to our ``Finalize``.

:meth:`DeepgramStream.finish` sends ``{"type": "Finalize"}`` (our own endpointer decided the caller stopped)
and waits for the flushed final; :meth:`DeepgramStream.close` sends ``{"type": "CloseStream"}`` and waits
briefly for Deepgram to close. ``{"type": "KeepAlive"}`` goes out when no audio was sent for
``keepalive_seconds``. Transcriber config (Vapi's ``transcriber`` block)::

    {"provider": "deepgram", "model": "nova-2", "language": "en-US", "endpointing": 300,
     "smartFormat": true, "keywords": ["Acme:2"], "url": "ws://127.0.0.1:9000"}  # url: override the host

Every final transcript carries the audio seconds streamed since the previous one (billing is per streamed
second), with the ``dg-request-id`` of the connection.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import gevent
import gevent.event
import gevent.lock
import gevent.queue
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from esl_controller.pipeline.providers import http
from esl_controller.pipeline.providers.base import ProviderError, Transcript, Usage

log = logging.getLogger("esl_controller.pipeline.providers.stt")

PROVIDER = "deepgram"
DEFAULT_URL = "wss://api.deepgram.com"
DEFAULT_MODEL = "nova-2"
QUEUE_LIMIT = 256


# -- pure: URL, messages, utterances -----------------------------------------------------------------


def listen_url(base: str, params: Mapping[str, Any]) -> str:
    """``{base}/v1/listen?{params}`` with booleans as ``true``/``false`` and lists as repeated keys."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None or value == "":
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
    return base.rstrip("/") + "/v1/listen?" + urlencode(pairs)


def listen_params(config: Mapping[str, Any], sample_rate: int) -> dict[str, Any]:
    model = str(config.get("model") or DEFAULT_MODEL)
    params: dict[str, Any] = {
        "encoding": "linear16",
        "sample_rate": sample_rate,
        "channels": 1,
        "interim_results": True,
        "model": model,
        "language": config.get("language") or "en",
        "endpointing": config.get("endpointing", 300),
        "smart_format": config.get("smartFormat"),
        "utterance_end_ms": config.get("utteranceEndMs"),
    }
    terms = config.get("keyterm") or []
    words = config.get("keywords") or []
    if terms:
        params["keyterm"] = list(terms)
    if words:
        params["keywords"] = list(words)
    return params


@dataclass(frozen=True)
class DeepgramMessage:
    type: str
    transcript: str = ""
    confidence: float | None = None
    is_final: bool = False
    speech_final: bool = False
    from_finalize: bool = False
    request_id: str = ""
    error: str = ""


def parse_message(text: str) -> DeepgramMessage:
    """One JSON message from Deepgram; raises ValueError when it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError("not a Deepgram message")
    kind = data["type"]
    if kind == "Results":
        alts = ((data.get("channel") or {}).get("alternatives")) or [{}]
        alt = alts[0] if isinstance(alts[0], dict) else {}
        transcript = alt.get("transcript", "")
        if not isinstance(transcript, str):
            raise ValueError("transcript is not a string")
        return DeepgramMessage(
            "Results",
            transcript.strip(),
            alt.get("confidence"),
            bool(data.get("is_final")),
            bool(data.get("speech_final")),
            bool(data.get("from_finalize")),
            str((data.get("metadata") or {}).get("request_id") or ""),
        )
    if kind == "Metadata":
        return DeepgramMessage(kind, request_id=str(data.get("request_id") or ""))
    if kind == "Error":
        return DeepgramMessage(
            kind, error=str(data.get("description") or data.get("message") or data)
        )
    return DeepgramMessage(kind)


class UtteranceAssembler:
    """Deepgram messages in, partial and final utterance transcripts out."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.interim = ""

    def feed(self, msg: DeepgramMessage) -> list[Transcript]:
        if msg.type == "UtteranceEnd":
            return self._final(None)
        if msg.type != "Results":
            return []
        if not msg.is_final:
            self.interim = msg.transcript
            text = self._text(msg.transcript)
            return [Transcript(text, is_final=False, confidence=msg.confidence)] if text else []
        self.interim = ""
        if msg.transcript:
            self.committed.append(msg.transcript)
        if msg.speech_final or msg.from_finalize:
            return self._final(msg.confidence)
        text = self._text("")
        return [Transcript(text, is_final=False, confidence=msg.confidence)] if text else []

    def _text(self, tail: str) -> str:
        return " ".join([*self.committed, tail]).strip() if tail else " ".join(self.committed)

    def _final(self, confidence: float | None) -> list[Transcript]:
        text = " ".join(self.committed).strip()
        self.committed, self.interim = [], ""
        return [Transcript(text, is_final=True, confidence=confidence)] if text else []


# -- I/O ------------------------------------------------------------------------------------------------


class DeepgramTranscriber:
    """A :class:`~esl_controller.pipeline.providers.base.StreamingTranscriber`."""

    name = PROVIDER

    def __init__(
        self,
        api_key: str = "",
        *,
        config: Mapping[str, Any] | None = None,
        base_url: str = DEFAULT_URL,
        connect_timeout: float = 5.0,
        keepalive_seconds: float = 5.0,
        max_retries: int = 1,
    ) -> None:
        self.config = dict(config or {})
        self.model = str(self.config.get("model") or DEFAULT_MODEL)
        self.base_url = base_url
        self._api_key = api_key
        self.connect_timeout = connect_timeout
        self.keepalive_seconds = keepalive_seconds
        self.policy = http.HttpPolicy(connect_timeout=connect_timeout, max_retries=max_retries)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], credential: Mapping[str, Any] | None = None
    ) -> DeepgramTranscriber:
        cred = credential or config.get("credential") or {}
        url = str(config.get("url") or cred.get("apiUrl") or DEFAULT_URL)
        url = url.replace("https://", "wss://").replace("http://", "ws://")
        return cls(
            str(cred.get("apiKey") or ""),
            config=config,
            base_url=url,
            connect_timeout=float(config.get("connectTimeoutSeconds") or 5.0),
            max_retries=int(config.get("maxRetries", 1)),
        )

    def open_stream(self, sample_rate: int) -> DeepgramStream:
        url = listen_url(self.base_url, listen_params(self.config, sample_rate))
        return http.with_retries(
            self.policy,
            PROVIDER,
            "stt",
            lambda: DeepgramStream.connect(
                url,
                self._api_key,
                sample_rate,
                self.model,
                connect_timeout=self.connect_timeout,
                keepalive_seconds=self.keepalive_seconds,
            ),
        )


def _error(message: str, *, retryable: bool = True, status: int | None = None) -> ProviderError:
    return ProviderError(
        message, provider=PROVIDER, kind="stt", retryable=retryable, status_code=status
    )


class DeepgramStream:
    """One live WebSocket to Deepgram; see the module docstring."""

    def __init__(
        self,
        sock: socket.socket,
        ws: WSConnection,
        sample_rate: int,
        model: str,
        request_id: str,
        keepalive_seconds: float,
    ) -> None:
        self.sock = sock
        self.ws = ws
        self.sample_rate = sample_rate
        self.model = model
        self.request_id = request_id
        self.keepalive_seconds = keepalive_seconds
        self.assembler = UtteranceAssembler()
        self.queue: gevent.queue.Queue = gevent.queue.Queue(QUEUE_LIMIT)
        self.error: ProviderError | None = None
        self.closed = gevent.event.Event()
        self.finalized = gevent.event.Event()
        self.dropped = 0
        self._send_lock = gevent.lock.Semaphore()
        self._last_send = time.monotonic()
        self._bytes_total = 0
        self._bytes_billed = 0
        self._reader = gevent.spawn(self._read_loop)

    # -- connect ----------------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        url: str,
        api_key: str,
        sample_rate: int,
        model: str,
        *,
        connect_timeout: float,
        keepalive_seconds: float,
    ) -> DeepgramStream:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
            if secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except OSError as exc:
            raise http.transport_error(PROVIDER, "stt", exc) from exc
        ws = WSConnection(ConnectionType.CLIENT)
        headers = [(b"authorization", f"Token {api_key}".encode())] if api_key else []
        target = parts.path + ("?" + parts.query if parts.query else "")
        try:
            sock.sendall(ws.send(Request(host=parts.netloc, target=target, extra_headers=headers)))
            request_id = cls._handshake(sock, ws)
        except (OSError, ProviderError) as exc:
            sock.close()
            raise http.transport_error(PROVIDER, "stt", exc) from exc
        sock.settimeout(keepalive_seconds)
        return cls(sock, ws, sample_rate, model, request_id, keepalive_seconds)

    @staticmethod
    def _handshake(sock: socket.socket, ws: WSConnection) -> str:
        status, body = 0, b""
        while True:
            data = sock.recv(65536)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    headers = {k.decode().lower(): v.decode() for k, v in event.extra_headers}
                    return http.request_id(headers)
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise http.status_error(PROVIDER, "stt", status, what="connection")
                if isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise http.status_error(PROVIDER, "stt", status, body, what="connection")
            if not data:
                raise _error("Deepgram closed the connection during the handshake")

    # -- the protocol -------------------------------------------------------------------------------

    def push(self, pcm16: bytes) -> None:
        self._check()
        if pcm16:
            self._send(BytesMessage(data=pcm16))
            self._bytes_total += len(pcm16)

    def results(self, timeout: float) -> Iterator[Transcript]:
        """Transcripts available now, or the first one to arrive within ``timeout`` seconds."""
        try:
            yield self.queue.get(timeout=timeout)
        except gevent.queue.Empty:
            self._check()
            return
        while True:
            try:
                yield self.queue.get_nowait()
            except gevent.queue.Empty:
                return

    def finish(self, timeout: float) -> Transcript | None:
        """Flush the utterance (``Finalize``) and return its final transcript, or None if nothing was said."""
        self._check()
        self.finalized.clear()
        self._send_json({"type": "Finalize"})
        self.finalized.wait(timeout)
        final: Transcript | None = None
        while True:
            try:
                item = self.queue.get_nowait()
            except gevent.queue.Empty:
                break
            if item.is_final:
                final = (
                    item
                    if final is None
                    else Transcript(
                        f"{final.text} {item.text}", True, item.confidence, usage=item.usage
                    )
                )
        if final is None and self.error is not None:
            raise self.error
        return final

    def close(self, timeout: float = 2.0) -> None:
        if not self.closed.is_set() and self.error is None:
            try:
                self._send_json({"type": "CloseStream"})
                self.closed.wait(timeout)
            except ProviderError:
                pass
        self._reader.kill(block=False)
        try:
            self.sock.close()
        finally:
            self.closed.set()

    def usage(self) -> Usage:
        """All audio streamed so far."""
        return self._usage(self._bytes_total)

    # -- internals -------------------------------------------------------------------------------------

    def _usage(self, nbytes: int) -> Usage:
        return Usage(
            kind="stt",
            provider=PROVIDER,
            model=self.model,
            audio_seconds=round(nbytes / (2.0 * self.sample_rate), 3),
            request_id=self.request_id,
        )

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.closed.is_set():
            raise _error("the Deepgram stream is closed")

    def _send_json(self, obj: Mapping[str, Any]) -> None:
        self._send(TextMessage(data=json.dumps(obj)))

    def _send(self, event: Any) -> None:
        with self._send_lock:
            try:
                self.sock.sendall(self.ws.send(event))
            except (OSError, ValueError) as exc:  # ValueError: wsproto in the wrong state
                self._fail(http.transport_error(PROVIDER, "stt", exc))
                raise self.error from exc  # type: ignore[misc]
            self._last_send = time.monotonic()

    def _fail(self, err: ProviderError) -> None:
        if self.error is None:
            self.error = err
        self.finalized.set()

    def _read_loop(self) -> None:
        text: list[str] = []
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    if time.monotonic() - self._last_send >= self.keepalive_seconds * 0.9:
                        self._send_json({"type": "KeepAlive"})
                    continue
                self.ws.receive_data(data or None)
                for event in self.ws.events():
                    if isinstance(event, TextMessage):
                        text.append(event.data)
                        if event.message_finished:
                            self._on_message("".join(text))
                            text = []
                    elif isinstance(event, Ping):
                        with self._send_lock:
                            self.sock.sendall(self.ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        if event.code not in (1000, 1005):
                            self._fail(
                                _error(
                                    f"Deepgram closed the stream: {event.code} {event.reason}",
                                    retryable=event.code != 1008,
                                )
                            )
                        with self._send_lock:
                            try:
                                self.sock.sendall(self.ws.send(event.response()))
                            except (OSError, ValueError):
                                pass
                        return
                    elif isinstance(event, Message):
                        continue
                if not data:
                    self._fail(_error("Deepgram dropped the connection"))
                    return
        except ProviderError as exc:
            self._fail(exc)
        except Exception as exc:  # noqa: BLE001 - the reader must record, not die silently
            self._fail(http.transport_error(PROVIDER, "stt", exc))
        finally:
            self.closed.set()
            self.finalized.set()

    def _on_message(self, raw: str) -> None:
        try:
            msg = parse_message(raw)
        except ValueError:
            log.warning("deepgram: ignoring a malformed message (%d bytes)", len(raw))
            return
        if msg.type == "Error":
            self._fail(_error(f"Deepgram error: {msg.error}"))
            return
        for item in self.assembler.feed(msg):
            if item.is_final:
                item = Transcript(
                    item.text,
                    True,
                    item.confidence,
                    usage=self._usage(self._bytes_total - self._bytes_billed),
                )
                self._bytes_billed = self._bytes_total
            self._put(item)
        if msg.from_finalize:
            self.finalized.set()

    def _put(self, item: Transcript) -> None:
        try:
            self.queue.put_nowait(item)
        except gevent.queue.Full:
            self.dropped += 1
            if item.is_final:  # never lose a final: drop the oldest entry instead
                try:
                    self.queue.get_nowait()
                except gevent.queue.Empty:
                    pass
                self.queue.put_nowait(item)


# registers the hosted factories when the registry discovers this module
from esl_controller.pipeline.providers import hosted as _hosted  # noqa: E402, F401
