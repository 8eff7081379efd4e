"""Inbound ESL connection (the controller connects to FreeSWITCH's event socket, default :8021).

Built on ``greenswitch.esl.InboundESL`` (its handler registry ``register_handle``/``unregister_handle``
keyed by Event-Name or Event-Subclass with a ``*`` fallback, and its connection fields), with the
greenswitch gaps fixed here in a subclass rather than in the installed package:

* bytes are read from the socket and parsed by our pure ``FrameParser`` (bodies split from headers,
  Content-Length counted in bytes, header values decoded one by one; greenswitch's line reader
  URL-decodes whole events and glues bodies onto headers);
* every command waits with a timeout (``CommandTimeout``), and a dropped connection fails every
  pending command and ``bgapi`` job with ``ConnectionLost``;
* ``bgapi`` jobs are matched to their BACKGROUND_JOB event by a Job-UUID we choose;
* reconnect with exponential backoff in a supervisor greenlet; ``state`` for ``/ready``;
* handler exceptions are logged and contained; handlers run in their own greenlet, so a handler
  may call ``api()`` without blocking the socket reader.

Handlers receive ``esl_controller.esl.protocol.Event`` objects (not greenswitch ``ESLEvent``).
The password is never logged.
"""

from __future__ import annotations

import enum
import logging
import socket as _stdsocket
import uuid as _uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import gevent
import gevent.event
import gevent.socket
from greenswitch.esl import InboundESL

from .errors import AuthenticationFailed, CommandFailed, CommandTimeout, ConnectionLost, ESLError
from .protocol import (
    ApiResult,
    Event,
    Frame,
    FrameParser,
    ProtocolError,
    parse_event,
    serialize_command,
    serialize_sendmsg,
)
from .waiters import EventPump, KeyedWaiters, ReplyFifo

log = logging.getLogger("esl_controller.esl.inbound")

DEFAULT_EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "DTMF",
    "BACKGROUND_JOB",
)


@dataclass(frozen=True)
class InboundSettings:
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = field(default="ClueCon", repr=False)
    connect_timeout: float = 5.0
    command_timeout: float = 10.0
    bgapi_timeout: float = 120.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    events: tuple[str, ...] = DEFAULT_EVENTS
    subclasses: tuple[str, ...] = ()


