"""Per-call capture with real packets between two network namespaces joined by a veth pair.

Namespace "a" plays the carrier (a scripted SIP UA), namespace "b" plays FreeSWITCH and is where
the capture runs. Two calls share the SIP port 5060 at once; only call one is captured, and
tshark must decode exactly its SIP dialog, RTP and RTCP, and nothing of call two. Traffic stays
inside the namespaces (and their loopback). Needs root or CAP_SYS_ADMIN/CAP_NET_RAW; skips with
the reason otherwise.

This file is also a helper script (run in a fresh process, no gevent):
  python test_capture_netns.py up|down <ns_a> <ns_b>
  python test_capture_netns.py ua --json '<options>'   (scripted UA, driven over stdin/stdout)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
SPEECH = HERE.parents[1] / "fixtures" / "audio" / "yes_seven_thirty_8k.wav"
IP_A, IP_B = "10.231.0.1", "10.231.0.2"
RTP_PACKETS = 50  # one second of speech each way, per call
PT_PCMU = 0

pytestmark = pytest.mark.timeout(60)


# ==== helper script side (separate process) =====================================================


def _ns_up(a: str, b: str) -> None:
    from pyroute2 import NetNS, netns

    netns.create(a)
    netns.create(b)
    with NetNS(a) as ns:
        ns.link("add", ifname="veth-a", kind="veth", peer={"ifname": "veth-b", "net_ns_fd": b})
    for name, ifname, ip in ((a, "veth-a", IP_A), (b, "veth-b", IP_B)):
        with NetNS(name) as ns:
            idx = ns.link_lookup(ifname=ifname)[0]
            ns.addr("add", index=idx, address=ip, prefixlen=24)
            ns.link("set", index=idx, state="up")
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def _ns_down(a: str, b: str) -> None:
    from pyroute2 import netns

    for name in (a, b):
        if name in netns.listnetns():
            netns.remove(name)


def _speech_pcmu() -> list[bytes]:
    import audioop
    import wave

    with wave.open(str(SPEECH)) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        pcm = w.readframes(w.getnframes())
    ulaw = audioop.lin2ulaw(pcm, 2)
    return [ulaw[i : i + 160] for i in range(0, len(ulaw) - 159, 160)]


class _Ua:
    """A scripted SIP UA pair: UAC sockets in one namespace, UAS sockets in the other."""

    def __init__(self, o: dict) -> None:
        import socket

        from pyroute2 import netns

        self.o = o
        self.frames = _speech_pcmu()
        self.socks: dict[tuple[str, int], socket.socket] = {}
        for side in ("uac", "uas"):
            netns.setns(o[f"{side}_ns"])
            ip = o[f"{side}_ip"]
            ports = [o[f"{side}_sip_port"]]
            for call in o["calls"]:
                ports += [call[f"{side}_rtp"], call[f"{side}_rtp"] + 1]
            for port in ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(5)
                s.bind((ip, port))
                self.socks[(side, port)] = s

    def _addr(self, side: str, port: int) -> tuple[str, int]:
        return (self.o[f"{side}_ip"], port)

    def _send(self, side: str, port: int, to_side: str, to_port: int, data: bytes) -> None:
        self.socks[(side, port)].sendto(data, self._addr(to_side, to_port))

    def _recv(self, side: str, port: int) -> bytes:
        return self.socks[(side, port)].recvfrom(65535)[0]

    def _sip(self, first: str, call: dict, cseq: str, sdp_side: str | None = None) -> bytes:
        o = self.o
        body = ""
        if sdp_side:
            ip, port = o[f"{sdp_side}_ip"], call[f"{sdp_side}_rtp"]
            body = (
                f"v=0\r\no=- {call['sess']} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
                f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
            )
        headers = [
            first,
            f"Via: SIP/2.0/UDP {o['uac_ip']}:{o['uac_sip_port']};branch=z9hG4bK{call['sess']}{cseq.split()[0]}",
            f"From: <sip:+15551230001@{o['uac_ip']}>;tag=a{call['sess']}",
            f"To: <sip:15557654321@{o['uas_ip']}>"
            + (f";tag=b{call['sess']}" if not first.endswith("100 Trying") else ""),
            f"Call-ID: {call['call_id']}",
            f"CSeq: {cseq}",
            f"Contact: <sip:x@{o['uac_ip']}:{o['uac_sip_port']}>",
            "Max-Forwards: 70",
        ]
        if body:
            headers.append("Content-Type: application/sdp")
        headers.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()

    def setup(self) -> None:
        """INVITE / 100 / 180 / 200 (SDP both ways) / ACK for every call, interleaved."""
        o, calls = self.o, self.o["calls"]
        uac, uas = o["uac_sip_port"], o["uas_sip_port"]
        ruri = f"sip:15557654321@{o['uas_ip']}"
        for c in calls:
            self._send(
                "uac", uac, "uas", uas, self._sip(f"INVITE {ruri} SIP/2.0", c, "1 INVITE", "uac")
            )
        for _ in calls:
            assert self._recv("uas", uas).startswith(b"INVITE ")
        for status in ("100 Trying", "180 Ringing", "200 OK"):
            for c in calls:
                sdp = "uas" if status == "200 OK" else None
                self._send(
                    "uas", uas, "uac", uac, self._sip(f"SIP/2.0 {status}", c, "1 INVITE", sdp)
                )
            for _ in calls:
                assert self._recv("uac", uac).startswith(f"SIP/2.0 {status}".encode())
        for c in calls:
            self._send("uac", uac, "uas", uas, self._sip(f"ACK {ruri} SIP/2.0", c, "1 ACK"))
        for _ in calls:
            assert self._recv("uas", uas).startswith(b"ACK ")

    def media_and_bye(self) -> None:
        o, calls = self.o, self.o["calls"]
        for i in range(RTP_PACKETS):
            payload = self.frames[i % len(self.frames)]
            for c in calls:
                for side, other in (("uac", "uas"), ("uas", "uac")):
                    hdr = struct.pack(
                        "!BBHII",
                        0x80,
                        (0x80 if i == 0 else 0) | PT_PCMU,
                        i,
                        i * 160,
                        c[f"{side}_ssrc"],
                    )
                    self._send(side, c[f"{side}_rtp"], other, c[f"{other}_rtp"], hdr + payload)
                    got = self._recv(other, c[f"{other}_rtp"])
                    assert got[8:12] == struct.pack("!I", c[f"{side}_ssrc"])
        for c in calls:  # one RTCP sender report each way, on RTP port + 1
            for side, other in (("uac", "uas"), ("uas", "uac")):
                sr = struct.pack(
                    "!BBHIIIIII",
                    0x80,
                    200,
                    6,
                    c[f"{side}_ssrc"],
                    0,
                    0,
                    0,
                    RTP_PACKETS,
                    RTP_PACKETS * 160,
                )
                self._send(side, c[f"{side}_rtp"] + 1, other, c[f"{other}_rtp"] + 1, sr)
                self._recv(other, c[f"{other}_rtp"] + 1)
        uac, uas = o["uac_sip_port"], o["uas_sip_port"]
        for c in calls:
            bye = self._sip(f"BYE sip:15557654321@{o['uas_ip']} SIP/2.0", c, "2 BYE")
            self._send("uac", uac, "uas", uas, bye)
        for _ in calls:
            assert self._recv("uas", uas).startswith(b"BYE ")
        for c in calls:
            self._send("uas", uas, "uac", uac, self._sip("SIP/2.0 200 OK", c, "2 BYE"))
        for _ in calls:
            assert self._recv("uac", uac).startswith(b"SIP/2.0 200 OK")


def _ua_main(options: dict) -> int:
    ua = _Ua(options)
    print("ready", flush=True)
    for line in sys.stdin:
        step = line.strip()
        if step == "setup":
            ua.setup()
        elif step == "media":
            ua.media_and_bye()
        else:
            break
        print(f"done {step}", flush=True)
    return 0


# ==== pytest side ==============================================================================


def _helper(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HERE), *args], capture_output=True, text=True, timeout=30
    )


@pytest.fixture(scope="module")
def namespaces():
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark; in .ci/apt-packages.txt)")
    tag = f"{os.getpid() % 100000}"
    a, b = f"escap-a-{tag}", f"escap-b-{tag}"
    res = _helper("up", a, b)
    if res.returncode != 0:
        _helper("down", a, b)
        pytest.skip(
            f"cannot create network namespaces (needs root/CAP_SYS_ADMIN): {res.stderr[-300:]}"
        )
    yield a, b
    _helper("down", a, b)


class UaProcess:
    def __init__(self, options: dict) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "ua", "--json", json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._expect("ready")

    def _expect(self, what: str, timeout: float = 20.0) -> None:
        import gevent

        with gevent.Timeout(timeout, AssertionError(f"UA did not say {what!r}")):
            line = self.proc.stdout.readline().strip()
        if line != what:
            self.proc.kill()
            raise AssertionError(
                f"UA said {line!r}, not {what!r}: {self.proc.stderr.read()[-2000:]}"
            )

    def step(self, name: str) -> None:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        self._expect(f"done {name}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _call(n: int, uac_rtp: int, uas_rtp: int) -> dict:
    return {
        "call_id": f"call-{n}-{uuid.uuid4().hex[:12]}@{IP_A}",
        "sess": random.randint(10_000, 99_999),
        "uac_rtp": uac_rtp,
        "uas_rtp": uas_rtp,
        "uac_ssrc": random.getrandbits(32),
        "uas_ssrc": random.getrandbits(32),
    }


def _tshark(path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(path), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return [line.split("\t") for line in res.stdout.splitlines() if line]


def _channel(call: dict, uas_ip: str, uac_ip: str, sip_peer_port: int, media: bool) -> dict:
    ch = {
        "variable_sip_call_id": call["call_id"],
        "variable_sip_network_ip": uac_ip,
        "variable_sip_network_port": str(sip_peer_port),
    }
    if media:
        ch.update(
            {
                "variable_local_media_ip": uas_ip,
                "variable_local_media_port": str(call["uas_rtp"]),
                "variable_remote_media_ip": uac_ip,
                "variable_remote_media_port": str(call["uac_rtp"]),
            }
        )
    return ch


def _manager(tmp_path: Path, netns: str, **settings):
    from esl_controller.capture.manager import CaptureManager, CaptureSettings

    return CaptureManager(
        tmp_path / "pcap",
        CaptureSettings(sip_ports=(5060,), netns=netns, min_free_bytes=0, **settings),
    )


def test_two_calls_same_sip_port_capture_exactly_one(namespaces, tmp_path: Path) -> None:
    ns_a, ns_b = namespaces
    one, two = _call(1, 30000, 20000), _call(2, 30002, 20002)
    ua = UaProcess(
        {
            "uac_ns": ns_a, "uac_ip": IP_A, "uac_sip_port": 5060,
            "uas_ns": ns_b, "uas_ip": IP_B, "uas_sip_port": 5060,
            "calls": [one, two],
        }
    )  # fmt: skip
    mgr = _manager(tmp_path, ns_b)
    try:
        # capture starts knowing only the dialog (as at the outbound-socket connect)
        st = mgr.start("call-one", _channel(one, IP_B, IP_A, 5060, media=False))
        assert st.state == "running", st.reason
        assert st.interface == "veth-b"
        ua.step("setup")
        # answered: media addresses known now
        st = mgr.update_media("call-one", _channel(one, IP_B, IP_A, 5060, media=True))
        assert "20000" in st.filter and "30000" in st.filter
        ua.step("media")
        st = mgr.stop("call-one")
    finally:
        ua.close()
        mgr.stop_all()
    assert st is not None and st.state == "sealed" and st.reason == "stopped"
    path = mgr.pcap_path("call-one")
    assert path is not None and path == Path(st.path)

    sip = _tshark(path, "sip", "sip.Call-ID", "sip.Method", "sip.Status-Code", "sip.CSeq.method")
    assert {row[0] for row in sip} == {one["call_id"]}
    assert [(row[1] or row[2]) for row in sip] == [
        "INVITE",
        "100",
        "180",
        "200",
        "ACK",
        "BYE",
        "200",
    ]

    rtp = _tshark(path, "rtp", "rtp.ssrc", "udp.srcport", "udp.dstport", "rtp.p_type")
    by_ssrc = Counter(int(row[0], 16) for row in rtp)
    assert by_ssrc == {one["uac_ssrc"]: RTP_PACKETS, one["uas_ssrc"]: RTP_PACKETS}
    assert {(row[1], row[2]) for row in rtp} == {("30000", "20000"), ("20000", "30000")}
    assert {row[3] for row in rtp} == {"0"}
    rtcp = _tshark(path, "rtcp", "rtcp.senderssrc")
    assert sorted(int(r[0], 16) for r in rtcp) == sorted([one["uac_ssrc"], one["uas_ssrc"]])

    # nothing of call two, no duplicates, nothing else
    assert _tshark(path, f'frame contains "{two["call_id"]}"', "frame.number") == []
    ports = {p for row in _tshark(path, "udp", "udp.srcport", "udp.dstport") for p in row}
    assert not ports & {"20002", "20003", "30002", "30003"}
    assert len(_tshark(path, "", "frame.number")) == 7 + 2 * RTP_PACKETS + 2
    assert st.packets == 7 + 2 * RTP_PACKETS + 2


def test_loopback_packets_are_captured_once(namespaces, tmp_path: Path) -> None:
    _, ns_b = namespaces
    one = _call(1, 31000, 21000)
    ua = UaProcess(
        {
            "uac_ns": ns_b, "uac_ip": "127.0.0.1", "uac_sip_port": 5062,
            "uas_ns": ns_b, "uas_ip": "127.0.0.1", "uas_sip_port": 5060,
            "calls": [one],
        }
    )  # fmt: skip
    mgr = _manager(tmp_path, ns_b)
    try:
        st = mgr.start("lo-call", _channel(one, "127.0.0.1", "127.0.0.1", 5062, media=True))
        assert st.state == "running", st.reason
        assert st.interface == "lo"
        ua.step("setup")
        ua.step("media")
        st = mgr.stop("lo-call")
    finally:
        ua.close()
        mgr.stop_all()
    path = Path(st.path)
    sip = _tshark(path, "sip", "sip.Method", "sip.Status-Code")
    assert [(r[0] or r[1]) for r in sip] == ["INVITE", "100", "180", "200", "ACK", "BYE", "200"]
    rtp = _tshark(path, "rtp", "rtp.ssrc", "rtp.seq")
    assert len(rtp) == 2 * RTP_PACKETS
    assert len({tuple(r) for r in rtp}) == 2 * RTP_PACKETS  # each (ssrc, seq) once


def test_limits_seal_the_capture_and_the_cap_refuses(namespaces, tmp_path: Path) -> None:
    ns_a, ns_b = namespaces
    one = _call(1, 32000, 22000)
    ua = UaProcess(
        {
            "uac_ns": ns_a, "uac_ip": IP_A, "uac_sip_port": 5060,
            "uas_ns": ns_b, "uas_ip": IP_B, "uas_sip_port": 5060,
            "calls": [one],
        }
    )  # fmt: skip
    mgr = _manager(tmp_path, ns_b, max_bytes=4000, max_concurrent=1)
    try:
        st = mgr.start("small", _channel(one, IP_B, IP_A, 5060, media=True))
        assert st.state == "running", st.reason
        refused = mgr.start("second", _channel(_call(2, 1, 2), IP_B, IP_A, 5060, media=False))
        assert refused.state == "failed" and "concurrent capture limit" in refused.reason
        assert mgr.status("second") == refused
        ua.step("setup")
        ua.step("media")
        st = mgr.wait_sealed("small", timeout=10)
    finally:
        ua.close()
        mgr.stop_all()
    assert st.state == "sealed" and st.reason == "max-bytes"
    path = Path(st.path)
    assert 0 < path.stat().st_size <= 4000
    assert len(_tshark(path, "", "frame.number")) == st.packets > 0
    # after a capture sealed, a new one may start again
    assert mgr.active == 0


def test_max_duration_and_rotation(namespaces, tmp_path: Path) -> None:
    _, ns_b = namespaces
    pcap_dir = tmp_path / "pcap"
    pcap_dir.mkdir()
    for i in range(3):
        old = pcap_dir / f"old-{i}.pcap"
        old.write_bytes(b"")
        os.utime(old, (1000 + i, 1000 + i))
    mgr = _manager(tmp_path, ns_b, max_seconds=0.3, max_files=2)
    st = mgr.start("short", _channel(_call(1, 33000, 23000), IP_B, IP_A, 5060, media=True))
    assert st.state == "running", st.reason
    st = mgr.wait_sealed("short", timeout=10)
    mgr.stop_all()
    assert st.state == "sealed" and st.reason == "max-duration"
    assert sorted(p.name for p in pcap_dir.glob("*.pcap")) == ["old-2.pcap", "short.pcap"]


def test_failures_are_reasons_not_exceptions(namespaces, tmp_path: Path) -> None:
    _, ns_b = namespaces
    mgr = _manager(tmp_path, ns_b, interface="no-such-if")
    st = mgr.start("c1", _channel(_call(1, 1000, 2000), IP_B, IP_A, 5060, media=False))
    assert st.state == "failed" and "no-such-if" in st.reason
    assert mgr.pcap_path("c1") is None
    assert mgr.start("c2", {"variable_sip_call_id": ""}).state == "failed"
    assert mgr.start("../etc/passwd", {"variable_sip_call_id": "x@y"}).state == "failed"
    assert mgr.stop("unknown") is None and mgr.update_media("unknown", {}) is None
    missing = _manager(tmp_path, "escap-does-not-exist")
    st = missing.start("c3", _channel(_call(1, 1000, 2000), IP_B, IP_A, 5060, media=False))
    assert st.state == "failed" and "namespace" in st.reason


if __name__ == "__main__":
    if sys.argv[1] == "up":
        _ns_up(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "down":
        _ns_down(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "ua":
        sys.exit(_ua_main(json.loads(sys.argv[3])))
