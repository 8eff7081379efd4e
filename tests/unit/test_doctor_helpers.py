"""The doctor's pure helpers: /proc/net/tcp listeners, controller command lines, capability bits,
formatting; and the monitor's table rendering."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from esl_controller.doctor import (
    CAP_NET_RAW,
    CheckResult,
    format_bytes,
    format_line,
    has_capability,
    is_controller_cmdline,
    listening_inodes,
)
from esl_controller.monitor import CallRow, format_duration, render, turn_latency

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1FA4 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 5623 1 0 100 0 0 10 0
   1: 00000000:1FA4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0 100 0 0 10 0
   2: 0100007F:1FA4 0100007F:D431 01 00000000:00000000 00:00000000 00000000   106        0 9999 1 0 20 4 30 10 -1
   3: 0100007F:1FA5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0 100 0 0 10 0
   4: garbage
"""
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1FA4 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0
"""


def test_listening_inodes():
    assert listening_inodes(PROC_NET_TCP, 0x1FA4) == {5623, 7777}  # not the ESTABLISHED one
    assert listening_inodes(PROC_NET_TCP, 0x1FA5) == {1234}
    assert listening_inodes(PROC_NET_TCP, 80) == set()
    assert listening_inodes(PROC_NET_TCP6, 8100) == {4242}
    assert listening_inodes("", 8100) == set()


@pytest.mark.parametrize(
    "argv, ours",
    [
        (["/opt/venv/bin/python3", "/opt/venv/bin/esl-controller", "serve"], True),
        (["esl-controller", "--config", "/etc/esl.yaml", "serve", "--port", "8080"], True),
        (["python", "-m", "esl_controller", "serve"], True),
        (["esl-controller", "monitor"], False),
        (["python", "-m", "esl_controller.testing", "--port", "8021"], False),
        (["nginx", "serve"], False),
        ([], False),
    ],
)
def test_is_controller_cmdline(argv, ours):
    assert is_controller_cmdline(argv) is ours


def test_has_capability():
    root = "Name:\tx\nCapEff:\t000001ffffffffff\n"
    nobody = "Name:\tx\nCapEff:\t0000000000000000\n"
    only_raw = f"CapEff:\t{1 << CAP_NET_RAW:016x}\n"
    assert has_capability(root, CAP_NET_RAW) is True
    assert has_capability(nobody, CAP_NET_RAW) is False
    assert has_capability(only_raw, CAP_NET_RAW) is True
    assert has_capability(only_raw, CAP_NET_RAW + 1) is False
    assert has_capability("Name:\tx\n", CAP_NET_RAW) is None
    assert has_capability("CapEff:\tzz\n", CAP_NET_RAW) is None


def test_formatting():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
    line = format_line(CheckResult("disk", "WARN", "low"))
    assert line.split(None, 2) == ["WARN", "disk", "low"]


NOW = datetime(2025, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_turn_latency_and_duration():
    assert turn_latency({"endOfSpeech": 1.0, "firstAudioOut": 1.75}) == pytest.approx(0.75)
    assert turn_latency({"end_of_speech": 2, "first_audio_out": 3}) == pytest.approx(1.0)
    assert turn_latency({"endOfSpeech": 1.0}) is None
    assert turn_latency({"endOfSpeech": True, "firstAudioOut": 2}) is None
    assert turn_latency(None) is None
    assert format_duration(5) == "0:05"
    assert format_duration(3725) == "1:02:05"


def test_render_fits_width():
    rows = [
        CallRow(
            id="0b7c1e58-7c55-4f0a-9a39-0d3b8a7c2e11",
            type="inboundPhoneCall",
            status="in-progress",
            created_at=NOW - timedelta(seconds=100),
            started_at=NOW - timedelta(seconds=95),
            assistant="A very long assistant name that will not fit anywhere",
            last_turn_latency=0.6504,
        ),
        CallRow(
            id="1f0e3c2a-0000-4000-8000-000000000002",
            type="webCall",
            status="ended",
            created_at=NOW - timedelta(seconds=50),
            started_at=NOW - timedelta(seconds=50),
            ended_at=NOW - timedelta(seconds=20),
        ),
    ]
    for width in (40, 60, 80, 120, 200):
        lines = render(rows, NOW, width)
        assert all(len(line) <= max(width, 40) for line in lines), width
        assert "1 live call(s) (1 in-progress)" in lines[0]
    wide = render(rows, NOW, 200)
    first = wide[2].split()
    assert first[:5] == [rows[0].id, "inbound", "in-progress", "1:35", "650ms"]
    assert wide[3].split()[1:5] == ["web", "ended", "0:30", "-"]
    narrow = render(rows, NOW, 60)
    assert narrow[2].startswith(rows[0].id[:7] + "…")
