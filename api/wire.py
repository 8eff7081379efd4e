"""Wire helpers: canonical timestamps, JSON body reading, camelCase conversion."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from flask import current_app, request

from api.errors import ApiError

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def iso(value: datetime | None) -> str | None:
    """Vapi's canonical form: UTC with milliseconds and a Z."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def check_uuid(value: str, what: str = "id") -> str:
    if not _UUID_RE.match(value or ""):
        raise ApiError(400, f"{what} must be a UUID")
    return value.lower()


def json_body(allow_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object body; clear 4xx errors for anything else."""
    limit = current_app.config.get("JSON_BODY_LIMIT")
    if limit and request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    raw = request.get_data(cache=True)
    if limit and len(raw) > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "request body must be a JSON object")
    ctype = (request.mimetype or "").lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(415, "Content-Type must be application/json")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    where = find_nul(data)
    if where is not None:
        raise ApiError(400, f"{where}: text must not contain NUL characters")
    return data


def find_nul(value: Any, path: str = "body") -> str | None:
    """The path of the first string (or key) holding a NUL character, which PostgreSQL text cannot store."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                return f"{path} key"
            found = find_nul(v, f"{path}.{k}" if path != "body" else k)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = find_nul(v, f"{path}[{i}]")
            if found:
                return found
    return None


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)
