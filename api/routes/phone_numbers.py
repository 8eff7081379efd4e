"""/phone-number: numbers and SIP URIs that route inbound calls to an assistant (api-compat.md §5).

``data`` keeps the body without its secret fields (a vapi number's ``authentication.password``, a twilio
number's ``twilioAuthToken``/``twilioApiSecret``); those are sealed into ``data.secretSealed`` with hints in
``data.secretHints``. ``number``/``sip_uri`` are unique columns; ``assistant``/``credential`` are foreign keys
and the source of truth for ``assistantId``/``credentialId`` on the wire.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from peewee import IntegrityError

from api.crud import ResourceSpec, register_crud, services, stamps, validate
from api.errors import ApiError
from api.openapi import OperationDoc, document
from api.routes.credentials import require_credential
from api.schemas.credential import deep_merge, drop_nulls, find_nul, patch_merge, split_secrets
from api.schemas.phone_number import (
    LOOSE_NUMBER_RE,
    PHONE_NUMBER_MODELS,
    PhoneNumberCreate,
    PhoneNumberEnvelope,
    PhoneNumberPatch,
    PhoneNumberResponse,
    digits_forms,
)
from api.sealing import redact_server, seal_server
from esl_controller.db.models import Assistant, PhoneNumber

bp = Blueprint("phone_numbers", __name__)

SEALED = "secretSealed"
HINTS = "secretHints"
NESTED = ("authentication",)


def _model_for(provider: Any):
    model = PHONE_NUMBER_MODELS.get(provider)
    if model is None:
        raise ApiError(400, f"provider must be one of {', '.join(PHONE_NUMBER_MODELS)}")
    return model


def _check_unique(number: str | None, sip_uri: str | None, own_id: str | None) -> None:
    if number:
        query = PhoneNumber.select(PhoneNumber.id).where(
            PhoneNumber.number.in_(digits_forms(number))
        )
        if own_id:
            query = query.where(PhoneNumber.id != own_id)
        other = query.first()
        if other:
            raise ApiError(400, f"number {number} is already used by phone number {other.id}")
    if sip_uri:
        query = PhoneNumber.select(PhoneNumber.id).where(PhoneNumber.sip_uri == sip_uri)
        if own_id:
            query = query.where(PhoneNumber.id != own_id)
        other = query.first()
        if other:
            raise ApiError(400, f"sipUri {sip_uri} is already used by phone number {other.id}")


def _fields(body: dict[str, Any], own_id: str | None = None) -> dict[str, Any]:
    """Validate a full body for its provider, check its references, and build the row's columns."""
    if (where := find_nul(body)) is not None:
        raise ApiError(400, f"{where}: text must not contain NUL characters")
    model = _model_for(body.get("provider"))
    clean = drop_nulls(validate(model, body))
    assistant_id = clean.get("assistantId")
    if assistant_id and Assistant.get_or_none(Assistant.id == assistant_id) is None:
        raise ApiError(400, f"assistantId: assistant {assistant_id} not found")
    credential_id = clean.get("credentialId")
    if credential_id:
        require_credential(credential_id, "credentialId", model.CREDENTIAL_PROVIDERS)
    server_cred = (clean.get("server") or {}).get("credentialId")
    if server_cred:
        require_credential(server_cred, "server.credentialId", ("webhook", "custom-credential"))
    number = clean.get("number")
    sip_uri = clean.get("sipUri")
    _check_unique(number, sip_uri, own_id)
    public, secrets, hints = split_secrets(clean, model.SECRET_PATHS)
    public = seal_server(public)
    if secrets:
        public[SEALED] = services().secret_box.seal(secrets)
        public[HINTS] = hints
    return {
        "provider": clean["provider"],
        "name": clean.get("name"),
        "number": number,
        "sip_uri": sip_uri,
        "assistant": assistant_id,
        "credential": credential_id,
        "data": public,
    }


