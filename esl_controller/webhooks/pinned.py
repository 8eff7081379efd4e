"""Outbound HTTP to an address that already passed the URL policy (webhook delivery and tool requests).

The name is resolved once (:func:`system_resolver`), every address is checked (``targets.check_url``), and the
connection then goes to one of those addresses, never to a second lookup that could answer differently. The Host
header and the TLS server name stay the URL's host.
"""

from __future__ import annotations

import http.client
import socket
import ssl


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in order, without duplicates."""
    seen: list[str] = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    return seen


class PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to ``address`` for ``host``; ``timeout`` bounds the connect and each socket read."""

    def __init__(
        self, host: str, port: int, address: str, timeout: float, tls: bool = False
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        if self.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        self.sock = sock
