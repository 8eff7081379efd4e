"""Webhook log responses (ours; no Vapi counterpart, api-compat.md §14). Documentation only: responses are
built as dicts in ``api/routes/logs.py``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from api.schemas.common import Response

JOB_STATUSES = ("pending", "delivering", "delivered", "failed", "skipped")


class WebhookAttemptResponse(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    id: str
    job_id: str
    number: int
    created_at: str
    request_url: str
    #: secrets masked
    request_headers: dict[str, str]
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    #: at most 2 KB of the answer
    response_excerpt: str | None = None
    replay: bool


class WebhookJobResponse(Response):
    call_id: str | None = None
    #: the server message type
    type: str
    #: pending | delivering | delivered | failed | skipped
    status: str
    url: str
    #: url, source, endpointId, credentialId, scope, timeoutSeconds, headers (values of secret ones masked)
    target: dict[str, Any]
    attempt_count: int
    max_attempts: int
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    last_error: str | None = None
    last_status_code: int | None = None
    #: the latest attempt's latency
    latency_ms: int | None = None
    ordering_key: str
    seq: int
    attempts: list[WebhookAttemptResponse]
    #: the message body (GET by id only)
    payload: dict[str, Any] | None = None


class WebhookJobPage(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    results: list[WebhookJobResponse]
    metadata: dict[str, Any]
