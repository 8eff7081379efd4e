"""``GET /call/<id>/pcap``: the capture file, its type, Range and conditional answers, and the 4xx cases."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest

SIP_INVITE = (
    b"INVITE sip:+14155550100@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1\r\n"
    b"Call-ID: pcap-route-test@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def pcap_bytes(payload: bytes = SIP_INVITE) -> bytes:
    """A one-packet pcap (Ethernet/IPv4/UDP 5062 -> 5060) built by hand."""
    udp = struct.pack("!HHHH", 5062, 5060, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
    )  # fmt: skip
    frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame
    return header + record


def make_call(database, status: str = "ended") -> str:
    from esl_controller.db.models import Call

    with database.connection_context():
        return Call.create(org_id="o", type="inboundPhoneCall", status=status).id


@pytest.fixture
def pcap_dir(settings) -> Path:
    path = settings.pcap_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_download_full_range_and_conditional(client, database, pcap_dir):
    call_id = make_call(database)
    body = pcap_bytes()
    (pcap_dir / f"{call_id}.pcap").write_bytes(body)

    r = client.get(f"/call/{call_id}/pcap")
    assert r.status_code == 200
    assert r.mimetype == "application/vnd.tcpdump.pcap"
    assert r.headers["Content-Length"] == str(len(body))
    assert r.headers["Content-Disposition"] == f"attachment; filename={call_id}.pcap"
    assert r.data == body
    etag = r.headers["ETag"]

    part = client.get(f"/call/{call_id}/pcap", headers={"Range": "bytes=0-23"})
    assert part.status_code == 206
    assert part.data == body[:24]
    assert part.headers["Content-Range"] == f"bytes 0-23/{len(body)}"

    again = client.get(f"/call/{call_id}/pcap", headers={"If-None-Match": etag})
    assert again.status_code == 304

    # upper-case id: the same call
    assert client.get(f"/call/{call_id.upper()}/pcap").data == body


def test_artifact_path_wins(client, database, tmp_path):
    from esl_controller.db.models import Artifact

    call_id = make_call(database)
    elsewhere = tmp_path / "sealed" / "capture.pcap"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(pcap_bytes(SIP_INVITE.replace(b"INVITE", b"OPTIONS")))
    with database.connection_context():
        Artifact.create(
            org_id="o",
            call=call_id,
            kind="pcap",
            path=str(elsewhere),
            bytes=elsewhere.stat().st_size,
            mimetype="application/vnd.tcpdump.pcap",
            status="sealed",
        )
    r = client.get(f"/call/{call_id}/pcap")
    assert r.status_code == 200
    assert r.data == elsewhere.read_bytes()


def test_capture_manager_directory(client, app, database, tmp_path):
    from esl_controller.capture.manager import CaptureManager

    call_id = make_call(database)
    other = tmp_path / "captures"
    other.mkdir()
    (other / f"{call_id}.pcap").write_bytes(pcap_bytes())
    services = app.extensions["esl_controller"]
    services.capture = CaptureManager(other)
    try:
        assert client.get(f"/call/{call_id}/pcap").data == pcap_bytes()
    finally:
        del services.capture


def test_not_found_and_bad_id(client, database, pcap_dir):
    call_id = make_call(database)
    r = client.get(f"/call/{call_id}/pcap")
    assert r.status_code == 404
    assert "no packet capture" in r.get_json()["message"]

    ghost = str(uuid.uuid4())
    (pcap_dir / f"{ghost}.pcap").write_bytes(pcap_bytes())  # a file without a call is not served
    r = client.get(f"/call/{ghost}/pcap")
    assert r.status_code == 404
    assert "not found" in r.get_json()["message"]

    r = client.get("/call/not-a-uuid/pcap")
    assert r.status_code == 400
    assert r.get_json()["statusCode"] == 400


def test_requires_auth(anon, database, pcap_dir):
    call_id = make_call(database)
    (pcap_dir / f"{call_id}.pcap").write_bytes(pcap_bytes())
    assert anon.get(f"/call/{call_id}/pcap").status_code == 401


def test_pcap_url_shape():
    from api.routes.pcap import pcap_url

    assert pcap_url("http://h:8080/", "abc") == "http://h:8080/call/abc/pcap"
