"""/assistant: the assistant resource."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.crud import ResourceSpec, default_to_wire, register_crud
from api.errors import ApiError
from api.schemas.assistant import AssistantBody, AssistantResponse, to_current
from api.sealing import redact_server, seal_server
from esl_controller.db.models import Assistant, Credential, Tool

bp = Blueprint("assistants", __name__)


def check_references(body: dict[str, Any]) -> None:
    """Referenced tools and credentials must exist (a 400 naming the missing id)."""
    tool_ids = (body.get("model") or {}).get("toolIds") or []
    if tool_ids:
        found = {t.id for t in Tool.select(Tool.id).where(Tool.id.in_(tool_ids))}
        missing = [t for t in tool_ids if t not in found]
        if missing:
            raise ApiError(400, [f"model.toolIds: tool {t} not found" for t in missing])
    cred_ids = list(body.get("credentialIds") or [])
    server_cred = (body.get("server") or {}).get("credentialId")
    if server_cred:
        cred_ids.append(server_cred)
    if cred_ids:
        found = {c.id for c in Credential.select(Credential.id).where(Credential.id.in_(cred_ids))}
        missing = [c for c in cred_ids if c not in found]
        if missing:
            raise ApiError(400, [f"credential {c} not found" for c in missing])


def on_create(body: dict[str, Any]) -> dict[str, Any]:
    body = seal_server(to_current(body))
    check_references(body)
    return {"data": body, "name": body.get("name")}


def on_update(row: Assistant, body: dict[str, Any]) -> dict[str, Any]:
    body = seal_server(to_current(body))
    check_references(body)
    data = {**(row.data or {}), **body}
    return {"data": data, "name": data.get("name")}


def to_wire(row: Assistant) -> dict[str, Any]:
    out = default_to_wire(row)
    return redact_server(out)


register_crud(
    bp,
    ResourceSpec(
        name="Assistant",
        path="/assistant",
        model=Assistant,
        create_schema=AssistantBody,
        update_schema=AssistantBody,
        response_schema=AssistantResponse,
        on_create=on_create,
        on_update=on_update,
        to_wire=to_wire,
    ),
)
