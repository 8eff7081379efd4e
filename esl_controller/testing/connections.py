"""The peer's ESL connections: the inbound event-socket server side (``ESLServerConnection``) and
the outbound-socket client that connects to the controller for one channel (``OutboundLeg``).

Both parse with the pure ``FrameParser`` (client frames), answer commands strictly in order,
write events only between frames, and record every command in ``switch.commands``.
"""

from __future__ import annotations

import logging
import socket as _stdsocket

import gevent
import gevent.event
import gevent.socket
from gevent.lock import Semaphore

from esl_controller.esl.protocol import (
    Frame,
    FrameParser,
    ProtocolError,
    serialize_api_response,
    serialize_auth_request,
    serialize_channel_data_reply,
    serialize_disconnect_notice,
    serialize_event_json,
    serialize_event_plain,
    serialize_linger_notice,
    serialize_reply,
    serialize_rude_rejection,
)

from .model import Subscription, new_uuid
from .recorder import ReceivedCommand

log = logging.getLogger("esl_controller.testing")


class PeerConnection:
    """Shared parts: socket writes under a lock, event delivery, the command loop."""

    source = "peer"

    def __init__(self, switch, sock=None) -> None:
        self.switch = switch
        self.sock = sock
        self.sub = Subscription()
        self.closed = gevent.event.Event()
        self._wlock = Semaphore()
        self._subscribed = False

    def write(self, data: bytes) -> None:
        with self._wlock:
            if self.closed.is_set() or self.sock is None:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self._shut()

    def deliver(self, items: list[tuple[str, str]], body: bytes) -> None:
        if self.closed.is_set() or not self.sub.wants(items):
            return
        if self.sub.fmt == "json":
            self.write(serialize_event_json(items, body))
        else:
            self.write(serialize_event_plain(items, body))

    def subscribe(self) -> None:
        if not self._subscribed:
            self._subscribed = True
            self.switch.subscribers.append(self)

    def close(self) -> None:
        """Orderly close (after any notice was written)."""
        with self._wlock:
            self._shut()

    def _shut(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self in self.switch.subscribers:
            self.switch.subscribers.remove(self)
        if self.sock is not None:
            try:
                self.sock.shutdown(_stdsocket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def serve(self) -> None:
        parser = FrameParser(client_frames=True)
        try:
            while not self.closed.is_set():
                data = self.sock.recv(65536)
                if not data:
                    break
                parser.feed(data)
                for frame in parser:
                    self.switch.commands.record(ReceivedCommand(self.source, frame.command, frame))
                    if any(frame.command.startswith(p) for p in self.switch.stall_prefixes):
                        # A hung command blocks the connection (FS answers strictly in order).
                        gevent.wait([self.switch.stall_released, self.closed], count=1)
                    if self.closed.is_set():
                        return
                    self.handle(frame)
                    if self.closed.is_set():
                        return
        except (OSError, ProtocolError) as exc:
            log.debug("%s: connection ended: %s", self.source, exc)
        finally:
            self._shut()

    def handle(self, frame: Frame) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # Commands shared by both kinds of connection --------------------------------------
    def common(self, frame: Frame, owner: str = "") -> bool:
        cmd, _, args = frame.command.partition(" ")
        args = args.strip()
        if cmd == "event":
            reply = self.sub.add(args.split())
            if reply.startswith("+OK"):
                self.subscribe()
            self.write(serialize_reply(reply))
        elif cmd == "nixevent":
            self.sub.remove(args.split())
            self.write(serialize_reply("+OK events nixed"))
        elif cmd == "noevents":
            self.sub.clear()
            self.write(serialize_reply("+OK no longer listening for events"))
        elif cmd == "filter":
            header, _, value = args.partition(" ")
            self.write(serialize_reply(f"+OK filter added. [{header}]=[{value}]"))
        elif cmd == "api":
            self.write(serialize_api_response(self.switch.api(args, owner)))
        elif cmd == "bgapi":
            job = frame.get("Job-UUID") or new_uuid()
            self.write(serialize_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
            self.switch.bgapi(args, job, owner)
        elif cmd in ("log", "nolog"):
            self.write(
                serialize_reply(
                    "+OK no longer logging" if cmd == "nolog" else f"+OK log level {args}"
                )
            )
        else:
            return False
        return True

    def sendmsg(self, uuid: str, frame: Frame) -> None:
        runner = self.switch.channel(uuid)
        if runner is None:
            self.write(serialize_reply(f"-ERR invalid session id [{uuid}]"))
            return
        self.write(serialize_reply("+OK"))
        command = (frame.get("call-command") or "").lower()
        if command == "execute":
            arg = frame.get("execute-app-arg")
            if arg is None and frame.body:
                arg = frame.body.decode("utf-8", errors="replace")
            runner.queue_app(
                frame.get("execute-app-name") or "", arg or "", frame.get("Event-UUID") or ""
            )
        elif command == "hangup":
            gevent.spawn(runner.hangup, frame.get("hangup-cause") or "NORMAL_CLEARING")

    def bye(self, session_uuid: str | None = None) -> None:
        self.write(serialize_reply("+OK bye"))
        self.write(serialize_disconnect_notice(session_uuid))
        self.close()


class ESLServerConnection(PeerConnection):
    """Server side of one inbound ESL connection (the controller connected to us)."""

    source = "inbound"

    def __init__(self, switch, sock, password: str, reject: bool = False, on_change=None) -> None:
        super().__init__(switch, sock)
        self.on_change = on_change or (lambda: None)
        self.password = password
        self.reject = reject
        self.authed = False

    def run(self) -> None:
        if self.reject:
            self.write(serialize_rude_rejection())
            self.close()
            return
        self.write(serialize_auth_request())
        self.serve()

    def handle(self, frame: Frame) -> None:
        cmd, _, args = frame.command.partition(" ")
        if not self.authed:
            if cmd == "auth":
                if args == self.password:
                    self.authed = True
                    self.write(serialize_reply("+OK accepted"))
                    self.on_change()
                else:
                    self.write(serialize_reply("-ERR invalid"))
                    self.write(serialize_disconnect_notice())
                    self.close()
            elif cmd in ("exit", "..."):
                self.bye()
            else:
                self.write(serialize_reply("-ERR command not found"))
            return
        if self.common(frame):
            return
        if cmd == "sendmsg":
            self.sendmsg(args.strip(), frame)
        elif cmd == "myevents":
            parts = args.split()
            if not parts or parts[0] not in self.switch.channels:
                self.write(serialize_reply("-ERR invalid uuid"))
            else:
                self.sub.myevents(parts[0])
                self.subscribe()
                self.write(serialize_reply("+OK Events Enabled"))
        elif cmd in ("exit", "..."):
            self.bye()
        else:
            self.write(serialize_reply("-ERR command not found"))


class OutboundLeg(PeerConnection):
    """FreeSWITCH's side of an outbound socket: connects to the controller for one channel.

    Test controls: ``hangup(cause)`` (caller hangs up), ``dtmf(digit)``, ``custom(subclass, body)``,
    ``drop()`` (TCP connection lost mid-call, no notice), and ``wait_connected/wait_closed``.
    """

    def __init__(self, switch, runner, host: str, port: int, *, async_full: bool = True) -> None:
        super().__init__(switch)
        self.runner = runner
        self.host = host
        self.port = port
        self.full = async_full
        self.lingering = False
        self.linger_time = -1
        self.connected = gevent.event.Event()
        self.got_connect = gevent.event.Event()
        self.first_command = True
        self.error = ""

    @property
    def uuid(self) -> str:
        return self.runner.uuid

    @property
    def source(self) -> str:  # type: ignore[override]
        return f"outbound:{self.uuid}"

    # test controls ------------------------------------------------------------------
    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.runner.hangup(cause)

    def dtmf(self, digit: str) -> None:
        self.runner.dtmf(digit)

    def custom(self, subclass: str, body: bytes = b"") -> None:
        self.runner.custom(subclass, body)

    def drop(self) -> None:
        """The TCP connection dies without a notice (the channel itself stays up)."""
        self.close()

    def wait_connected(self, timeout: float = 5.0) -> bool:
        return self.got_connect.wait(timeout=timeout)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        return self.closed.wait(timeout=timeout)

    # connection ---------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.sock = gevent.socket.create_connection((self.host, self.port), timeout=5)
            self.sock.settimeout(None)
        except OSError as exc:
            self.error = str(exc)
            log.warning("socket app: cannot connect to %s:%s: %s", self.host, self.port, exc)
            self.closed.set()
            return
        self.runner.controllers.append(self)
        self.connected.set()
        self.serve()
        if self in self.runner.controllers:
            self.runner.controllers.remove(self)

    def channel_hung_up(self) -> None:
        """Called by the channel after CHANNEL_HANGUP (section 3.4)."""
        ch = self.runner.channel
        if self.lingering:
            self.write(serialize_linger_notice(ch.uuid, ch.name, self.linger_time))
            if self.linger_time > 0:
                gevent.spawn_later(self.linger_time, self._end)
        else:
            self._end()

    def _end(self) -> None:
        self.write(serialize_disconnect_notice(self.uuid))
        self.close()

    def handle(self, frame: Frame) -> None:
        cmd, _, args = frame.command.partition(" ")
        args = args.strip()
        first, self.first_command = self.first_command, False
        if cmd == "connect":
            items = self.switch.factory.channel_data(self.runner.channel)
            self.write(
                serialize_channel_data_reply(
                    items, socket_mode="async", control="full" if self.full else "single-channel"
                )
            )
            self.got_connect.set()
            return
        if first:
            return  # FS swallows the reply to a first command other than connect
        if cmd == "myevents":
            self.sub.myevents(self.uuid)
            if args in ("plain", "json"):
                self.sub.fmt = args
            self.subscribe()
            self.write(serialize_reply("+OK Events Enabled"))
        elif cmd == "linger":
            self.lingering = True
            self.linger_time = int(args) if args.isdigit() else -1
            self.write(
                serialize_reply(f"+OK will linger {args} seconds" if args else "+OK will linger")
            )
        elif cmd == "nolinger":
            self.lingering = False
            self.write(serialize_reply("+OK will not linger"))
        elif cmd == "sendmsg":
            self.sendmsg(args or self.uuid, frame)
        elif cmd == "getvar":
            value = self.switch.api(f"uuid_getvar {self.uuid} {args}")
            ok = value and value != "_undef_" and not value.startswith("-ERR")
            self.write(serialize_reply(value if ok else "-ERR command not found"))
        elif cmd == "resume":
            self.write(serialize_reply("+OK"))
        elif cmd == "divert_events":
            self.write(
                serialize_reply(
                    "+OK events diverted" if args == "on" else "+OK events not diverted"
                )
            )
        elif cmd in ("exit", "..."):
            self.bye(self.uuid)
        elif self.full and self.common(frame, owner=self.uuid):
            return
        else:
            self.write(serialize_reply("-ERR command not found"))
