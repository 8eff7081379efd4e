"""Call logs and the call timeline, read from the stored rows (I/O: peewee).

* :func:`unified_logs` (``GET /logs``): CallEvents and webhook delivery attempts in Vapi's old ``Log`` shape,
  one time-ordered, paginated list built with a ``UNION ALL`` of (time, id) pairs so that paging is done by
  the database. Types: ``Call`` (call events), ``Provider`` (call events of kind ``usage`` or
  ``provider-*``: provider requests, usage and errors), ``Webhook`` (one item per delivery attempt, level
  ``ERROR`` unless it got a 2xx), ``API`` (request logs are not stored: always empty; the access log goes to
  the ``esl_controller.api.access`` logger).
* :func:`call_logs` (``GET /logs/calls``): call events, in the shape of Vapi's old per-call logs.
* :func:`call_timeline` (``GET /call/:id/timeline``): events, messages, webhook jobs and attempts,
  artifacts and a transcript summary of one call, merged in time order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from peewee import SQL, Cast

from esl_controller.calls.serialize import iso
from esl_controller.db.models import (
    Artifact,
    Call,
    CallEvent,
    CallMessage,
    WebhookAttempt,
    WebhookJob,
)

LOG_TYPES = ("API", "Webhook", "Call", "Provider")
LEVELS = ("DEBUG", "INFO", "LOG", "WARN", "WARNING", "ERROR", "CHECKPOINT")
PROVIDER_KIND = "usage"
PROVIDER_PREFIX = "provider-"
#: most rows of each kind a timeline reads
TIMELINE_CAP = 5000
_TYPE_RANK = {
    "event": 0,
    "message": 1,
    "webhook-job": 2,
    "webhook-attempt": 3,
    "artifact": 4,
    "transcript": 5,
}


@dataclass(frozen=True)
class LogQuery:
    type: str | None = None
    call_id: str | None = None
    assistant_id: str | None = None
    phone_number_id: str | None = None
    level: str | None = None
    webhook_type: str | None = None
    kind: str | None = None
    source: str | None = None
    #: (op, value) on the log time: gt | lt | ge | le
    bounds: tuple[tuple[str, datetime], ...] = ()
    page: int = 1
    limit: int = 100
    order: str = "DESC"


def _time_conditions(field, bounds: Iterable[tuple[str, datetime]]):
    cond = None
    for op, value in bounds:
        if value.microsecond % 1000 == 0 and op in ("gt", "le"):
            # a bound copied from a response (milliseconds) covers its whole millisecond
            value = value + timedelta(microseconds=999)
        c = {"gt": field > value, "lt": field < value, "ge": field >= value, "le": field <= value}[
            op
        ]
        cond = c if cond is None else cond & c
    return cond


def _and(cond, more):
    if more is None:
        return cond
    return more if cond is None else cond & more


def _calls_matching(q: LogQuery):
    cond = None
    if q.assistant_id:
        cond = _and(cond, Call.assistant_id == q.assistant_id)
    if q.phone_number_id:
        cond = _and(cond, Call.phone_number_id == q.phone_number_id)
    return None if cond is None else Call.select(Call.id).where(cond)


def _provider_cond():
    return (CallEvent.kind == PROVIDER_KIND) | CallEvent.kind.startswith(PROVIDER_PREFIX)


def _event_cond(q: LogQuery, log_type: str | None):
    cond = CallEvent.id.is_null(False)
    if log_type == "Provider":
        cond &= _provider_cond()
    elif log_type == "Call":
        cond &= ~_provider_cond()
    if q.call_id:
        cond &= CallEvent.call == q.call_id
    calls = _calls_matching(q)
    if calls is not None:
        cond &= CallEvent.call.in_(calls)
    if q.level:
        cond &= CallEvent.level == q.level
    if q.kind:
        cond &= CallEvent.kind == q.kind
    if q.source:
        cond &= CallEvent.source == q.source
    return _and(cond, _time_conditions(CallEvent.at, q.bounds))


def _attempt_cond(q: LogQuery):
    cond = WebhookAttempt.id.is_null(False)
    if q.call_id:
        cond &= WebhookJob.call_id == q.call_id
    calls = _calls_matching(q)
    if calls is not None:
        cond &= WebhookJob.call_id.in_(calls)
    if q.webhook_type:
        cond &= WebhookJob.message_type == q.webhook_type
    ok = (WebhookAttempt.status_code >= 200) & (WebhookAttempt.status_code < 300)
    if q.level == "INFO":
        cond &= ok
    elif q.level == "ERROR":
        cond &= WebhookAttempt.status_code.is_null(True) | ~ok
    elif q.level:
        cond &= SQL("1 = 0")
    return _and(cond, _time_conditions(WebhookAttempt.created_at, q.bounds))


def _message_of(data: Any, fallback: str) -> str:
    if isinstance(data, Mapping):
        for key in ("message", "text", "error", "reason"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
    return fallback


def _is_provider(kind: str) -> bool:
    return kind == PROVIDER_KIND or kind.startswith(PROVIDER_PREFIX)


def event_log_item(ev: CallEvent, call: Call) -> dict[str, Any]:
    """A call event as a Vapi ``Log`` (type Call or Provider)."""
    data = ev.data if isinstance(ev.data, Mapping) else {}
    item: dict[str, Any] = {
        "time": iso(ev.at),
        "orgId": call.org_id,
        "type": "Provider" if _is_provider(ev.kind) else "Call",
        "resource": "call",
        "callId": call.id,
        "assistantId": call.assistant_id,
        "phoneNumberId": call.phone_number_id,
        "level": ev.level,
        "kind": ev.kind,
        "source": ev.source,
        "log": _message_of(data, ev.kind),
        "data": data,
        "eventId": ev.id,
    }
    if ev.level == "ERROR":
        item["error"] = {"message": _message_of(data, ev.kind)}
    if item["type"] == "Provider" and data.get("provider"):
        item["provider"] = data.get("provider")
    return item


def attempt_log_item(a: WebhookAttempt, job: WebhookJob, call: Call | None) -> dict[str, Any]:
    """A webhook delivery attempt as a Vapi ``Log`` (type Webhook)."""
    ok = a.status_code is not None and 200 <= a.status_code < 300
    item: dict[str, Any] = {
        "time": iso(a.created_at),
        "orgId": a.org_id,
        "type": "Webhook",
        "webhookType": job.message_type,
        "resource": "call" if job.call_id else None,
        "callId": job.call_id,
        "assistantId": call.assistant_id if call else None,
        "phoneNumberId": call.phone_number_id if call else None,
        "level": "INFO" if ok else "ERROR",
        "requestHttpMethod": "POST",
        "requestUrl": a.request_url,
        "requestHeaders": a.request_headers or {},
        "requestDurationSeconds": None if a.latency_ms is None else a.latency_ms / 1000,
        "responseHttpCode": a.status_code,
        "responseBody": a.response_excerpt,
        "webhookJobId": job.id,
        "webhookAttemptId": a.id,
        "attemptNumber": a.number,
        "replay": bool(a.replay),
    }
    if not ok:
        item["error"] = {"message": a.error or f"HTTP {a.status_code}"}
    return item


def page_metadata(q: LogQuery, total: int) -> dict[str, Any]:
    pages = -(-total // q.limit) if q.limit else 0
    return {
        "itemsPerPage": q.limit,
        "totalItems": total,
        "currentPage": q.page,
        "totalPages": pages,
        "hasNextPage": q.page < pages,
        "sortOrder": q.order,
    }


def unified_logs(q: LogQuery) -> dict[str, Any]:
    """``{results, metadata}`` for ``GET /logs``."""
    parts = []
    total = 0
    if q.type in (None, "Call", "Provider") and not q.webhook_type:
        ev = CallEvent.select(
            SQL("'e'").alias("src"),
            Cast(CallEvent.id, "TEXT").alias("rid"),
            CallEvent.id.alias("n"),
            Cast(CallEvent.at, "BIGINT").alias("t"),
        ).where(_event_cond(q, q.type))
        total += ev.count()
        parts.append(ev)
    if q.type in (None, "Webhook"):
        wa = (
            WebhookAttempt.select(
                SQL("'w'").alias("src"),
                Cast(WebhookAttempt.id, "TEXT").alias("rid"),
                Cast(WebhookAttempt.number, "BIGINT").alias("n"),
                Cast(WebhookAttempt.created_at, "BIGINT").alias("t"),
            )
            .join(WebhookJob)
            .where(_attempt_cond(q))
        )
        total += wa.count()
        parts.append(wa)
    rows: list[tuple[str, str]] = []
    if parts and q.limit:
        query = parts[0] if len(parts) == 1 else parts[0].union_all(parts[1])
        d = " DESC" if q.order == "DESC" else ""
        query = (
            query.order_by(SQL("t" + d), SQL("src" + d), SQL("n" + d), SQL("rid" + d))
            .offset((q.page - 1) * q.limit)
            .limit(q.limit)
        )
        rows = [(src, rid) for src, rid, _n, _t in query.tuples()]
    event_ids = [int(rid) for src, rid in rows if src == "e"]
    attempt_ids = [rid for src, rid in rows if src == "w"]
    events = {
        ev.id: ev
        for ev in CallEvent.select(CallEvent, Call)
        .join(Call)
        .where(CallEvent.id.in_(event_ids or [0]))
    }
    attempts = {
        a.id: a
        for a in WebhookAttempt.select(WebhookAttempt, WebhookJob)
        .join(WebhookJob)
        .where(WebhookAttempt.id.in_(attempt_ids or [""]))
    }
    call_ids = {a.job.call_id for a in attempts.values() if a.job.call_id}
    calls = {c.id: c for c in Call.select().where(Call.id.in_(list(call_ids) or [""]))}
    results = []
    for src, rid in rows:
        if src == "e":
            ev = events[int(rid)]
            results.append(event_log_item(ev, ev.call))
        else:
            a = attempts[rid]
            results.append(attempt_log_item(a, a.job, calls.get(a.job.call_id)))
    return {"results": results, "metadata": page_metadata(q, total)}


def call_event_item(ev: CallEvent, org_id: str) -> dict[str, Any]:
    data = ev.data if isinstance(ev.data, Mapping) else {}
    return {
        "id": ev.id,
        "callId": ev.call_id,
        "orgId": org_id,
        "time": iso(ev.at),
        "level": ev.level,
        "kind": ev.kind,
        "source": ev.source,
        "log": _message_of(data, ev.kind),
        "data": data,
    }


def call_logs(q: LogQuery) -> dict[str, Any]:
    """``{results, metadata}`` for ``GET /logs/calls``: call events, newest first by default."""
    query = CallEvent.select(CallEvent, Call.id, Call.org_id).join(Call).where(_event_cond(q, None))
    total = query.count()
    if q.order == "DESC":
        order = (CallEvent.at.desc(), CallEvent.id.desc())
    else:
        order = (CallEvent.at.asc(), CallEvent.id.asc())
    rows = query.order_by(*order).offset((q.page - 1) * q.limit).limit(q.limit) if q.limit else []
    results = [call_event_item(ev, ev.call.org_id) for ev in rows]
    return {"results": results, "metadata": page_metadata(q, total)}


# ---------------------------------------------------------------------------------------- timeline

_SPEAKER = {"bot": "AI", "assistant": "AI", "user": "User"}


def transcript_text(messages: Iterable[CallMessage]) -> str:
    """Vapi's ``artifact.transcript``: one ``AI: …`` / ``User: …`` line per spoken turn."""
    lines = []
    for m in messages:
        who = _SPEAKER.get(m.role)
        if who and m.message:
            lines.append(f"{who}: {m.message}")
    return "\n".join(lines)


