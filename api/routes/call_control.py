"""Creating and steering calls: ``POST /call``, ``/call/phone``, ``/call/web``, ``/call/:id/control``.

Everything goes through the controller's call service (``esl_controller.services``); when the
controller does not run in this process these answer 503. Status codes (api-compat.md):
201 with the Call (status ``queued``) on create; ``customers[]`` -> ``{results, errors}``; 400 for
bad bodies, unknown phone numbers/assistants, numbers that fail E.164, a phone number without a
SIP credential, and for controls the call cannot take (ended, not answered yet, being
transferred): not 409, because the Vapi SDK retries 409s and a retry would not fix these.
409 only when another node owns the call; 503 when FreeSWITCH is not configured or connected.
An ``Idempotency-Key`` header makes a create return the first answer again (the SDK retries 5xx).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from api.errors import ApiError
from api.openapi import OperationDoc, document
from api.schemas.call import (
    CallBatchResponse,
    CallResponse,
    ControlAnswer,
    ControlBody,
    CreateCallBody,
    WebCallBody,
)
from api.wire import check_uuid, json_body

bp = Blueprint("call_control", __name__)
TAG = "Calls"


def call_service() -> Any:
    svc = current_app.extensions["esl_controller"].calls
    if svc is None:
        raise ApiError(
            503, "the call controller is not running in this process (esl-controller serve runs it)"
        )
    return svc


def own_transactions() -> None:
    """The call service writes in its own short transactions (its sessions write from their own
    greenlets): commit the request's transaction now so nothing waits on it."""
    txn = g.pop("txn", None)
    if txn is not None:
        txn.__exit__(None, None, None)


def service_call(fn, *args, **kwargs):
    from esl_controller.services import CallServiceError

    try:
        return fn(*args, **kwargs)
    except CallServiceError as exc:
        raise ApiError(exc.status, exc.message) from None


def _create_phone():
    body = json_body()
    CreateCallBody.model_validate(body)
    svc = call_service()
    own_transactions()
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 200:
        raise ApiError(400, "Idempotency-Key must be 1 to 200 characters")
    status, answer = service_call(svc.create_phone_calls, body, key)
    return jsonify(answer), status


@bp.post("/call")
def create_call():
    return _create_phone()


@bp.post("/call/phone")
def create_phone_call():
    return _create_phone()


@bp.post("/call/web")
def create_web_call():
    body = json_body(allow_empty=True)
    WebCallBody.model_validate(body)
    svc = call_service()
    own_transactions()
    return jsonify(service_call(svc.create_web_call, body)), 201


@bp.post("/call/<id>/control")
def control_call(id: str):
    call_id = check_uuid(id, "call id")
    body = json_body()
    svc = call_service()
    own_transactions()
    return jsonify(service_call(svc.control, call_id, body))


document("/call", "POST", OperationDoc("Create Call", TAG, CreateCallBody, CallResponse, 201))
document(
    "/call/phone", "POST", OperationDoc("Create Phone Call", TAG, CreateCallBody, CallResponse, 201)
)
document("/call/web", "POST", OperationDoc("Create Web Call", TAG, WebCallBody, CallResponse, 201))
document(
    "/call/<id>/control",
    "POST",
    OperationDoc("Control a Live Call", TAG, ControlBody, ControlAnswer),
)
_ = CallBatchResponse
