"""What to capture for one call, and how to recognise its packets (pure: bytes and strings in, data out).

* :func:`target_from_channel` reads the call's channel variables (``variable_*`` headers of a
  CHANNEL_DATA/ANSWER event, or the bare names) into a :class:`CaptureTarget`.
* :func:`bpf_filter` turns a target into a libpcap filter expression, so that the kernel drops
  everything but the SIP ports and this call's RTP/RTCP (RTCP assumed on RTP port + 1).
* The BPF filter cannot tell two calls on the same SIP port apart: :func:`sip_call_id` reads the
  Call-ID of a UDP payload and :func:`keep_packet` keeps only this call's SIP.
* :func:`parse_frame` decodes Ethernet/IPv4/IPv6/UDP headers of a captured frame, and
  :class:`Deduper` removes the second copy of a frame seen twice (loopback delivers every
  packet once as sent, once as received).

Every value that ends up in the filter expression is validated (IP addresses, ports), so a
channel variable cannot inject filter syntax.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping

#: SIP signalling ports of the stock FreeSWITCH profiles (internal, external)
DEFAULT_SIP_PORTS: tuple[int, ...] = (5060, 5080)

_SIP_METHODS = frozenset(
    b"INVITE ACK BYE CANCEL OPTIONS REGISTER PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER MESSAGE UPDATE".split()
)
_ETH_P_IP = 0x0800
_ETH_P_IPV6 = 0x86DD
_ETH_P_8021Q = 0x8100
_IPPROTO_UDP = 17
# IPv6 extension headers that may sit between the fixed header and UDP
_IPV6_EXT = frozenset({0, 43, 60})


class FilterError(ValueError):
    """A channel value cannot be used in a capture filter."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int


@dataclasses.dataclass(frozen=True)
class CaptureTarget:
    """The packets of one call: its SIP dialog (by Call-ID on the SIP ports) and its media."""

    sip_call_id: str
    sip_ports: tuple[int, ...] = DEFAULT_SIP_PORTS
    #: the far end's signalling address, when known (adds its port to the filter for that host)
    sip_peer: Endpoint | None = None
    #: FreeSWITCH's side of the RTP stream (local_media_ip/port)
    local_media: Endpoint | None = None
    #: the far side of the RTP stream (remote_media_ip/port)
    remote_media: Endpoint | None = None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CaptureTarget:
        def ep(value: object) -> Endpoint | None:
            if not value:
                return None
            if not isinstance(value, Mapping):
                raise FilterError(f"bad endpoint {value!r}")
            return _endpoint(str(value.get("ip", "")), value.get("port"))

        ports = data.get("sip_ports", DEFAULT_SIP_PORTS)
        if not isinstance(ports, Iterable) or isinstance(ports, (str, bytes)):
            raise FilterError(f"bad sip_ports {ports!r}")
        return cls(
            sip_call_id=_call_id(str(data.get("sip_call_id", ""))),
            sip_ports=tuple(_port(p) for p in ports),
            sip_peer=ep(data.get("sip_peer")),
            local_media=ep(data.get("local_media")),
            remote_media=ep(data.get("remote_media")),
        )

    @property
    def media_ip(self) -> str | None:
        """The address to route towards when choosing the interface."""
        for ep in (self.remote_media, self.sip_peer, self.local_media):
            if ep is not None:
                return ep.ip
        return None


def _port(value: object) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise FilterError(f"bad port {value!r}") from None
    if not 0 < port < 65535:  # 65535 excluded: RTCP is port + 1
        raise FilterError(f"port out of range: {value!r}")
    return port


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise FilterError(f"bad IP address {value!r}") from None


def _endpoint(ip: str, port: object) -> Endpoint:
    return Endpoint(_ip(ip), _port(port))


