"""/webhook-endpoint: where server messages are delivered (ours; api-compat.md §14 conventions).

``scope`` is ``account`` (every call) or ``assistant``/``phone-number``/``tool`` with ``scopeId`` naming an
existing object. ``events`` lists server-message types; empty or missing means all. Secrets belong in a
``webhook``/``custom-credential`` credential named by ``credentialId``; ``headers`` are stored as sent.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.crud import ResourceSpec, register_crud, stamps, validate
from api.errors import ApiError
from api.routes.credentials import require_credential
from api.schemas.credential import drop_nulls, find_nul, patch_merge
from api.schemas.webhook_endpoint import (
    SCOPES,
    WebhookEndpointCreate,
    WebhookEndpointResponse,
    WebhookEndpointUpdate,
)
from api.wire import check_uuid
from esl_controller.db.models import Assistant, PhoneNumber, Tool, WebhookEndpoint

bp = Blueprint("webhook_endpoints", __name__)

SCOPE_MODELS = {"assistant": Assistant, "phone-number": PhoneNumber, "tool": Tool}


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    if (where := find_nul(body)) is not None:
        raise ApiError(400, f"{where}: text must not contain NUL characters")
    clean = drop_nulls(validate(WebhookEndpointCreate, body))
    scope = clean.setdefault("scope", "account")
    scope_id = clean.get("scopeId")
    if scope == "account":
        if scope_id:
            raise ApiError(400, "scopeId must not be set when scope is account")
    else:
        if not scope_id:
            raise ApiError(400, f"scopeId is required when scope is {scope}")
        model = SCOPE_MODELS[scope]
        if model.get_or_none(model.id == scope_id) is None:
            raise ApiError(400, f"scopeId: {scope} {scope_id} not found")
    credential_id = clean.get("credentialId")
    if credential_id:
        require_credential(credential_id, "credentialId", ("webhook", "custom-credential"))
    clean.setdefault("enabled", True)
    clean.setdefault("events", [])
    return {
        "name": clean.get("name"),
        "url": clean["url"],
        "scope": scope,
        "scope_id": scope_id,
        "enabled": clean["enabled"],
        "credential": credential_id,
        "data": clean,
    }


def on_create(body: dict[str, Any]) -> dict[str, Any]:
    return _fields(body)


def on_update(row: WebhookEndpoint, body: dict[str, Any]) -> dict[str, Any]:
    return _fields(patch_merge(row.data or {}, body))


def to_wire(row: WebhookEndpoint) -> dict[str, Any]:
    out = {**(row.data or {}), **stamps(row)}
    out.update(
        url=row.url,
        scope=row.scope,
        enabled=bool(row.enabled),
        events=list((row.data or {}).get("events") or []),
    )
    out.pop("scopeId", None)
    out.pop("credentialId", None)
    if row.scope_id:
        out["scopeId"] = row.scope_id
    if row.credential_id:
        out["credentialId"] = row.credential_id
    return out


def list_filter(query, args):
    scope = args.get("scope")
    if scope is not None:
        if scope not in SCOPES:
            raise ApiError(400, f"scope must be one of {', '.join(SCOPES)}")
        query = query.where(WebhookEndpoint.scope == scope)
    scope_id = args.get("scopeId")
    if scope_id is not None:
        query = query.where(WebhookEndpoint.scope_id == check_uuid(scope_id, "scopeId"))
    enabled = args.get("enabled")
    if enabled is not None:
        if enabled.lower() not in ("true", "false", "1", "0"):
            raise ApiError(400, "enabled must be true or false")
        query = query.where(WebhookEndpoint.enabled == (enabled.lower() in ("true", "1")))
    return query


SPEC = ResourceSpec(
    name="Webhook Endpoint",
    path="/webhook-endpoint",
    model=WebhookEndpoint,
    create_schema=WebhookEndpointCreate,
    update_schema=WebhookEndpointUpdate,
    response_schema=WebhookEndpointResponse,
    on_create=on_create,
    on_update=on_update,
    to_wire=to_wire,
    list_filter=list_filter,
    extra_query=("scope", "scopeId", "enabled"),
    tag="Webhook Endpoint",
)
register_crud(bp, SPEC)
