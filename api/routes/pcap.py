"""``GET /call/<id>/pcap``: a call's SIP/RTP capture (issue 7), as ``application/vnd.tcpdump.pcap``.

The file is found, in order, at the call's ``pcap`` Artifact path (written when the capture is sealed),
through the capture manager of the controller running in this process (``services().capture``, an
``esl_controller.capture.manager.CaptureManager``, when there is one), and at the default place
``<data_dir>/pcap/<call_id>.pcap`` (so captures written before a restart, or by a controller process
sharing the data directory, are served too). 400 for an id that is not a UUID, 404 when the call does
not exist or has no capture. Conditional and Range requests are answered (``send_file(conditional=True)``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, send_file

from api.crud import services
from api.errors import ApiError
from api.wire import check_uuid
from esl_controller.db.models import Artifact, Call

log = logging.getLogger("esl_controller.api.pcap")

bp = Blueprint("pcap", __name__)

PCAP_MIMETYPE = "application/vnd.tcpdump.pcap"


def pcap_url(public_url: str, call_id: str) -> str:
    """What ``artifact.pcapUrl`` holds for a call with a capture."""
    return f"{public_url.rstrip('/')}/call/{call_id}/pcap"


def find_pcap(call_id: str) -> Path | None:
    """The call's pcap file, or None (``call_id`` already checked to be a UUID)."""
    art = (
        Artifact.select(Artifact.path)
        .where((Artifact.call == call_id) & (Artifact.kind == "pcap"))
        .first()
    )
    if art is not None and art.path:
        path = Path(art.path)
        if path.is_file():
            return path
        log.warning("call %s: pcap artifact %s is missing", call_id, path.name)
    svc = services()
    manager = getattr(svc, "capture", None)
    if manager is not None:
        found = manager.pcap_path(call_id)
        if found is not None:
            return Path(found)
    path = svc.settings.pcap_dir / f"{call_id}.pcap"
    return path if path.is_file() else None


@bp.get("/call/<id>/pcap")
def call_pcap(id: str):
    """Download a call's SIP/RTP packet capture (pcap)."""
    call_id = check_uuid(id)
    if Call.get_or_none(Call.id == call_id) is None:
        raise ApiError(404, f"Call {id} not found")
    path = find_pcap(call_id)
    if path is None:
        raise ApiError(404, f"Call {call_id} has no packet capture")
    resp = send_file(
        path,
        mimetype=PCAP_MIMETYPE,
        as_attachment=True,
        download_name=f"{call_id}.pcap",
        conditional=True,
        max_age=None,
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
