"""``FreeSwitchPeer``: a protocol-faithful stand-in for FreeSWITCH, for tests and operators.

    peer = FreeSwitchPeer(password="ClueCon")          # ESL server on an ephemeral loopback port
    peer.start()
    conn = InboundConnection(InboundSettings(port=peer.port, password="ClueCon"))
    ...
    leg = peer.place_call(controller_host, controller_port)   # a carrier call routed to `socket`
    peer.commands.wait_for("sendmsg", timeout=5)                # every command is recorded
    leg.hangup("NORMAL_CLEARING")                               # the caller hangs up
    peer.stop()

Run it without FreeSWITCH: ``python -m esl_controller.testing --port 8021 [--call HOST:PORT]``.
"""

from __future__ import annotations

import argparse
import logging
import signal

import gevent
import gevent.event
from gevent.server import StreamServer

from .connections import ESLServerConnection, OutboundLeg
from .switch import CallScenario, FakeSwitch

log = logging.getLogger("esl_controller.testing")


class FreeSwitchPeer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str = "ClueCon") -> None:
        self.host = host
        self.password = password
        self.switch = FakeSwitch()
        self.reject_connections = False  # ACL rejection: text/rude-rejection then close
        self.connections: list[ESLServerConnection] = []
        self._changed = gevent.event.Event()
        self._server = StreamServer((host, port), self._handle)

    # -- lifecycle
    def start(self) -> None:
        self._server.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._server.stop(timeout=timeout)
        self.drop_connections()
        for leg in list(self.switch.legs):
            leg.drop()

    @property
    def port(self) -> int:
        return self._server.server_port

    # -- shortcuts for tests
    @property
    def commands(self):
        return self.switch.commands

    @property
    def scenarios(self) -> dict[str, CallScenario]:
        return self.switch.scenarios

    def place_call(self, host: str, port: int, **kwargs) -> OutboundLeg:
        return self.switch.place_call(host, port, **kwargs)

    def wait_leg(self, timeout: float = 5.0, index: int = 0) -> OutboundLeg:
        return self.switch.wait_leg(timeout, index)

    def drop_connections(self) -> None:
        """Close every inbound ESL connection abruptly (FreeSWITCH died)."""
        for conn in list(self.connections):
            conn.close()

    def live_connections(self) -> list[ESLServerConnection]:
        return [c for c in self.connections if c.authed and not c.closed.is_set()]

    def wait_inbound_connections(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until exactly ``count`` authenticated inbound connections are open."""
        with gevent.Timeout(timeout, False):
            while True:
                changed = self._changed
                if len(self.live_connections()) == count:
                    return True
                changed.wait()
        return False

    def _notify(self) -> None:
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def _handle(self, sock, address) -> None:
        conn = ESLServerConnection(
            self.switch, sock, self.password, reject=self.reject_connections, on_change=self._notify
        )
        self.connections.append(conn)
        try:
            conn.run()
        finally:
            if conn in self.connections:
                self.connections.remove(conn)
            self._notify()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake FreeSWITCH event socket for development")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8021)
    parser.add_argument("--password", default="ClueCon")
    parser.add_argument("--call", metavar="HOST:PORT", help="place one inbound call to this socket")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    peer = FreeSwitchPeer(args.host, args.port, args.password)
    peer.start()
    log.info("fake FreeSWITCH event socket on %s:%s", args.host, peer.port)
    if args.call:
        host, _, port = args.call.rpartition(":")
        peer.place_call(host, int(port))
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGINT, stop.set)
    gevent.signal_handler(signal.SIGTERM, stop.set)
    stop.wait()
    peer.stop()
    return 0
