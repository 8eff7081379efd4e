"""The sniffer's packet decisions and limits, fed frames directly (no packet socket, no privilege)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from esl_controller.capture.filters import target_from_channel
from esl_controller.capture.sniffer import (
    PCAP_HEADER_BYTES,
    PCAP_RECORD_HEADER_BYTES,
    CaptureLimits,
    Sniffer,
)

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
CHANNEL = {
    "variable_sip_call_id": "call-one@10.0.0.1",
    "variable_local_media_ip": "10.0.0.2",
    "variable_local_media_port": "20000",
    "variable_remote_media_ip": "10.0.0.1",
    "variable_remote_media_port": "30000",
}


def _frame(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return bytes(
        Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload
    )


def _sip(call_id: str, seq: int) -> bytes:
    return (
        f"OPTIONS sip:x@10.0.0.2 SIP/2.0\r\nCall-ID: {call_id}\r\nCSeq: {seq} OPTIONS\r\n\r\n"
    ).encode()


def _sniffer(tmp_path: Path, **limits: float) -> Sniffer:
    s = Sniffer(
        str(tmp_path / "c.pcap"), target_from_channel(CHANNEL, [5060]), CaptureLimits(**limits)
    )
    s._writer = s._open_writer()
    return s


def _read(path: Path) -> list[bytes]:
    from scapy.utils import RawPcapReader

    with RawPcapReader(str(path)) as reader:
        return [pkt for pkt, _meta in reader]


def test_keeps_only_this_call_and_drops_loopback_copies(tmp_path: Path) -> None:
    s = _sniffer(tmp_path)
    ours = _frame("10.0.0.1", 5060, "10.0.0.2", 5060, _sip("call-one@10.0.0.1", 1))
    theirs = _frame("10.0.0.1", 5060, "10.0.0.2", 5060, _sip("call-two@10.0.0.1", 1))
    rtp = _frame("10.0.0.1", 30000, "10.0.0.2", 20000, b"\x80\x00" + b"\x01" * 170)
    host, out = socket.PACKET_HOST, socket.PACKET_OUTGOING
    assert s.handle(ours, "veth0", host, 1.0)
    assert not s.handle(theirs, "veth0", host, 1.01)
    assert s.handle(rtp, "veth0", out, 1.02)  # sent by us on a real interface: kept
    assert not s.handle(rtp, "veth0", host, 1.021)  # the same bytes again at once: duplicate
    rtp2 = rtp[:-1] + b"\x02"
    assert not s.handle(rtp2, "lo", out, 1.03)  # loopback: the sent copy is skipped
    assert s.handle(rtp2, "lo", host, 1.031)
    assert not s.handle(b"\x00" * 10, "veth0", host, 1.04)  # malformed
    summary = s.seal("stopped")
    assert (summary.reason, summary.packets) == ("stopped", 3)
    frames = _read(tmp_path / "c.pcap")
    assert frames == [ours, rtp, rtp2]
    assert summary.bytes == (tmp_path / "c.pcap").stat().st_size


def test_max_bytes_seals_before_the_limit(tmp_path: Path) -> None:
    rtp = [
        _frame("10.0.0.1", 30000, "10.0.0.2", 20000, bytes([0x80, 0, 0, i]) + b"\x00" * 168)
        for i in range(10)
    ]
    per_record = PCAP_RECORD_HEADER_BYTES + len(rtp[0])
    s = _sniffer(tmp_path, max_bytes=PCAP_HEADER_BYTES + 3 * per_record + 10)
    written = [s.handle(f, "veth0", socket.PACKET_HOST, 2.0 + i) for i, f in enumerate(rtp)]
    assert written[:3] == [True, True, True] and not any(written[3:])
    assert s.sealed is not None and s.sealed.reason == "max-bytes"
    assert len(_read(tmp_path / "c.pcap")) == 3
    assert (tmp_path / "c.pcap").stat().st_size <= s.limits.max_bytes
    assert s.seal("stopped").reason == "max-bytes"  # the first reason wins


def test_max_duration(tmp_path: Path) -> None:
    s = _sniffer(tmp_path, max_seconds=0.0)
    s.check_limits()
    assert s.sealed is not None and s.sealed.reason == "max-duration"


def test_update_changes_the_target(tmp_path: Path) -> None:
    s = _sniffer(tmp_path)
    new = target_from_channel({**CHANNEL, "variable_remote_media_port": "30100"}, [5060])
    expression = s.update(new)  # no socket yet: only the target and the expression change
    assert "30100" in expression and s.target == new


def _run_child(*args: str, stdin: bytes = b"") -> tuple[int, list[dict]]:
    res = subprocess.run(
        [sys.executable, "-m", "esl_controller.capture.sniffer", *args],
        input=stdin,
        capture_output=True,
        timeout=30,
    )
    return res.returncode, [json.loads(line) for line in res.stdout.splitlines()]


def test_child_reports_a_bad_target(tmp_path: Path) -> None:
    code, events = _run_child(
        "--path", str(tmp_path / "x.pcap"), "--target", json.dumps({"sip_call_id": "a b"})
    )
    assert code == 2
    assert events[0]["event"] == "error" and "Call-ID" in events[0]["reason"]
    assert not (tmp_path / "x.pcap").exists()


def test_child_reports_a_missing_interface(tmp_path: Path) -> None:
    target = json.dumps({"sip_call_id": "a@b", "sip_ports": [5060]})
    code, events = _run_child(
        "--path", str(tmp_path / "x.pcap"), "--target", target, "--interface", "nosuchif0"
    )
    assert code == 2 and events[0]["event"] == "error"
    assert "nosuchif0" in events[0]["reason"]


def test_child_without_privilege_gives_a_reason(tmp_path: Path) -> None:
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) not installed: cannot drop privileges for this test")
    tmp_path.chmod(0o777)
    target = json.dumps({"sip_call_id": "a@b", "sip_ports": [5060]})
    res = subprocess.run(
        [
            setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            sys.executable,
            "-m",
            "esl_controller.capture.sniffer",
            "--path",
            str(tmp_path / "x.pcap"),
            "--target",
            target,
        ],
        capture_output=True,
        timeout=30,
    )
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 2, res.stderr.decode()
    assert events[0]["event"] == "error"
    assert "CAP_NET_RAW" in events[0]["reason"]


def test_a_full_disk_seals_the_capture(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available")
    s = _sniffer(tmp_path)
    s._writer.f.close()
    s._writer.f = open("/dev/full", "wb", 0)  # every write fails with ENOSPC
    rtp = _frame("10.0.0.1", 30000, "10.0.0.2", 20000, b"\x80\x00" + b"\x01" * 170)
    assert not s.handle(rtp, "veth0", socket.PACKET_HOST, 1.0)
    assert s.sealed is not None and s.sealed.reason == "disk-full"
    assert s.sealed.packets == 0
