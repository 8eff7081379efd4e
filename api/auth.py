"""Authentication for every route unless it is explicitly marked public with :func:`public`.

Accepted: ``Authorization: Bearer <api key>``, ``X-API-Key: <api key>``, or (when Supabase Auth is configured)
``Authorization: Bearer <Supabase access token>``. The FreeSWITCH hooks may also present ``X-Hook-Secret``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from flask import Flask, current_app, g, request

from api.errors import ApiError
from esl_controller.db.fields import utcnow
from esl_controller.db.models import ApiKey
from esl_controller.security.api_keys import verify_key
from esl_controller.security.supabase_jwt import Principal

F = TypeVar("F", bound=Callable)
_TOUCH_EVERY = timedelta(minutes=1)


def public(view: F) -> F:
    """Mark a view as reachable without credentials (health, readiness, the OpenAPI document)."""
    view._public = True  # type: ignore[attr-defined]
    return view


def hook_secret_allowed(view: F) -> F:
    """Mark a view as accepting the FreeSWITCH hook secret in ``X-Hook-Secret`` instead of an API key."""
    view._hook_secret = True  # type: ignore[attr-defined]
    return view


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    key = request.headers.get("X-API-Key")
    return key.strip() if key else None


def _authenticate() -> Principal | None:
    token = _presented_token()
    if token:
        row = verify_key(token)
        if row is not None:
            now = utcnow()
            if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
                ApiKey.update(last_used_at=now).where(ApiKey.id == row.id).execute()
            return Principal(subject=row.name, kind="api-key", key_id=row.id)
        verifier = current_app.extensions["esl_controller"].supabase
        if verifier is not None and token.count(".") == 2:
            return verifier.verify(token)
    return None


def install_auth(app: Flask) -> None:
    @app.before_request
    def _require_auth():
        view = app.view_functions.get(request.endpoint) if request.endpoint else None
        if view is not None and getattr(view, "_public", False):
            return None
        if request.method == "OPTIONS" and view is not None:
            return None
        principal = _authenticate()
        if principal is None and view is not None and getattr(view, "_hook_secret", False):
            secret = current_app.extensions["esl_controller"].settings.auth.hook_secret
            presented = request.headers.get("X-Hook-Secret", "")
            if secret and presented and hmac.compare_digest(secret.encode(), presented.encode()):
                principal = Principal(subject="freeswitch-hook", kind="hook-secret")
        if principal is None:
            raise ApiError(
                401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="esl-controller"'}
            )
        g.principal = principal
        return None
