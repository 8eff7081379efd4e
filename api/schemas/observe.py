"""Responses of /logs, /logs/calls, /call/:id/timeline, /call/:id/costs, /analytics/summary and /slo.

Documentation only: the routes build dicts (``esl_controller.observe``). ``Log`` follows Vapi's old Log
object (api-compat.md §13); the rest is ours (§14).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class _Doc(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class PageMetadata(_Doc):
    items_per_page: int
    total_items: int
    current_page: int
    total_pages: int | None = None
    has_next_page: bool | None = None
    sort_order: str | None = None


class LogError(_Doc):
    message: str


class Log(_Doc):
    time: str
    org_id: str
    #: API | Webhook | Call | Provider
    type: str
    webhook_type: str | None = None
    resource: str | None = None
    level: str | None = None
    request_duration_seconds: float | None = None
    request_http_method: str | None = None
    request_url: str | None = None
    request_headers: dict[str, Any] | None = None
    response_http_code: int | None = None
    response_body: str | None = None
    error: LogError | None = None
    assistant_id: str | None = None
    phone_number_id: str | None = None
    call_id: str | None = None
    #: call events: kind, source, log text and data
    kind: str | None = None
    source: str | None = None
    log: str | None = None
    data: dict[str, Any] | None = None


class LogPage(_Doc):
    results: list[Log]
    metadata: PageMetadata


class CallLog(_Doc):
    id: int
    call_id: str
    org_id: str
    time: str
    #: INFO | WARN | ERROR | ...
    level: str
    kind: str
    #: esl | api | pipeline | runtime | webhook
    source: str
    log: str
    data: dict[str, Any]


class CallLogPage(_Doc):
    results: list[CallLog]
    metadata: PageMetadata


class TimelineItem(_Doc):
    time: str
    #: event | message | webhook-job | webhook-attempt | artifact | transcript
    type: str
    seconds_from_start: float


class Timeline(_Doc):
    call_id: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    truncated: bool
    items: list[TimelineItem]


class CallCosts(_Doc):
    cost: float
    #: transport, stt, llm, tts, vapi, total, llmPromptTokens, llmCompletionTokens, ttsCharacters, ...
    cost_breakdown: dict[str, Any]
    #: Vapi's costs[] items, by type: transport, transcriber, model, voice, vapi
    costs: list[dict[str, Any]]
    currency: str
    #: "<version>@<12 hex>" of the card that priced the call; null when no card is configured
    rate_card: str | None = None
    complete: bool
    #: prices the card does not have: {key, type, provider, model, usage}
    missing: list[dict[str, Any]]
    call_id: str
    #: the total with 6 decimal places, as text
    cost_exact: str
    #: true once the ended call is priced and stored
    final: bool
    stored: bool
    message: str | None = None


class AnalyticsSummary(_Doc):
    time_range: dict[str, Any]
    assistant_id: str | None = None
    calls: dict[str, Any]
    duration_seconds: dict[str, Any]
    cost: dict[str, Any]
    turn_latency_seconds: dict[str, Any]
    buckets: list[dict[str, Any]]


class SloSnapshot(_Doc):
    generated_at: str
    #: the worst status over every window: ok | at-risk | breached | no-data
    status: str
    #: "5m" | "1h" | "24h" -> {voice, api, webhooks, audio, status}
    windows: dict[str, Any]
    thresholds: dict[str, Any]
