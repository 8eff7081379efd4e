"""Outbound-socket server: FreeSWITCH's ``socket <host:port> async full`` connects here, one TCP
connection per call, each served in its own greenlet.

Design choice: this module owns the socket and uses our pure ``FrameParser`` instead of
greenswitch's ``OutboundESLServer``/``OutboundSession``. Those call ``sys.exit()`` when the port
cannot be bound, poll the accept loop with sleeps, glue event bodies onto headers, wait for
CHANNEL_EXECUTE_COMPLETE by application name only (not Application-UUID) and disable that matcher
as soon as a handler for the event is registered. greenswitch stays in use for the inbound
connection (``inbound.py``).

Interface::

    def on_call(call: OutboundCall) -> None:       # runs in the connection's greenlet
        call.myevents(); call.linger()
        call.add_handler(fn)                          # fn(Event | DisconnectNotice | CallClosed)
        done = call.execute("answer", timeout=5)     # waits for CHANNEL_EXECUTE_COMPLETE
        ...
    server = OutboundServer("127.0.0.1", 0, on_call); server.start(); server.port

When ``on_call`` returns, the socket is closed (``exit`` first if still open). A peer that drops at
any moment fails every pending command/execute with ``ConnectionLost`` and handlers get one final
``CallClosed``.
"""

from __future__ import annotations

import logging
import socket as _stdsocket
import uuid as _uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gevent
import gevent.event
from gevent.server import StreamServer

from .errors import ChannelGone, CommandFailed, CommandTimeout, ConnectionLost, ESLError
from .protocol import (
    ApiResult,
    DisconnectNotice,
    Event,
    Frame,
    FrameParser,
    ProtocolError,
    channel_data_from_reply,
    disconnect_notice,
    parse_event,
    serialize_command,
    serialize_sendmsg,
)
from .waiters import EventPump, KeyedWaiters, ReplyFifo

log = logging.getLogger("esl_controller.esl.outbound")


@dataclass(frozen=True)
class CallClosed:
    """Last item a handler receives: the socket is closed (``reason`` says why)."""

    reason: str


CallItem = Event | DisconnectNotice | CallClosed
CallHandler = Callable[[CallItem], None]


