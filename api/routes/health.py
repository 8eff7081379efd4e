"""Liveness, readiness and the OpenAPI document (all public)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from api.auth import public
from api.openapi import build_document
from esl_controller.db import ping

bp = Blueprint("health", __name__)


@bp.get("/health")
@public
def health():
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/ready")
@public
def ready():
    """Readiness: the database answers (and FreeSWITCH, when configured)."""
    checks = {"database": {"ok": ping()}}
    for name, check in current_app.extensions["esl_controller"].readiness.items():
        ok, detail = check()
        checks[name] = {"ok": bool(ok), "detail": detail}
    ok = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ok else "not-ready", "checks": checks}
    if not ok:
        body.update({"statusCode": 503, "error": "Service Unavailable", "message": "not ready"})
    return jsonify(body), 200 if ok else 503


@bp.get("/openapi.json")
@public
def openapi():
    """The OpenAPI document for every route."""
    return jsonify(build_document(current_app))
