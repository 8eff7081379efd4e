"""``GET /call/<id>/recording`` (mono, both voices mixed) and ``GET /call/<id>/recording/stereo`` (caller left,
assistant right), plus Vapi's artifact aliases ``/call/<id>/mono-recording`` and ``/call/<id>/stereo-recording``.

Files are the call's ``recording-mono`` / ``recording-stereo`` Artifact paths, or by default
``<data_dir>/recordings/<call_id>.mono.wav`` / ``.stereo.wav`` (:func:`recording_path`). The recorder keeps the WAV
header valid as it writes, so a recording can be fetched while the call is still going. 404 when the call does not
exist or was not recorded; Range and conditional requests are answered.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_file

from api.crud import services
from api.errors import ApiError
from api.wire import check_uuid
from esl_controller.db.models import Artifact, Call

bp = Blueprint("recordings", __name__)

KINDS = {"mono": "recording-mono", "stereo": "recording-stereo"}


def recording_path(data_dir: Path, call_id: str, which: str) -> Path:
    """Where the recorder writes a call's ``mono`` or ``stereo`` WAV."""
    return Path(data_dir) / "recordings" / f"{call_id}.{which}.wav"


def recording_urls(public_url: str, call_id: str) -> dict[str, str]:
    base = f"{public_url.rstrip('/')}/call/{call_id}"
    return {"recordingUrl": f"{base}/recording", "stereoRecordingUrl": f"{base}/recording/stereo"}


def _serve(id: str, which: str):
    call_id = check_uuid(id)
    if Call.get_or_none(Call.id == call_id) is None:
        raise ApiError(404, "Call not found")
    art = (
        Artifact.select(Artifact.path)
        .where((Artifact.call == call_id) & (Artifact.kind == KINDS[which]))
        .first()
    )
    path = Path(art.path) if art is not None and art.path else None
    if path is None or not path.is_file():
        path = recording_path(services().settings.data_path, call_id, which)
    if not path.is_file():
        raise ApiError(404, f"Call {call_id} has no {which} recording")
    return send_file(
        path,
        mimetype="audio/wav",
        as_attachment=False,
        download_name=f"{call_id}.{which}.wav",
        conditional=True,
        max_age=0,
    )


@bp.get("/call/<id>/recording")
def mono(id: str):
    """The call's mono recording (caller and assistant mixed), WAV."""
    return _serve(id, "mono")


@bp.get("/call/<id>/mono-recording")
def mono_alias(id: str):
    """Vapi's artifact path for the mono recording."""
    return _serve(id, "mono")


@bp.get("/call/<id>/recording/stereo")
def stereo(id: str):
    """The call's stereo recording (caller left, assistant right), WAV."""
    return _serve(id, "stereo")


@bp.get("/call/<id>/stereo-recording")
def stereo_alias(id: str):
    """Vapi's artifact path for the stereo recording."""
    return _serve(id, "stereo")
