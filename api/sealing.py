"""Legacy ``server.secret`` values are sealed at rest and shown only as a hint."""

from __future__ import annotations

from typing import Any

from api.crud import services
from esl_controller.security.secrets_box import hint

SEALED_KEY = "secretSealed"


def seal_server(body: dict[str, Any]) -> dict[str, Any]:
    """Encrypt ``server.secret`` in a body about to be stored (in place on a copy)."""
    server = body.get("server")
    if isinstance(server, dict) and server.get("secret"):
        server = dict(server)
        secret = server.pop("secret")
        server[SEALED_KEY] = services().secret_box.seal({"secret": secret, "hint": hint(secret)})
        body = {**body, "server": server}
    return body


def unseal_server_secret(data: dict[str, Any]) -> str | None:
    server = data.get("server") or {}
    token = server.get(SEALED_KEY)
    return services().secret_box.open(token)["secret"] if token else None


def redact_server(data: dict[str, Any]) -> dict[str, Any]:
    server = data.get("server")
    if isinstance(server, dict) and SEALED_KEY in server:
        server = dict(server)
        token = server.pop(SEALED_KEY)
        server["secret"] = services().secret_box.open(token).get("hint", "****")
        data = {**data, "server": server}
    return data