class ConnState(str, enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    CONNECTED = "connected"
    STOPPED = "stopped"


class BackgroundJob:
    """A running ``bgapi`` command; ``wait()`` returns its BACKGROUND_JOB result."""

    def __init__(self, job_uuid: str, result: gevent.event.AsyncResult, jobs: KeyedWaiters) -> None:
        self.job_uuid = job_uuid
        self._result = result
        self._jobs = jobs

    def wait(self, timeout: float) -> ApiResult:
        try:
            return self._result.get(timeout=timeout)
        except gevent.Timeout:
            self._jobs.discard(self.job_uuid)
            raise CommandTimeout(
                f"bgapi job {self.job_uuid}: no result within {timeout}s"
            ) from None


StateListener = Callable[[ConnState, str], None]


class InboundConnection(InboundESL):
    """A supervised inbound connection. ``start()`` connects in the background and reconnects."""

    def __init__(self, settings: InboundSettings) -> None:
        super().__init__(
            settings.host, settings.port, settings.password, timeout=settings.connect_timeout
        )
        self.settings = settings
        self._state = ConnState.DISCONNECTED
        self.last_error = ""
        self._fifo: ReplyFifo | None = None
        self._jobs = KeyedWaiters()
        self._pump = EventPump(self._dispatch, "esl inbound")
        self._state_listeners: list[StateListener] = []
        self._stop_event = gevent.event.Event()
        self._connected_event = gevent.event.Event()
        self._supervisor: gevent.Greenlet | None = None
        self._reader: gevent.Greenlet | None = None
        self._auth_waiter: gevent.event.AsyncResult | None = None
        self.sock = None

    # ----------------------------------------------------------------- public interface
    @property
    def state(self) -> ConnState:
        return self._state

    def add_handler(self, key: str, handler: Callable[[Event], None]) -> None:
        """``key`` = Event-Name, Event-Subclass (``mod_audio_fork::play_audio``) or ``*``
        (called only for events with no specific handler)."""
        self.register_handle(key, handler)

    def remove_handler(self, key: str, handler: Callable[[Event], None]) -> None:
        self.unregister_handle(key, handler)

    def add_state_listener(self, listener: StateListener) -> None:
        """``listener(state, reason)`` is called (in the handler greenlet) on every state change."""
        self._state_listeners.append(listener)

    def start(self) -> None:
        if self._supervisor is None:
            self._stop_event.clear()
            self._supervisor = gevent.spawn(self._supervise)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected_event.wait(timeout=timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Send ``exit`` (best effort), close, stop reconnecting. Pending waiters fail."""
        self._stop_event.set()
        if self._state == ConnState.CONNECTED:
            try:
                self.command("exit", timeout=min(timeout, 2.0))
            except ESLError as exc:
                log.debug("exit not acknowledged: %s", exc)
        self._close_socket()
        if self._supervisor is not None:
            self._supervisor.kill(timeout=timeout)
            self._supervisor = None
        if self._reader is not None:
            self._reader.kill(timeout=timeout)
        self._lost("stopped")
        self._set_state(ConnState.STOPPED, "stopped")
        self._pump.stop(timeout)

    def command(
        self,
        line: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Frame:
        """Send one command frame and return its reply frame (command/reply or api/response)."""
        return self._request(serialize_command(line, headers, body), timeout, line.split(" ", 1)[0])

    def send(self, data: str, timeout: float | None = None) -> Frame:  # greenswitch's name
        return self.command(data, timeout=timeout)

    def api(self, cmd: str, timeout: float | None = None) -> ApiResult:
        """``api <cmd>``: blocking on FreeSWITCH's side; use for quick commands only."""
        frame = self.command(f"api {cmd}", timeout=timeout)
        return ApiResult(frame.body.decode("utf-8", errors="replace"))

    def bgapi_start(self, cmd: str, timeout: float | None = None) -> BackgroundJob:
        """Send ``bgapi <cmd>`` with our own Job-UUID; return the job once FS accepted it."""
        job_uuid = str(_uuid.uuid4())
        result = self._jobs.add(job_uuid)
        try:
            frame = self.command(f"bgapi {cmd}", [("Job-UUID", job_uuid)], timeout=timeout)
        except ESLError:
            self._jobs.discard(job_uuid)
            raise
        if not frame.ok:
            self._jobs.discard(job_uuid)
            raise CommandFailed(frame.reply_text)
        return BackgroundJob(job_uuid, result, self._jobs)

    def bgapi(self, cmd: str, timeout: float | None = None) -> ApiResult:
        """``bgapi <cmd>`` and wait for its BACKGROUND_JOB (default ``bgapi_timeout``)."""
        job = self.bgapi_start(cmd)
        return job.wait(self.settings.bgapi_timeout if timeout is None else timeout)

    def sendmsg(
        self,
        uuid: str,
        app: str,
        arg: str | None = None,
        *,
        event_lock: bool = True,
        event_uuid: str | None = None,
        timeout: float | None = None,
    ) -> Frame:
        """Queue ``execute app arg`` on a channel; raises ``CommandFailed`` on ``-ERR``."""
        data = serialize_sendmsg(
            uuid, app=app, arg=arg, event_lock=event_lock, event_uuid=event_uuid
        )
        frame = self._request(data, timeout, "sendmsg")
        if not frame.ok:
            raise CommandFailed(frame.reply_text)
        return frame

    # ----------------------------------------------------------------- connection
    def connect(self) -> None:
        """One connection attempt: TCP, auth, subscribe. Raises on failure (no retry here)."""
        s = self.settings
        self._set_state(ConnState.CONNECTING, "")
        sock = gevent.socket.create_connection((s.host, s.port), timeout=s.connect_timeout)
        sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        sock.settimeout(None)
        self.sock = sock
        self._fifo = ReplyFifo(sock.sendall)
        self._jobs.reset()
        self._auth_waiter = gevent.event.AsyncResult()
        self._reader = gevent.spawn(self.receive_events, sock, FrameParser())
        self._set_state(ConnState.AUTHENTICATING, "")
        try:
            greeting = self._auth_waiter.get(timeout=s.connect_timeout)
        except gevent.Timeout:
            raise CommandTimeout("no auth/request from FreeSWITCH") from None
        if greeting != "auth/request":
            raise AuthenticationFailed(f"FreeSWITCH refused the connection ({greeting})")
        reply = self._request(serialize_command(f"auth {s.password}"), s.connect_timeout, "auth")
        if reply.reply_text != "+OK accepted":
            raise AuthenticationFailed(f"auth refused: {reply.reply_text}")
        events = list(dict.fromkeys([*s.events, "BACKGROUND_JOB"]))
        line = "event plain " + " ".join(events)
        if s.subclasses:
            line += " CUSTOM " + " ".join(s.subclasses)
        reply = self.command(line, timeout=s.command_timeout)
        if not reply.ok:
            raise CommandFailed(f"event subscription refused: {reply.reply_text}")
        self.connected = True
        self._set_state(ConnState.CONNECTED, "")
        self._connected_event.set()
        log.info("connected to FreeSWITCH at %s:%s", s.host, s.port)

    def receive_events(
        self, sock=None, parser: FrameParser | None = None
    ) -> None:  # greenswitch's name
        reason = "connection closed by FreeSWITCH"
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    parser.feed_eof()
                    break
                parser.feed(data)
                for frame in parser:
                    self.handle_event(frame)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.error("ESL inbound: %s", reason)
        except OSError as exc:
            reason = f"socket error: {exc}"
        finally:
            if self.sock is sock:
                self._lost(reason)
            try:
                sock.close()
            except OSError:
                pass

    def handle_event(self, frame: Frame) -> None:  # greenswitch's name, takes our Frame
        ctype = frame.content_type
        if ctype in ("command/reply", "api/response"):
            if self._fifo is None or not self._fifo.resolve(frame):
                log.warning("unexpected reply from FreeSWITCH: %s", frame.reply_text or ctype)
        elif ctype in ("text/event-plain", "text/event-json"):
            event = parse_event(frame)
            if event.name == "BACKGROUND_JOB":
                job = event.get("Job-UUID", "") or ""
                self._jobs.resolve(job, ApiResult(event.body.decode("utf-8", errors="replace")))
            self._pump.put(event)
        elif ctype in ("auth/request", "text/rude-rejection"):
            if self._auth_waiter is not None:
                self._auth_waiter.set(ctype)
        elif ctype == "text/disconnect-notice":
            log.info("FreeSWITCH sent a disconnect notice")
        elif ctype != "log/data":
            log.debug("ignoring frame with Content-Type %r", ctype)

    # ----------------------------------------------------------------- internals
    def _request(self, data: bytes, timeout: float | None, what: str) -> Frame:
        fifo = self._fifo
        if fifo is None or self._state not in (ConnState.AUTHENTICATING, ConnState.CONNECTED):
            raise ConnectionLost(f"{what}: not connected to FreeSWITCH")
        return fifo.request(
            data, self.settings.command_timeout if timeout is None else timeout, what
        )

    def _lost(self, reason: str) -> None:
        self.connected = False
        self._connected_event.clear()
        exc = ConnectionLost(reason)
        if self._fifo is not None:
            self._fifo.fail_all(exc)
        self._jobs.fail_all(exc)
        if self._auth_waiter is not None and not self._auth_waiter.ready():
            self._auth_waiter.set(reason)
        if self._state not in (ConnState.DISCONNECTED, ConnState.STOPPED):
            self._set_state(ConnState.DISCONNECTED, reason)

    def _close_socket(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(_stdsocket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _set_state(self, state: ConnState, reason: str) -> None:
        if state == self._state and (not reason or reason == self.last_error):
            return
        self._state = state
        if reason:
            self.last_error = reason
        for listener in list(self._state_listeners):
            self._pump.put(_StateChange(listener, state, reason))

    def _supervise(self) -> None:
        backoff = self.settings.backoff_initial
        while not self._stop_event.is_set():
            try:
                self.connect()
                backoff = self.settings.backoff_initial
                self._reader.join()
                continue_reason = self.last_error or "connection lost"
                log.warning("FreeSWITCH connection lost: %s", continue_reason)
            except (OSError, ESLError) as exc:
                reason = str(exc) or exc.__class__.__name__
                log.warning(
                    "FreeSWITCH %s:%s unavailable: %s; retry in %.1fs",
                    self.settings.host,
                    self.settings.port,
                    reason,
                    backoff,
                )
                self._close_socket()
                self._lost(reason)
                self._set_state(ConnState.DISCONNECTED, reason)
            if self._stop_event.wait(timeout=backoff):
                break
            backoff = min(backoff * 2, self.settings.backoff_max)

    def _dispatch(self, item: object) -> None:
        if isinstance(item, _StateChange):
            item.listener(item.state, item.reason)
            return
        assert isinstance(item, Event)
        key = item.subclass if item.name == "CUSTOM" else item.name
        handlers = self.event_handlers.get(key) or self.event_handlers.get("*") or []
        for handler in list(handlers):
            try:
                handler(item)
            except Exception:
                log.exception("handler %r failed on %s", handler, key)


@dataclass(frozen=True)
class _StateChange:
    listener: StateListener
    state: ConnState
    reason: str
