"""HTTP hooks for FreeSWITCH (an API key or the hook secret in ``X-Hook-Secret``).

* ``POST /freeswitch/inbound``: a dialplan that calls HTTP instead of ``socket`` reports a routed
  channel ``{uuid, destination | sipUri, caller, answered}``; answers ``{action: "park", callId,
  call}`` (the controller then drives the channel over the inbound connection) or ``{action:
  "hangup", cause, message}`` for numbers nobody owns.
* ``POST /freeswitch/events``: one ESL event as JSON (FreeSWITCH's ``text/event-json`` shape);
  it becomes the matching reducer input of the call owning ``Unique-ID``. Events for unknown
  channels: 202 ``{ignored: true}`` and counted, not an error.
* ``POST /freeswitch/audio?callId=&rate=`` and ``POST /internal/calls/<id>/audio``: raw L16 caller
  audio; ``Content-Type: audio/l16;rate=8000|16000`` or ``application/octet-stream`` with a
  ``rate`` query. Size-limited (``calls.audio_chunk_max_bytes``); handed to the session's bounded
  audio queue (202; ``accepted: false`` when it was full and the chunk was dropped). 404 unknown
  call, 409 ended call.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from api.auth import hook_secret_allowed
from api.errors import ApiError
from api.openapi import OperationDoc, document
from api.routes.call_control import call_service, own_transactions, service_call
from api.schemas.call import InboundHookBody
from api.wire import check_uuid, json_body
from esl_controller.esl.protocol import ProtocolError, parse_json_event

bp = Blueprint("freeswitch_hooks", __name__)
TAG = "FreeSWITCH"
RATES = (8000, 16000)


@bp.post("/freeswitch/inbound")
@hook_secret_allowed
def inbound():
    body = json_body()
    InboundHookBody.model_validate(body)
    svc = call_service()
    own_transactions()
    return jsonify(service_call(svc.hook_inbound, body))


@bp.post("/freeswitch/events")
@hook_secret_allowed
def events():
    json_body()  # content type, size and JSON object checks
    svc = call_service()
    try:
        event = parse_json_event(request.get_data(cache=True))
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None
    if not event.name:
        raise ApiError(400, "Event-Name is required")
    own_transactions()
    if svc.hook_event(event):
        return jsonify({"routed": True, "event": event.name})
    return jsonify({"ignored": True, "event": event.name}), 202


def _rate() -> int:
    ctype = (request.headers.get("Content-Type") or "").lower().replace(" ", "")
    query = request.args.get("rate")
    if ctype.startswith("audio/l16"):
        params = dict(p.split("=", 1) for p in ctype.split(";")[1:] if "=" in p)
        raw = params.get("rate") or query
    elif ctype == "application/octet-stream":
        raw = query
    else:
        raise ApiError(
            415, "Content-Type must be audio/l16;rate=8000|16000 or application/octet-stream"
        )
    if raw is None or not raw.isdigit() or int(raw) not in RATES:
        raise ApiError(400, "rate must be 8000 or 16000")
    return int(raw)


def _audio(call_id: str):
    call_id = check_uuid(call_id, "call id")
    rate = _rate()
    limit = current_app.extensions["esl_controller"].settings.calls.audio_chunk_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"audio chunk larger than {limit} bytes")
    data = request.get_data(cache=False)
    if len(data) > limit:
        raise ApiError(413, f"audio chunk larger than {limit} bytes")
    if not data or len(data) % 2:
        raise ApiError(400, "audio must be a non-empty whole number of 16-bit samples")
    svc = call_service()
    own_transactions()
    accepted = service_call(svc.push_audio, call_id, data, rate)
    return jsonify({"accepted": bool(accepted), "bytes": len(data)}), 202


@bp.post("/freeswitch/audio")
@hook_secret_allowed
def freeswitch_audio():
    call_id = request.args.get("callId")
    if not call_id:
        raise ApiError(400, "callId query parameter is required")
    return _audio(call_id)


@bp.post("/internal/calls/<id>/audio")
@hook_secret_allowed
def internal_audio(id: str):
    return _audio(id)


document("/freeswitch/inbound", "POST", OperationDoc("Inbound call hook", TAG, InboundHookBody))
document("/freeswitch/events", "POST", OperationDoc("FreeSWITCH event hook", TAG))
document(
    "/freeswitch/audio",
    "POST",
    OperationDoc("Caller audio (L16)", TAG, None, None, 202, content_type="audio/l16"),
)
document(
    "/internal/calls/<id>/audio",
    "POST",
    OperationDoc("Caller audio (L16)", TAG, None, None, 202, content_type="audio/l16"),
)