def call_timeline(call: Call) -> dict[str, Any]:
    """Every stored trace of one call, merged in time order; each item has ``time`` and ``type``."""
    origin = call.started_at or call.created_at
    items: list[tuple[datetime, int, Any, dict[str, Any]]] = []
    truncated = False

    def add(at: datetime, kind: str, tie: Any, body: dict[str, Any]) -> None:
        body = {
            "time": iso(at),
            "type": kind,
            "secondsFromStart": round((at - origin).total_seconds(), 3),
            **body,
        }
        items.append((at, _TYPE_RANK[kind], tie, body))

    events = list(
        CallEvent.select()
        .where(CallEvent.call == call.id)
        .order_by(CallEvent.at, CallEvent.id)
        .limit(TIMELINE_CAP + 1)
    )
    messages = list(
        CallMessage.select()
        .where(CallMessage.call == call.id)
        .order_by(CallMessage.seq)
        .limit(TIMELINE_CAP + 1)
    )
    jobs = list(
        WebhookJob.select()
        .where(WebhookJob.call_id == call.id)
        .order_by(WebhookJob.created_at, WebhookJob.seq)
        .limit(TIMELINE_CAP + 1)
    )
    truncated = any(len(rows) > TIMELINE_CAP for rows in (events, messages, jobs))
    events, messages, jobs = events[:TIMELINE_CAP], messages[:TIMELINE_CAP], jobs[:TIMELINE_CAP]

    for ev in events:
        add(
            ev.at,
            "event",
            (0, ev.id),
            {
                "id": ev.id,
                "kind": ev.kind,
                "source": ev.source,
                "level": ev.level,
                "data": ev.data if isinstance(ev.data, Mapping) else {},
            },
        )
    for m in messages:
        add(
            m.time,
            "message",
            (0, m.seq),
            {
                "seq": m.seq,
                "role": m.role,
                "message": m.message,
                "endTime": iso(m.end_time),
                "duration": m.duration,
                "callSecondsFromStart": m.seconds_from_start,
                "data": m.data if isinstance(m.data, Mapping) else {},
            },
        )
    job_by_id = {j.id: j for j in jobs}
    for j in jobs:
        add(
            j.created_at,
            "webhook-job",
            (j.seq, j.id),
            {
                "id": j.id,
                "messageType": j.message_type,
                "status": j.status,
                "url": j.target_url,
                "attempts": j.attempts,
                "deliveredAt": iso(j.delivered_at),
                "lastError": j.last_error,
            },
        )
    if job_by_id:
        for a in (
            WebhookAttempt.select()
            .where(WebhookAttempt.job.in_(list(job_by_id)))
            .order_by(WebhookAttempt.created_at, WebhookAttempt.number)
        ):
            add(
                a.created_at,
                "webhook-attempt",
                (a.number, a.id),
                {
                    "id": a.id,
                    "jobId": a.job_id,
                    "messageType": job_by_id[a.job_id].message_type,
                    "number": a.number,
                    "statusCode": a.status_code,
                    "latencyMs": a.latency_ms,
                    "error": a.error,
                    "replay": bool(a.replay),
                },
            )
    for art in Artifact.select().where(Artifact.call == call.id).order_by(Artifact.created_at):
        add(
            art.created_at,
            "artifact",
            (0, art.id),
            {
                "id": art.id,
                "kind": art.kind,
                "status": art.status,
                "bytes": art.bytes,
                "mimetype": art.mimetype,
            },
        )
    spoken = [m for m in messages if m.role in _SPEAKER and m.message]
    if spoken or call.status == "ended":
        at = call.ended_at or (
            spoken[-1].end_time or spoken[-1].time if spoken else call.updated_at
        )
        analysis = (call.data or {}).get("analysis") if isinstance(call.data, Mapping) else None
        add(
            at,
            "transcript",
            (0, 0),
            {
                "transcript": transcript_text(messages),
                "turns": len(spoken),
                "userTurns": sum(1 for m in spoken if m.role == "user"),
                "assistantTurns": sum(1 for m in spoken if m.role != "user"),
                "summary": analysis.get("summary") if isinstance(analysis, Mapping) else None,
            },
        )
    items.sort(key=lambda t: (t[0], t[1], t[2]))
    return {
        "callId": call.id,
        "status": call.status,
        "startedAt": iso(call.started_at),
        "endedAt": iso(call.ended_at),
        "truncated": truncated,
        "items": [body for *_k, body in items],
    }