class OutboundCall:
    """One FreeSWITCH channel controlled through its outbound socket."""

    def __init__(self, sock, address: tuple, command_timeout: float = 10.0) -> None:
        self.sock = sock
        self.address = address
        self.command_timeout = command_timeout
        self.channel_data: Event | None = None
        self.socket_mode = ""
        self.control = ""
        self.lingering = False
        self.hung_up = False
        self.close_reason = ""
        self.closed = gevent.event.Event()
        self._fifo = ReplyFifo(sock.sendall)
        self._apps = KeyedWaiters()
        self._expect: list[tuple[Callable[[Event], bool], gevent.event.AsyncResult]] = []
        self._handlers: list[CallHandler] = []
        self._pump = EventPump(self._dispatch, f"esl call {address}")
        self._reader = gevent.spawn(self._read_loop)

    # ----------------------------------------------------------------- properties
    @property
    def uuid(self) -> str:
        data = self.channel_data
        return "" if data is None else data.unique_id

    @property
    def connected(self) -> bool:
        return not self.closed.is_set()

    def variable(self, name: str, default: str | None = None) -> str | None:
        return None if self.channel_data is None else self.channel_data.variable(name, default)

    # ----------------------------------------------------------------- commands
    def command(
        self, line: str, headers: Sequence[tuple[str, str]] = (), timeout: float | None = None
    ) -> Frame:
        if self.closed.is_set():
            raise ConnectionLost(f"{line.split(' ', 1)[0]}: socket closed ({self.close_reason})")
        return self._fifo.request(
            serialize_command(line, headers),
            self.command_timeout if timeout is None else timeout,
            line.split(" ", 1)[0],
        )

    def connect(self, timeout: float | None = None) -> Event:
        """Send ``connect``; the reply is the CHANNEL_DATA event (kept in ``channel_data``)."""
        reply = self.command("connect", timeout=timeout)
        self.channel_data = channel_data_from_reply(reply)
        self.socket_mode = reply.get("Socket-Mode", "") or ""
        self.control = reply.get("Control", "") or ""
        return self.channel_data

    def _checked(self, line: str, timeout: float | None = None) -> Frame:
        reply = self.command(line, timeout=timeout)
        if not reply.ok:
            raise CommandFailed(reply.reply_text)
        return reply

    def myevents(self, timeout: float | None = None) -> None:
        self._checked("myevents", timeout)

    def linger(self, seconds: int | None = None, timeout: float | None = None) -> None:
        self._checked("linger" if seconds is None else f"linger {int(seconds)}", timeout)

    def subscribe(
        self,
        events: Sequence[str] = (),
        subclasses: Sequence[str] = (),
        timeout: float | None = None,
    ) -> None:
        """``event plain <events> [CUSTOM <subclasses>]`` (needs ``full``)."""
        line = "event plain " + " ".join(events)
        if subclasses:
            line += " CUSTOM " + " ".join(subclasses)
        self._checked(line.replace("  ", " "), timeout)

    def api(self, cmd: str, timeout: float | None = None) -> ApiResult:
        reply = self.command(f"api {cmd}", timeout=timeout)
        return ApiResult(reply.body.decode("utf-8", errors="replace"))

    def execute_async(
        self,
        app: str,
        arg: str | None = None,
        *,
        event_lock: bool = True,
        timeout: float | None = None,
    ) -> AppRun:
        """Queue ``app`` with an Event-UUID; return an ``AppRun`` to wait for its completion."""
        if self.hung_up:
            raise ChannelGone(f"{app}: channel {self.uuid} has hung up")
        app_uuid = str(_uuid.uuid4())
        result = self._apps.add(app_uuid)
        data = serialize_sendmsg(None, app=app, arg=arg, event_lock=event_lock, event_uuid=app_uuid)
        try:
            reply = self._fifo.request(
                data, self.command_timeout if timeout is None else timeout, f"sendmsg {app}"
            )
        except ESLError:
            self._apps.discard(app_uuid)
            raise
        if not reply.ok:
            self._apps.discard(app_uuid)
            raise CommandFailed(reply.reply_text)
        return AppRun(app, app_uuid, result, self._apps)

    def execute(
        self, app: str, arg: str | None = None, *, timeout: float, event_lock: bool = True
    ) -> Event:
        """Run ``app`` and return its CHANNEL_EXECUTE_COMPLETE event (needs ``myevents``)."""
        return self.execute_async(app, arg, event_lock=event_lock, timeout=timeout).wait(timeout)

    def hangup(self, cause: str = "NORMAL_CLEARING", timeout: float | None = None) -> None:
        """``sendmsg`` with ``call-command: hangup``; the hangup events follow."""
        if not cause.replace("_", "").isalnum():
            raise ValueError(f"bad hangup cause {cause!r}")
        data = serialize_sendmsg(None, call_command="hangup", extra=[("hangup-cause", cause)])
        reply = self._fifo.request(
            data, self.command_timeout if timeout is None else timeout, "hangup"
        )
        if not reply.ok:
            raise CommandFailed(reply.reply_text)

    def expect(self, predicate: Callable[[Event], bool]) -> gevent.event.AsyncResult:
        """Register BEFORE acting: the result gets the first later event matching ``predicate``
        (``.get(timeout=...)``); it fails with ``ConnectionLost`` if the socket closes first."""
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        if self.closed.is_set():
            result.set_exception(ConnectionLost(self.close_reason))
        else:
            self._expect.append((predicate, result))
        return result

    def add_handler(self, handler: CallHandler) -> None:
        """``handler(item)`` for each Event, DisconnectNotice and the final CallClosed; runs in
        this call's handler greenlet (not the reader), so it may send commands."""
        self._handlers.append(handler)

    def exit(self, timeout: float = 2.0) -> None:
        """``exit`` (FS answers ``+OK bye``, sends the disconnect notice and closes), then close."""
        if not self.closed.is_set():
            try:
                self.command("exit", timeout=timeout)
                self.closed.wait(timeout=timeout)
            except ESLError as exc:
                log.debug("exit on %s: %s", self.uuid, exc)
        self.close("exit")

    def close(self, reason: str = "closed by controller") -> None:
        if not self.closed.is_set():
            self._closed(reason)
        try:
            self.sock.shutdown(_stdsocket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def join(self, timeout: float) -> bool:
        """Wait until the socket closed and every queued handler call ran."""
        if not self.closed.wait(timeout=timeout):
            return False
        self._pump.stop(timeout)
        return True

    # ----------------------------------------------------------------- reader
    def _read_loop(self) -> None:
        parser = FrameParser()
        reason = "connection closed by FreeSWITCH"
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    parser.feed_eof()
                    break
                parser.feed(data)
                for frame in parser:
                    self._on_frame(frame)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.error("call %s: %s", self.uuid, reason)
        except OSError as exc:
            reason = f"socket error: {exc}"
        if not self.closed.is_set():
            self._closed(reason)
            try:
                self.sock.close()
            except OSError:
                pass

    def _on_frame(self, frame: Frame) -> None:
        ctype = frame.content_type
        if ctype in ("command/reply", "api/response"):
            if not self._fifo.resolve(frame):
                log.warning("call %s: unexpected reply %r", self.uuid, frame.reply_text)
        elif ctype in ("text/event-plain", "text/event-json"):
            self._on_event(parse_event(frame))
        elif ctype == "text/disconnect-notice":
            notice = disconnect_notice(frame)
            if notice.disposition == "linger":
                self.lingering = True
            self._mark_hung_up()
            self._pump.put(notice)
        else:
            log.debug("call %s: ignoring frame %r", self.uuid, ctype)

    def _on_event(self, event: Event) -> None:
        name = event.name
        if name == "CHANNEL_EXECUTE_COMPLETE":
            app_uuid = event.get("Application-UUID", "") or ""
            self._apps.resolve(app_uuid, event)
        elif name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            self._mark_hung_up()
        if self._expect:
            keep = []
            for predicate, result in self._expect:
                try:
                    matched = predicate(event)
                except Exception:
                    log.exception("call %s: expect predicate failed", self.uuid)
                    matched = False
                if matched:
                    result.set(event)
                else:
                    keep.append((predicate, result))
            self._expect = keep
        self._pump.put(event)

    def _mark_hung_up(self) -> None:
        if not self.hung_up:
            self.hung_up = True
            self._apps.fail_all(ChannelGone(f"channel {self.uuid} hung up"))

    def _closed(self, reason: str) -> None:
        self.close_reason = reason
        self.closed.set()
        exc = ConnectionLost(reason)
        self._fifo.fail_all(exc)
        self._apps.fail_all(exc)
        expect, self._expect = self._expect, []
        for _, result in expect:
            result.set_exception(exc)
        self._pump.put(CallClosed(reason))

    def _dispatch(self, item: CallItem) -> None:
        for handler in list(self._handlers):
            try:
                handler(item)
            except Exception:
                log.exception("call %s: handler %r failed", self.uuid, handler)
        if isinstance(item, CallClosed):
            raise gevent.GreenletExit  # ends the pump greenlet: nothing follows CallClosed


class AppRun:
    """An application queued with ``execute_async``."""

    def __init__(
        self, app: str, app_uuid: str, result: gevent.event.AsyncResult, apps: KeyedWaiters
    ):
        self.app = app
        self.application_uuid = app_uuid
        self._result = result
        self._apps = apps

    def wait(self, timeout: float) -> Event:
        """The CHANNEL_EXECUTE_COMPLETE event; ``CommandTimeout``, ``ChannelGone`` or
        ``ConnectionLost`` otherwise."""
        try:
            return self._result.get(timeout=timeout)
        except gevent.Timeout:
            self._apps.discard(self.application_uuid)
            raise CommandTimeout(f"{self.app}: not completed within {timeout}s") from None


class OutboundServer:
    """``OutboundServer(host, port, on_call)``; ``start()`` binds (raises ``OSError`` if it
    cannot: never exits), ``port`` is the bound port (use port 0 in tests), ``stop()``."""

    def __init__(
        self,
        host: str,
        port: int,
        on_call: Callable[[OutboundCall], None],
        *,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        max_connections: int = 2000,
    ) -> None:
        self.host = host
        self.on_call = on_call
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._server = StreamServer((host, port), self._handle, spawn=max_connections)
        self.calls: set[OutboundCall] = set()

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self) -> None:
        self._server.start()
        log.info("outbound-socket server listening on %s:%s", self.host, self.port)

    def stop(self, timeout: float = 5.0) -> None:
        self._server.stop(timeout=timeout)
        for call in list(self.calls):
            call.close("server stopping")

    def _handle(self, sock, address) -> None:
        sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        call = OutboundCall(sock, address, self.command_timeout)
        self.calls.add(call)
        try:
            call.connect(timeout=self.connect_timeout)
            self.on_call(call)
        except ESLError as exc:
            log.warning("call %s from %s ended: %s", call.uuid or "?", address, exc)
        except Exception:
            log.exception("call %s: on_call failed", call.uuid or "?")
        finally:
            call.exit()
            call.join(timeout=self.connect_timeout)
            self.calls.discard(call)
