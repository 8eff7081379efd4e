"""/credential: provider credentials, sealed at rest (api-compat.md §9).

Storage: ``data`` holds the non-secret fields, ``secret_blob`` the sealed secret fields, ``redacted`` the
non-secret fields plus a hint for each secret: that is all a response ever shows.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from api.crud import ResourceSpec, register_crud, stamps, validate
from api.errors import ApiError
from api.openapi import OperationDoc, document
from api.schemas.credential import (
    CREDENTIAL_MODELS,
    CredentialCreate,
    CredentialEnvelope,
    CredentialPatch,
    CredentialResponse,
    deep_merge,
    drop_nulls,
    find_nul,
    patch_merge,
    split_secrets,
)
from esl_controller.db.models import Assistant, Credential, PhoneNumber, Tool, WebhookEndpoint
from esl_controller.security.secrets_box import SecretBox

bp = Blueprint("credentials", __name__)

#: nested objects merged (not replaced) by PATCH, so their secrets need not be resent
NESTED = ("authenticationPlan", "outboundAuthenticationPlan")


def _box() -> SecretBox:
    return current_app.extensions["esl_controller"].secret_box


def _model_for(provider: str):
    model = CREDENTIAL_MODELS.get(provider)
    if model is None:
        raise ApiError(400, f"provider must be one of {', '.join(sorted(CREDENTIAL_MODELS))}")
    return model


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a full body for its provider and split it into the stored columns."""
    if (where := find_nul(body)) is not None:
        raise ApiError(400, f"{where}: text must not contain NUL characters")
    model = _model_for(body.get("provider"))
    clean = drop_nulls(validate(model, body))
    public, secrets, hints = split_secrets(clean, model.SECRET_PATHS)
    return {
        "provider": clean["provider"],
        "name": clean.get("name"),
        "data": public,
        "redacted": deep_merge(public, hints),
        "secret_blob": _box().seal(secrets),
    }


def on_create(body: dict[str, Any]) -> dict[str, Any]:
    return _fields(body)


def on_update(row: Credential, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("provider") not in (None, row.provider):
        raise ApiError(400, f"provider cannot be changed (this credential is {row.provider})")
    current = deep_merge(row.data or {}, _box().open(row.secret_blob))
    merged = patch_merge(current, {k: v for k, v in body.items() if k != "provider"}, NESTED)
    merged["provider"] = row.provider
    return _fields(merged)


def to_wire(row: Credential) -> dict[str, Any]:
    out = dict(row.redacted or {})
    out.update(stamps(row))
    out["provider"] = row.provider
    if row.name is not None:
        out["name"] = row.name
    return out


def referrers(credential_id: str) -> list[str]:
    """Human-readable names of the objects that still use a credential (column references, then ids inside
    stored bodies such as ``server.credentialId`` or an assistant's ``credentialIds``)."""
    found: list[str] = []
    seen: set[str] = set()
    for model, label in (
        (PhoneNumber, "phone number"),
        (Tool, "tool"),
        (WebhookEndpoint, "webhook endpoint"),
    ):
        for row in model.select(model.id).where(model.credential == credential_id).limit(5):
            seen.add(row.id)
            found.append(f"{label} {row.id}")
    for model, label in (
        (PhoneNumber, "phone number"),
        (Tool, "tool"),
        (WebhookEndpoint, "webhook endpoint"),
        (Assistant, "assistant"),
    ):
        # coerce(False): match the JSON text itself (JSONField would JSON-encode the LIKE pattern)
        query = model.select(model.id).where(model.data.coerce(False).contains(credential_id))
        query = query.limit(5)
        for row in query:
            if row.id not in seen:
                seen.add(row.id)
                found.append(f"{label} {row.id}")
    return found


def before_delete(row: Credential) -> None:
    users = referrers(row.id)
    if users:
        raise ApiError(400, f"credential {row.id} is still used by {', '.join(users)}")


def load_credential_secrets(credential_id: str, box: SecretBox | None = None) -> dict[str, Any]:
    """The full credential body, secrets decrypted, for internal use (never for a response or a log).

    Includes ``id``, ``provider`` and ``name``. ``box`` defaults to the current Flask app's secret box.
    Raises LookupError when the credential does not exist and SecretBoxError when it cannot be decrypted.
    """
    row = Credential.get_or_none(Credential.id == credential_id)
    if row is None:
        raise LookupError(f"credential {credential_id} not found")
    box = box or _box()
    out = deep_merge(row.data or {}, box.open(row.secret_blob))
    out.update({"id": row.id, "provider": row.provider})
    if row.name is not None:
        out["name"] = row.name
    return out


def require_credential(
    credential_id: str, where: str, providers: tuple[str, ...] = ()
) -> Credential:
    """The credential a body refers to, or a 400 naming the field (and the providers it must be one of)."""
    row = Credential.get_or_none(Credential.id == credential_id)
    if row is None:
        raise ApiError(400, f"{where}: credential {credential_id} not found")
    if providers and row.provider not in providers:
        raise ApiError(
            400,
            f"{where}: credential {credential_id} is a {row.provider} credential; "
            f"expected {' or '.join(providers)}",
        )
    return row


SPEC = ResourceSpec(
    name="Credential",
    path="/credential",
    model=Credential,
    create_schema=CredentialEnvelope,
    update_schema=CredentialPatch,
    response_schema=CredentialResponse,
    on_create=on_create,
    on_update=on_update,
    to_wire=to_wire,
    before_delete=before_delete,
)
register_crud(bp, SPEC)
document(
    "/credential",
    "POST",
    OperationDoc("Create Credential", "Credential", CredentialCreate, CredentialResponse, 201),
)
document(
    "/credential/<id>",
    "PATCH",
    OperationDoc("Update Credential", "Credential", CredentialCreate, CredentialResponse),
)