def on_create(body: dict[str, Any]) -> dict[str, Any]:
    return _fields(body)


def full_body(row: PhoneNumber) -> dict[str, Any]:
    """The stored body with its sealed fields opened (internal use only; never for a response or a log)."""
    data = dict(row.data or {})
    token = data.pop(SEALED, None)
    data.pop(HINTS, None)
    if token:
        data = deep_merge(data, services().secret_box.open(token))
    return data


def on_update(row: PhoneNumber, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("provider") not in (None, row.provider):
        raise ApiError(400, f"provider cannot be changed (this phone number is {row.provider})")
    patch = {k: v for k, v in body.items() if k != "provider"}
    merged = patch_merge(full_body(row), patch, NESTED)
    merged["provider"] = row.provider
    return _fields(merged, own_id=row.id)


def to_wire(row: PhoneNumber) -> dict[str, Any]:
    data = dict(row.data or {})
    data.pop(SEALED, None)
    hints = data.pop(HINTS, None)
    if hints:
        data = deep_merge(data, hints)
    data = redact_server(data)
    data.pop("assistantId", None)
    data.pop("credentialId", None)
    out = {**data, **stamps(row), "provider": row.provider, "status": "active"}
    if row.assistant_id:
        out["assistantId"] = row.assistant_id
    if row.credential_id:
        out["credentialId"] = row.credential_id
    return out


def conflict_message(exc: IntegrityError) -> str:
    text = str(exc).lower()
    if "sip_uri" in text:
        return "sipUri is already used by another phone number"
    if "number" in text:
        return "number is already used by another phone number"
    return "phone number conflicts with an existing one"


def find_by_dialed(dialed: str) -> PhoneNumber | None:
    """The phone number an inbound call was dialed to: an E.164 number (with or without its leading +), a SIP
    URI, or a SIP URI's user part. None when nothing matches. Needs a database connection, not a request."""
    text = (dialed or "").strip()
    if not text or len(text) > 300:
        return None
    user = text
    if text.lower().startswith(("sip:", "sips:")):
        row = PhoneNumber.get_or_none(PhoneNumber.sip_uri == text)
        if row is not None:
            return row
        rest = text.split(":", 1)[1]
        user = rest.split("@", 1)[0] if "@" in rest else ""
        if not user:
            host = rest.split(";", 1)[0]
            return PhoneNumber.get_or_none(PhoneNumber.sip_uri == f"sip:{host}")
    user = user.split(";", 1)[0]
    if not user:
        return None
    if LOOSE_NUMBER_RE.match(user):
        row = (
            PhoneNumber.select()
            .where(PhoneNumber.number.in_(digits_forms(user)))
            .order_by(PhoneNumber.created_at)
            .first()
        )
        if row is not None:
            return row
    for scheme in ("sip:", "sips:"):
        query = PhoneNumber.select().where(PhoneNumber.sip_uri.startswith(f"{scheme}{user}@"))
        for row in query.order_by(PhoneNumber.created_at).limit(20):
            if row.sip_uri.startswith(
                f"{scheme}{user}@"
            ):  # LIKE is case-insensitive; user parts are not
                return row
    return None


SPEC = ResourceSpec(
    name="Phone Number",
    path="/phone-number",
    model=PhoneNumber,
    create_schema=PhoneNumberEnvelope,
    update_schema=PhoneNumberPatch,
    response_schema=PhoneNumberResponse,
    on_create=on_create,
    on_update=on_update,
    to_wire=to_wire,
    conflict_message=conflict_message,
    tag="Phone Number",
)
register_crud(bp, SPEC)
document(
    "/phone-number",
    "POST",
    OperationDoc(
        "Create Phone Number", "Phone Number", PhoneNumberCreate, PhoneNumberResponse, 201
    ),
)
document(
    "/phone-number/<id>",
    "PATCH",
    OperationDoc("Update Phone Number", "Phone Number", PhoneNumberCreate, PhoneNumberResponse),
)
