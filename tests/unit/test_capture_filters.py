"""Capture filters: targets from channel variables, BPF expressions, SIP Call-ID, frames, de-duplication."""

from __future__ import annotations

import ctypes
import struct

import pytest

from esl_controller.capture.filters import (
    CaptureTarget,
    Deduper,
    Endpoint,
    FilterError,
    UdpDatagram,
    bpf_filter,
    keep_packet,
    parse_frame,
    sip_call_id,
    target_from_channel,
)

CHANNEL = {
    "variable_sip_call_id": "8d9f2c1e7b@203.0.113.10",
    "variable_sip_network_ip": "203.0.113.10",
    "variable_sip_network_port": "5060",
    "variable_local_media_ip": "10.0.0.5",
    "variable_local_media_port": "16502",
    "variable_remote_media_ip": "203.0.113.20",
    "variable_remote_media_port": "31744",
}

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
INVITE = (
    b"INVITE sip:15557654321@10.0.0.5 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK776asdhds\r\n"
    b"From: <sip:+15551230001@203.0.113.10>;tag=1928301774\r\n"
    b"To: <sip:15557654321@10.0.0.5>\r\n"
    b"Call-ID: 8d9f2c1e7b@203.0.113.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


# --- targets ------------------------------------------------------------------------------------


def test_target_from_channel_variables() -> None:
    t = target_from_channel(CHANNEL)
    assert t.sip_call_id == "8d9f2c1e7b@203.0.113.10"
    assert t.sip_ports == (5060, 5080)
    assert t.sip_peer == Endpoint("203.0.113.10", 5060)
    assert t.local_media == Endpoint("10.0.0.5", 16502)
    assert t.remote_media == Endpoint("203.0.113.20", 31744)
    assert t.media_ip == "203.0.113.20"


def test_target_bare_names_and_missing_media() -> None:
    t = target_from_channel(
        {"sip_call_id": "a@b", "remote_media_ip": "_undef_", "local_media_port": "0"},
        sip_ports=[5080],
    )
    assert t.sip_ports == (5080,)
    assert t.local_media is None and t.remote_media is None and t.sip_peer is None
    assert t.media_ip is None
    assert bpf_filter(t) == "udp and ((port 5080))"


@pytest.mark.parametrize(
    "changes",
    [
        {"variable_sip_call_id": ""},
        {"variable_sip_call_id": "has space@x"},
        {"variable_remote_media_ip": "203.0.113.20 or port 1"},
        {"variable_remote_media_ip": "not-an-ip"},
        {"variable_remote_media_port": "31744 or udp"},
        {"variable_remote_media_port": "65535"},
        {"variable_remote_media_port": "-1"},
        {"variable_sip_network_port": "x"},
    ],
)
def test_target_rejects_values_that_could_break_the_filter(changes: dict[str, str]) -> None:
    with pytest.raises(FilterError):
        target_from_channel({**CHANNEL, **changes})


def test_target_rejects_bad_sip_ports() -> None:
    with pytest.raises(FilterError):
        target_from_channel(CHANNEL, sip_ports=["5060; rm"])


def test_target_dict_round_trip() -> None:
    t = target_from_channel(CHANNEL)
    assert CaptureTarget.from_dict(t.to_dict()) == t
    with pytest.raises(FilterError):
        CaptureTarget.from_dict({**t.to_dict(), "remote_media": {"ip": "x", "port": 1}})
    with pytest.raises(FilterError):
        CaptureTarget.from_dict({**t.to_dict(), "sip_ports": "5060"})


def test_ipv6_target() -> None:
    t = target_from_channel(
        {
            **CHANNEL,
            "variable_remote_media_ip": "2001:DB8::20",
            "variable_remote_media_port": "4000",
        }
    )
    assert t.remote_media == Endpoint("2001:db8::20", 4000)
    assert "src host 2001:db8::20 and (src port 4000 or src port 4001)" in bpf_filter(t)


# --- BPF expressions, checked by libpcap itself ------------------------------------------------


def _libpcap():
    try:
        from scapy.arch.common import compile_filter, free_filter
        from scapy.libs import winpcapy
    except (ImportError, OSError) as exc:
        pytest.skip(f"libpcap not available (apt-get install libpcap0.8): {exc}")
    return compile_filter, free_filter, winpcapy


def _udp_frame(src: str, sport: int, dst: str, dport: int, payload: bytes = b"x" * 12) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return bytes(Ether(src=MAC_A, dst=MAC_B) / ip / UDP(sport=sport, dport=dport) / payload)


def _matches(expression: str, frame: bytes) -> bool:
    compile_filter, free_filter, wp = _libpcap()
    prog = compile_filter(expression, linktype=1)
    try:
        hdr = wp.pcap_pkthdr()
        hdr.caplen = hdr.len = len(frame)
        buf = ctypes.create_string_buffer(frame, len(frame))
        offline_filter = wp._lib.pcap_offline_filter
        offline_filter.restype = ctypes.c_int
        offline_filter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        return bool(offline_filter(ctypes.byref(prog), ctypes.byref(hdr), buf))
    finally:
        free_filter(prog)


@pytest.mark.parametrize(
    "frame_args,expected",
    [
        # SIP of any call on the signalling ports passes the kernel filter
        (("203.0.113.99", 5060, "10.0.0.5", 5060), True),
        (("10.0.0.5", 5080, "198.51.100.1", 5090), True),
        # the far end's SIP port on its host
        (("203.0.113.10", 5099, "10.0.0.5", 40000), False),
        # this call's RTP both ways, and RTCP on port + 1
        (("203.0.113.20", 31744, "10.0.0.5", 16502), True),
        (("10.0.0.5", 16502, "203.0.113.20", 31744), True),
        (("203.0.113.20", 31745, "10.0.0.5", 16503), True),
        # another call's RTP on the same hosts
        (("203.0.113.20", 31800, "10.0.0.5", 16600), False),
        # another call whose far-end port happens to equal our local media port
        (("10.0.0.5", 16600, "198.51.100.7", 16502), False),
        # unrelated traffic
        (("10.0.0.5", 53, "10.0.0.1", 53), False),
    ],
)
def test_bpf_filter_selects_this_calls_packets(frame_args: tuple, expected: bool) -> None:
    expression = bpf_filter(target_from_channel(CHANNEL, sip_ports=[5060, 5080]))
    assert _matches(expression, _udp_frame(*frame_args)) is expected


def test_bpf_filter_sip_peer_port() -> None:
    ch = {**CHANNEL, "variable_sip_network_port": "5099"}
    expression = bpf_filter(target_from_channel(ch))
    assert _matches(expression, _udp_frame("203.0.113.10", 5099, "10.0.0.5", 5060))
    assert _matches(expression, _udp_frame("10.0.0.5", 40000, "203.0.113.10", 5099))


def test_bpf_filter_ipv6() -> None:
    ch = {**CHANNEL, "variable_remote_media_ip": "2001:db8::20"}
    expression = bpf_filter(target_from_channel(ch))
    assert _matches(expression, _udp_frame("2001:db8::20", 31744, "2001:db8::5", 16502))
    assert not _matches(expression, _udp_frame("2001:db8::21", 31744, "2001:db8::5", 16000))


# --- SIP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload,call_id",
    [
        (INVITE, "8d9f2c1e7b@203.0.113.10"),
        (INVITE.replace(b"\r\n", b"\n"), "8d9f2c1e7b@203.0.113.10"),
        (INVITE.replace(b"Call-ID:", b"CALL-ID :"), "8d9f2c1e7b@203.0.113.10"),
        (INVITE.replace(b"Call-ID:", b"call-id:   "), "8d9f2c1e7b@203.0.113.10"),
        (INVITE.replace(b"Call-ID:", b"i:"), "8d9f2c1e7b@203.0.113.10"),
        (b"SIP/2.0 200 OK\r\ni: abc\r\nCSeq: 1 INVITE\r\n\r\n", "abc"),
        (b"BYE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nCall-ID: in-body\r\n", None),
        (b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n", None),
        (b"\r\n\r\n", None),  # keep-alive
        (b"", None),
        (b"\x80\x00\x00\x01" + b"\xff" * 170, None),  # RTP
        (b"HELLO sip:x@y SIP/2.0\r\nCall-ID: x\r\n\r\n", None),  # not a SIP method
        (b"HTTP/1.1 200 OK\r\nCall-ID: x\r\n\r\n", None),
    ],
)
def test_sip_call_id(payload: bytes, call_id: str | None) -> None:
    assert sip_call_id(payload) == call_id


def test_sip_call_id_never_raises_on_cut_messages() -> None:
    for cut in range(len(INVITE) + 1):
        sip_call_id(INVITE[:cut])


def test_keep_packet() -> None:
    t = target_from_channel(CHANNEL)
    ours = UdpDatagram("203.0.113.10", 5060, "10.0.0.5", 5060, INVITE)
    other = UdpDatagram(
        "203.0.113.10", 5060, "10.0.0.5", 5060, INVITE.replace(b"8d9f2c1e7b", b"ffffffffff")
    )
    keepalive = UdpDatagram("203.0.113.10", 5060, "10.0.0.5", 5060, b"\r\n\r\n")
    rtp = UdpDatagram("203.0.113.20", 31744, "10.0.0.5", 16502, b"\x80" + b"\x00" * 171)
    assert keep_packet(ours, t)
    assert not keep_packet(other, t)
    assert not keep_packet(keepalive, t)
    assert keep_packet(rtp, t)
    # SIP from the peer's non-standard port is judged by Call-ID too
    t2 = target_from_channel({**CHANNEL, "variable_sip_network_port": "5099"})
    assert not keep_packet(UdpDatagram("203.0.113.10", 5099, "10.0.0.5", 40000, b"junk"), t2)


# --- frames -------------------------------------------------------------------------------------


def test_parse_frame_ipv4_ipv6_vlan() -> None:
    d = parse_frame(_udp_frame("203.0.113.20", 31744, "10.0.0.5", 16502, b"payload"))
    assert d == UdpDatagram("203.0.113.20", 31744, "10.0.0.5", 16502, b"payload")
    d6 = parse_frame(_udp_frame("2001:db8::20", 1000, "2001:db8::5", 2000, b"p6"))
    assert d6 == UdpDatagram("2001:db8::20", 1000, "2001:db8::5", 2000, b"p6")
    plain = _udp_frame("192.0.2.1", 1, "192.0.2.2", 2, b"v")
    tagged = plain[:12] + struct.pack("!HH", 0x8100, 42) + plain[12:]
    assert parse_frame(tagged) == UdpDatagram("192.0.2.1", 1, "192.0.2.2", 2, b"v")


def test_parse_frame_rejects_non_udp_and_fragments() -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import ARP, Ether

    eth = Ether(src=MAC_A, dst=MAC_B)
    assert parse_frame(bytes(eth / IP(dst="192.0.2.2") / TCP())) is None
    assert parse_frame(bytes(eth / ARP(hwdst=MAC_B, pdst="192.0.2.2"))) is None
    frag = bytearray(_udp_frame("192.0.2.1", 1, "192.0.2.2", 2, b"x" * 40))
    struct.pack_into("!H", frag, 14 + 6, 5)  # fragment offset 5 (x8 bytes)
    assert parse_frame(bytes(frag)) is None


def test_parse_frame_at_every_cut() -> None:
    for frame in (
        _udp_frame("203.0.113.20", 31744, "10.0.0.5", 16502, INVITE),
        _udp_frame("2001:db8::20", 1000, "2001:db8::5", 2000, INVITE),
    ):
        for cut in range(len(frame)):
            got = parse_frame(frame[:cut])
            assert got is None or INVITE.startswith(got.payload)


# --- de-duplication -----------------------------------------------------------------------------


def test_deduper_drops_the_loopback_copy_only() -> None:
    d = Deduper(window=0.05)
    a, b = b"frame-a", b"frame-b"
    assert not d.is_duplicate(a, 10.000)
    assert d.is_duplicate(a, 10.001)  # the second copy on lo
    assert not d.is_duplicate(b, 10.002)
    # the same bytes much later are a real retransmission
    assert not d.is_duplicate(a, 10.600)
    assert d.is_duplicate(a, 10.601)
    assert not d.is_duplicate(a, 10.602)  # a third copy is a new packet again


def test_deduper_is_bounded() -> None:
    d = Deduper(window=10.0, max_keys=8)
    for i in range(100):
        assert not d.is_duplicate(b"f%d" % i, 1.0)
    assert len(d._seen) <= 8
