"""The REST API: a Flask app factory over the shared peewee models.

``create_app(settings, services)`` builds the app; every route requires auth unless marked public; every
request runs in one database transaction (committed on 2xx/3xx, rolled back otherwise); every error answers
NestJS-style ``{"statusCode", "error", "message"}``.
"""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, g, request

from api.auth import install_auth
from api.errors import ApiError, install_error_handlers
from api.services import ApiServices
from esl_controller.config import Settings
from esl_controller.db import database
from esl_controller.logs import request_id_var

log = logging.getLogger("esl_controller.api")
access_log = logging.getLogger("esl_controller.api.access")


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _Rollback(Exception):
    """Passed to the transaction's __exit__ to roll back a request that answered an error."""


def _install_request_lifecycle(app: Flask, settings: Settings) -> None:
    @app.before_request
    def _begin():
        rid = request.headers.get("X-Request-Id", "")
        if not rid or len(rid) > 64 or not rid.replace("-", "").isalnum():
            rid = uuid.uuid4().hex[:16]
        g.request_id = rid
        g.started = time.perf_counter()
        g.request_id_token = request_id_var.set(rid)
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, f"request body larger than {limit} bytes")
        database.connect(reuse_if_open=True)
        if request.method not in _READ_METHODS:
            # writes: one transaction per request, so a failure part-way leaves nothing behind
            g.txn = database.atomic()
            g.txn.__enter__()

    @app.after_request
    def _finish(response):
        txn = g.pop("txn", None)
        if txn is not None:
            if response.status_code < 400:
                txn.__exit__(None, None, None)
            else:
                txn.__exit__(_Rollback, _Rollback(), None)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        access_log.info(
            "%s %s %s %.1fms", request.method, request.path, response.status_code, elapsed_ms
        )
        return response

    @app.teardown_request
    def _teardown(exc):
        txn = g.pop("txn", None)
        if txn is not None:  # after_request did not run (exception escaped)
            try:
                txn.__exit__(_Rollback, _Rollback(), None)
            except Exception:  # noqa: BLE001 - closing a broken transaction must not mask the error
                log.exception("rollback failed")
        if not database.is_closed() and not database.in_transaction():
            database.close()
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)


def create_app(settings: Settings | None = None, services: ApiServices | None = None) -> Flask:
    from api.routes import register_blueprints

    if services is None:
        if settings is None:
            settings = Settings()
        services = ApiServices.from_settings(settings)
    settings = services.settings
    app = Flask("esl_controller_api")
    # Uploads get their own, larger limit (checked by the file route); JSON bodies are checked per request.
    from api.routes.files import FORM_OVERHEAD

    app.config["MAX_CONTENT_LENGTH"] = max(
        settings.http.max_body_bytes, settings.http.max_file_bytes + FORM_OVERHEAD
    )
    app.config["JSON_BODY_LIMIT"] = settings.http.max_body_bytes
    app.json.sort_keys = False
    app.extensions["esl_controller"] = services
    app.url_map.strict_slashes = False
    install_error_handlers(app)
    _install_request_lifecycle(app, settings)
    install_auth(app)
    register_blueprints(app)
    return app


__all__ = ["ApiServices", "create_app"]
