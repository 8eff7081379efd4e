"""/call: reading, renaming and deleting calls. Creating and controlling calls is the controller's
(``esl_controller.services``), wired in by ``api/routes/call_control.py`` when present."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.crud import ResourceSpec, register_crud
from api.errors import ApiError
from api.schemas.call import CallResponse, CallUpdateBody, CreateCallBody
from esl_controller.calls.serialize import call_to_wire, with_history
from esl_controller.db.models import Call, CallMessage

bp = Blueprint("calls", __name__)

STATUSES = ("scheduled", "queued", "ringing", "in-progress", "forwarding", "ended")


def list_filter(query, args):
    for param, column in (
        ("assistantId", Call.assistant_id),
        ("phoneNumberId", Call.phone_number_id),
    ):
        value = args.get(param)
        if value is not None:
            from api.wire import check_uuid

            query = query.where(column == check_uuid(value, param))
    if args.get("id") is not None:
        from api.wire import check_uuid

        query = query.where(Call.id == check_uuid(args["id"], "id"))
    status = args.get("status")
    if status is not None:
        if status not in STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(STATUSES)}")
        query = query.where(Call.status == status)
    return query


def call_detail(row: Call) -> dict[str, Any]:
    """GET /call/:id: the call with its conversation (lists leave it out: one query per call would not scale)."""
    rows = CallMessage.select().where(CallMessage.call == row.id).order_by(CallMessage.seq)
    return with_history(call_to_wire(row), rows)


def on_update(row: Call, body: dict[str, Any]) -> dict[str, Any]:
    return {"name": body.get("name", row.name)}


def before_delete(row: Call) -> None:
    if row.status not in ("ended", "scheduled", "queued"):
        raise ApiError(
            400, f"call is {row.status}: end it first (POST /call/{row.id}/control end-call)"
        )


register_crud(
    bp,
    ResourceSpec(
        name="Call",
        path="/call",
        model=Call,
        create_schema=CreateCallBody,
        update_schema=CallUpdateBody,
        response_schema=CallResponse,
        on_update=on_update,
        to_wire=call_to_wire,
        to_wire_detail=call_detail,
        list_filter=list_filter,
        extra_query=("id", "assistantId", "phoneNumberId", "status"),
        before_delete=before_delete,
        methods=("list", "get", "update", "delete"),
    ),
)
