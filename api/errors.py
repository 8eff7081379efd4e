"""NestJS-style error bodies everywhere: ``{"statusCode", "error", "message"}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("esl_controller.api")


class ApiError(Exception):
    """Raise from a view to answer ``status`` with ``message`` (a string or a list of strings)."""

    def __init__(
        self, status: int, message: str | list[str], headers: dict[str, str] | None = None
    ):
        super().__init__(message if isinstance(message, str) else "; ".join(message))
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str | list[str]) -> ApiError:
    return ApiError(400, message)


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} {ident} not found")


def error_body(status: int, message: str | list[str]):
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    resp = jsonify({"statusCode": status, "error": phrase, "message": message})
    resp.status_code = status
    return resp


def _loc(loc: tuple) -> str:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    return ".".join(parts) if parts else "body"


def validation_messages(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = _loc(err.get("loc", ()))
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            out.append(f"property {loc} should not exist")
        elif kind == "missing":
            out.append(f"{loc} is required")
        else:
            out.append(f"{loc}: {err.get('msg', 'invalid value')}")
    return out


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        resp = error_body(exc.status, exc.message)
        for k, v in exc.headers.items():
            resp.headers[k] = v
        return resp

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        return error_body(400, validation_messages(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        message = exc.description if status not in (404, 405) else HTTPStatus(status).phrase
        if status == 404:
            message = "Cannot find the requested route"
        resp = error_body(status, message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_body(500, "Internal server error")