def _call_id(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 512 or any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        raise FilterError(f"bad SIP Call-ID {value!r}")
    return value


def _var(channel: Mapping[str, str], name: str) -> str:
    value = channel.get(f"variable_{name}", channel.get(name, ""))
    return "" if value in (None, "_undef_") else str(value).strip()


def _optional_endpoint(channel: Mapping[str, str], ip_var: str, port_var: str) -> Endpoint | None:
    ip, port = _var(channel, ip_var), _var(channel, port_var)
    if not ip or not port or port == "0":
        return None
    return _endpoint(ip, port)


def target_from_channel(
    channel: Mapping[str, str], sip_ports: Iterable[int] = DEFAULT_SIP_PORTS
) -> CaptureTarget:
    """Build the target from channel variables (``variable_<name>`` or ``<name>`` keys, decoded).

    Requires ``sip_call_id``; media endpoints are optional (not known before answer, and they
    change on re-INVITE: build a new target then). Raises :class:`FilterError`.
    """
    return CaptureTarget(
        sip_call_id=_call_id(_var(channel, "sip_call_id")),
        sip_ports=tuple(sorted({_port(p) for p in sip_ports})),
        sip_peer=_optional_endpoint(channel, "sip_network_ip", "sip_network_port"),
        local_media=_optional_endpoint(channel, "local_media_ip", "local_media_port"),
        remote_media=_optional_endpoint(channel, "remote_media_ip", "remote_media_port"),
    )


def _host_ports(direction: str, ep: Endpoint) -> str:
    return f"({direction} host {ep.ip} and ({direction} port {ep.port} or {direction} port {ep.port + 1}))"


def bpf_filter(target: CaptureTarget) -> str:
    """A libpcap filter expression for the target (UDP only: SIP over TCP/TLS is not captured)."""
    terms = [" or ".join(f"port {p}" for p in target.sip_ports)] if target.sip_ports else []
    if target.sip_peer is not None:
        terms.append(f"host {target.sip_peer.ip} and port {target.sip_peer.port}")
    for ep in (target.local_media, target.remote_media):
        if ep is not None:
            # either direction, but the address and the port must belong to the same side
            terms.append(f"{_host_ports('src', ep)} or {_host_ports('dst', ep)}")
    if not terms:
        raise FilterError("nothing to capture")
    return "udp and (" + " or ".join(f"({t})" for t in terms) + ")"


# --- packets -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UdpDatagram:
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def parse_frame(frame: bytes) -> UdpDatagram | None:
    """Decode an Ethernet frame down to UDP; None for anything else (or truncated/malformed)."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    off = 14
    while ethertype == _ETH_P_8021Q and len(frame) >= off + 4:
        ethertype = struct.unpack_from("!H", frame, off + 2)[0]
        off += 4
    if ethertype == _ETH_P_IP:
        if len(frame) < off + 20:
            return None
        vihl, proto = frame[off], frame[off + 9]
        ihl = (vihl & 0x0F) * 4
        frag = struct.unpack_from("!H", frame, off + 6)[0]
        if vihl >> 4 != 4 or ihl < 20 or proto != _IPPROTO_UDP or frag & 0x1FFF:
            return None
        src = str(ipaddress.IPv4Address(frame[off + 12 : off + 16]))
        dst = str(ipaddress.IPv4Address(frame[off + 16 : off + 20]))
        off += ihl
    elif ethertype == _ETH_P_IPV6:
        if len(frame) < off + 40:
            return None
        nxt = frame[off + 6]
        src = str(ipaddress.IPv6Address(frame[off + 8 : off + 24]))
        dst = str(ipaddress.IPv6Address(frame[off + 24 : off + 40]))
        off += 40
        while nxt in _IPV6_EXT and len(frame) >= off + 2:
            nxt, off = frame[off], off + (frame[off + 1] + 1) * 8
        if nxt != _IPPROTO_UDP:
            return None
    else:
        return None
    if len(frame) < off + 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", frame, off)
    end = min(len(frame), off + length) if length >= 8 else len(frame)
    return UdpDatagram(src, sport, dst, dport, bytes(frame[off + 8 : end]))


def sip_call_id(payload: bytes) -> str | None:
    """The Call-ID of a SIP message (request or response), or None if the payload is not SIP.

    Header names are case-insensitive and the compact form ``i:`` is accepted.
    """
    head = payload.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    lines = head.splitlines()
    if not lines:
        return None
    first = lines[0].split(b" ")
    is_response = first[0] == b"SIP/2.0" and len(first) >= 2 and first[1].isdigit()
    is_request = len(first) == 3 and first[0] in _SIP_METHODS and first[2] == b"SIP/2.0"
    if not (is_response or is_request):
        return None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        if name.strip().lower() in (b"call-id", b"i"):
            text = value.strip().decode("utf-8", "replace")
            return text or None
    return None


def keep_packet(dgram: UdpDatagram, target: CaptureTarget) -> bool:
    """Whether a datagram that passed the BPF filter belongs to the target call.

    Traffic on a SIP port is kept only if it is SIP with the target's Call-ID; anything else
    that passed the filter is this call's media.
    """
    if (
        dgram.sport in target.sip_ports
        or dgram.dport in target.sip_ports
        or _is_sip_peer(dgram, target)
    ):
        return sip_call_id(dgram.payload) == target.sip_call_id
    return True


def _is_sip_peer(dgram: UdpDatagram, target: CaptureTarget) -> bool:
    peer = target.sip_peer
    if peer is None:
        return False
    return (dgram.src == peer.ip and dgram.sport == peer.port) or (
        dgram.dst == peer.ip and dgram.dport == peer.port
    )


def dedup_key(frame: bytes) -> bytes:
    """A key equal for the two copies of one packet seen on loopback (the bytes are identical)."""
    return hashlib.blake2b(frame, digest_size=16).digest()


class Deduper:
    """Remembers recent frame keys; a frame seen again within ``window`` seconds is a duplicate.

    SIP retransmissions repeat after 500 ms or more and RTP never repeats, so a short window only
    removes the loopback copy. Memory is bounded by ``max_keys``.
    """

    def __init__(self, window: float = 0.05, max_keys: int = 4096) -> None:
        self.window = window
        self.max_keys = max_keys
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def is_duplicate(self, frame: bytes, ts: float) -> bool:
        while self._seen:
            key, first = next(iter(self._seen.items()))
            if ts - first <= self.window and len(self._seen) < self.max_keys:
                break
            self._seen.popitem(last=False)
        key = dedup_key(frame)
        if key in self._seen:
            del self._seen[key]  # a third copy would be a real packet again
            return True
        self._seen[key] = ts
        return False
