"""/tool: tools the model can call (api-compat.md §4).

Deleting a tool that assistants list in ``model.toolIds`` is allowed (Vapi refuses only version-pinned
references): the id is removed from those assistants in the same transaction, so none is left pointing at
a tool that no longer exists.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint

from api.crud import ResourceSpec, default_to_wire, register_crud, validate
from api.errors import ApiError
from api.openapi import OperationDoc, document
from api.routes.credentials import require_credential
from api.schemas.credential import drop_nulls, find_nul, patch_merge
from api.schemas.tool import ToolCreate, ToolEnvelope, ToolPatch, ToolResponse, model_for
from api.sealing import redact_server, seal_server
from esl_controller.db.fields import utcnow
from esl_controller.db.models import Assistant, Tool

log = logging.getLogger("esl_controller.api.tools")

bp = Blueprint("tools", __name__)


def _check_references(body: dict[str, Any]) -> str | None:
    """Credentials and assistants the tool names must exist; returns the credential id for the column."""
    credential_id = body.get("credentialId")
    if credential_id:
        require_credential(credential_id, "credentialId")
    server_cred = (body.get("server") or {}).get("credentialId")
    if server_cred:
        require_credential(server_cred, "server.credentialId")
    destinations = body.get("destinations") if body["type"] == "handoff" else None
    assistant_ids = [
        d["assistantId"] for d in destinations or [] if isinstance(d, dict) and d.get("assistantId")
    ]
    if assistant_ids:
        found = {
            a.id for a in Assistant.select(Assistant.id).where(Assistant.id.in_(assistant_ids))
        }
        missing = [a for a in assistant_ids if a not in found]
        if missing:
            raise ApiError(400, [f"destinations: assistant {a} not found" for a in missing])
    return credential_id or server_cred


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    if (where := find_nul(body)) is not None:
        raise ApiError(400, f"{where}: text must not contain NUL characters")
    model = model_for(body.get("type"))
    if model is None:
        raise ApiError(400, f"type {body.get('type')!r} is not a known tool type")
    clean = seal_server(drop_nulls(validate(model, body)))
    credential_id = _check_references(clean)
    name = (clean.get("function") or {}).get("name") or clean.get("name")
    return {"type": clean["type"], "name": name, "credential": credential_id, "data": clean}


def on_create(body: dict[str, Any]) -> dict[str, Any]:
    return _fields(body)


def on_update(row: Tool, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("type") not in (None, row.type):
        raise ApiError(400, f"type cannot be changed (this tool is {row.type})")
    merged = patch_merge(row.data or {}, {k: v for k, v in body.items() if k != "type"})
    merged["type"] = row.type
    return _fields(merged)


def to_wire(row: Tool) -> dict[str, Any]:
    out = redact_server(default_to_wire(row))
    out["type"] = row.type
    return out


def after_delete(row: Tool) -> None:
    """Drop the deleted tool's id from every assistant's ``model.toolIds``."""
    for assistant in Assistant.select().where(Assistant.data.coerce(False).contains(row.id)):
        data = dict(assistant.data or {})
        model = data.get("model")
        if not isinstance(model, dict) or row.id not in (model.get("toolIds") or []):
            continue
        model = {**model, "toolIds": [t for t in model["toolIds"] if t != row.id]}
        assistant.data = {**data, "model": model}
        assistant.updated_at = utcnow()
        assistant.save()
        log.info("removed deleted tool %s from assistant %s", row.id, assistant.id)


SPEC = ResourceSpec(
    name="Tool",
    path="/tool",
    model=Tool,
    create_schema=ToolEnvelope,
    update_schema=ToolPatch,
    response_schema=ToolResponse,
    on_create=on_create,
    on_update=on_update,
    to_wire=to_wire,
    after_delete=after_delete,
)
register_crud(bp, SPEC)
document("/tool", "POST", OperationDoc("Create Tool", "Tool", ToolCreate, ToolResponse, 201))
document("/tool/<id>", "PATCH", OperationDoc("Update Tool", "Tool", ToolCreate, ToolResponse))
