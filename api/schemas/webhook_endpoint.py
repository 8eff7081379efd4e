"""Webhook endpoint bodies (ours; no Vapi counterpart, api-compat.md §14): where server messages go, for the
whole account or one assistant, phone number or tool."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from api.schemas.common import Name, Response, Strict, UUIDStr
from api.schemas.credential import check_headers

SCOPES = ("account", "assistant", "phone-number", "tool")
#: server message types (api-compat.md §11 and Vapi's serverMessages enum)
EVENT_TYPES = (
    "assistant-request", "assistant.started", "assistant.speechStarted", "call.deleted",
    "call.delete.failed", "call.endpointing.request", "chat.created", "chat.deleted",
    "conversation-update", "end-of-call-report", "function-call", "handoff-destination-request",
    "hang", "knowledge-base-request", "language-change-detected", "language-changed",
    "model-output", "phone-call-control", "session.created", "session.updated", "session.deleted",
    "speech-update", "status-update", "tool-calls", "transcript", 'transcript[transcriptType="final"]',
    "transfer-destination-request", "transfer-update", "user-interrupted", "voice-input",
    "voice-request",
)  # fmt: skip
EVENT_PREFIXES = ("chat.", "session.", "workflow.")
_EVENT_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def _check_event(value: str) -> str:
    if value in EVENT_TYPES or (_EVENT_RE.match(value) and value.startswith(EVENT_PREFIXES)):
        return value
    raise ValueError(f"unknown server message type {value[:100]!r}")


Event = Annotated[str, Field(max_length=100), AfterValidator(_check_event)]
HttpUrl = Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s/$.?#][^\s]*$")]


class _Endpoint(Strict):
    name: Name | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None
    scope_id: UUIDStr | None = None
    #: empty or missing: every type
    events: Annotated[list[Event], Field(max_length=100)] | None = None
    enabled: bool | None = None
    credential_id: UUIDStr | None = None
    headers: dict[str, str] | None = None
    timeout_seconds: Annotated[float, Field(ge=1, le=300)] | None = None

    _headers = field_validator("headers")(check_headers)


class WebhookEndpointCreate(_Endpoint):
    url: HttpUrl
    scope: Literal["account", "assistant", "phone-number", "tool"] = "account"


class WebhookEndpointUpdate(_Endpoint):
    url: HttpUrl | None = None
    scope: Literal["account", "assistant", "phone-number", "tool"] | None = None


class WebhookEndpointResponse(Response):
    url: str
    scope: str
    scope_id: str | None = None
    events: list[str]
    enabled: bool
    credential_id: str | None = None
