"""/logs/webhooks: webhook jobs with their attempts; replay an attempt; retry a failed or skipped job.

Ours (api-compat.md §14). The list is paginated ``{results, metadata}``, newest first unless
``sortOrder=ASC``, filtered by ``callId``, ``status``, ``type`` (server message type), ``limit``, ``page``
and the eight createdAt/updatedAt bounds. A replay sends the job's payload once more, synchronously, to
the job's *current* target (endpoint and credential read again) and is stored as a new attempt with
``replay: true``; it does not change the job. Retry makes a failed or skipped job pending again, due now.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, g, jsonify, request

from api.crud import services, stamps
from api.errors import ApiError
from api.filters import parse_list_query
from api.openapi import OperationDoc, document
from api.schemas.logs import (
    JOB_STATUSES,
    WebhookAttemptResponse,
    WebhookJobPage,
    WebhookJobResponse,
)
from api.wire import check_uuid, iso
from esl_controller.db import database
from esl_controller.db.models import WebhookAttempt, WebhookJob
from esl_controller.webhooks import delivery, queue
from esl_controller.webhooks.signing import mask_headers

bp = Blueprint("webhook_logs", __name__)

#: longest a replay may wait for the target, whatever the target's own timeout
REPLAY_TIMEOUT_SECONDS = 30.0
LIST_QUERY = ("callId", "status", "type", "page", "sortOrder")


def _settings() -> delivery.DeliverySettings:
    return getattr(services(), "webhook_delivery", None) or delivery.DeliverySettings()


def attempt_to_wire(row: WebhookAttempt) -> dict[str, Any]:
    return {
        "id": row.id,
        "jobId": row.job_id,
        "number": row.number,
        "createdAt": iso(row.created_at),
        "requestUrl": row.request_url,
        "requestHeaders": row.request_headers or {},
        "statusCode": row.status_code,
        "latencyMs": row.latency_ms,
        "error": row.error,
        "responseExcerpt": row.response_excerpt,
        "replay": bool(row.replay),
    }


def _target_to_wire(target: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in target.items() if k not in ("secretSealed", "secret", "headers")}
    out["headers"] = mask_headers(target.get("headers") or {})
    if target.get("secretSealed"):
        out["secret"] = "****"
    return out


def job_to_wire(
    row: WebhookJob, attempts: list[WebhookAttempt], with_payload: bool = False
) -> dict[str, Any]:
    last = attempts[-1] if attempts else None
    out = stamps(row)
    out.update(
        callId=row.call_id,
        type=row.message_type,
        status=row.status,
        url=row.target_url,
        target=_target_to_wire(row.target or {}),
        attemptCount=row.attempts,
        maxAttempts=row.max_attempts,
        nextAttemptAt=iso(row.next_attempt_at) if row.status == "pending" else None,
        deliveredAt=iso(row.delivered_at),
        lastError=row.last_error,
        lastStatusCode=last.status_code if last else None,
        latencyMs=last.latency_ms if last else None,
        orderingKey=row.ordering_key,
        seq=row.seq,
        attempts=[attempt_to_wire(a) for a in attempts],
    )
    if with_payload:
        out["payload"] = row.payload
    return out


def _attempts_of(job_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    by_job: dict[str, list[WebhookAttempt]] = {i: [] for i in job_ids}
    if job_ids:
        query = (
            WebhookAttempt.select()
            .where(WebhookAttempt.job.in_(job_ids))
            .order_by(WebhookAttempt.created_at, WebhookAttempt.number)
        )
        for a in query:
            by_job[a.job_id].append(a)
    return by_job


def _get_job(ident: str) -> WebhookJob:
    row = WebhookJob.get_or_none(WebhookJob.id == check_uuid(ident))
    if row is None:
        raise ApiError(404, "Webhook job not found")
    return row


def _page_args() -> tuple[int, str]:
    raw = request.args.get("page", "1")
    try:
        page = int(raw)
    except ValueError as exc:
        raise ApiError(400, "page must be a whole number from 1") from exc
    if page < 1:
        raise ApiError(400, "page must be a whole number from 1")
    order = request.args.get("sortOrder", "DESC").upper()
    if order not in ("ASC", "DESC"):
        raise ApiError(400, "sortOrder must be ASC or DESC")
    return page, order


@bp.get("/logs/webhooks")
def list_webhook_jobs():
    lq = parse_list_query(request.args)
    page, order = _page_args()
    query = WebhookJob.select()
    call_id = request.args.get("callId")
    if call_id is not None:
        query = query.where(WebhookJob.call_id == check_uuid(call_id, "callId"))
    status = request.args.get("status")
    if status is not None:
        if status not in JOB_STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(JOB_STATUSES)}")
        query = query.where(WebhookJob.status == status)
    kind = request.args.get("type")
    if kind is not None:
        if not kind or len(kind) > 64:
            raise ApiError(400, "type must be a server message type")
        query = query.where(WebhookJob.message_type == kind)
    for column, op, value in lq.bounds:
        field = getattr(WebhookJob, column)
        cond = {
            "gt": field > value,
            "lt": field < value,
            "ge": field >= value,
            "le": field <= value,
        }
        query = query.where(cond[op])
    total = query.count()
    created = WebhookJob.created_at.asc() if order == "ASC" else WebhookJob.created_at.desc()
    tie = WebhookJob.seq.asc() if order == "ASC" else WebhookJob.seq.desc()
    rows = list(query.order_by(created, tie).offset((page - 1) * lq.limit).limit(lq.limit))
    attempts = _attempts_of([r.id for r in rows])
    pages = math.ceil(total / lq.limit) if lq.limit else 0
    return jsonify(
        {
            "results": [job_to_wire(r, attempts[r.id]) for r in rows],
            "metadata": {
                "itemsPerPage": lq.limit,
                "totalItems": total,
                "currentPage": page,
                "totalPages": pages,
                "hasNextPage": page < pages,
                "sortOrder": order,
            },
        }
    )


@bp.get("/logs/webhooks/<id>")
def get_webhook_job(id: str):
    row = _get_job(id)
    return jsonify(job_to_wire(row, _attempts_of([row.id])[row.id], with_payload=True))


def _outside_transaction(fn):
    """Run ``fn`` with the request's transaction committed first and a fresh one opened after, so that
    no database transaction (and, on SQLite, no read snapshot) is held across a network call."""
    txn = g.pop("txn", None)
    if txn is not None:
        txn.__exit__(None, None, None)
    try:
        return fn()
    finally:
        g.txn = database.atomic()
        g.txn.__enter__()


@bp.post("/logs/webhooks/<attempt_id>/replay")
def replay_webhook_attempt(attempt_id: str):
    attempt = WebhookAttempt.get_or_none(WebhookAttempt.id == check_uuid(attempt_id, "attemptId"))
    if attempt is None:
        raise ApiError(404, "Webhook attempt not found")
    job = WebhookJob.get_by_id(attempt.job_id)
    numbers = [a.number for a in WebhookAttempt.select(WebhookAttempt.number).where(WebhookAttempt.job == job.id)]  # fmt: skip
    box = services().secret_box

    def send():
        return delivery.replay(
            job,
            box,
            _settings(),
            number=max(numbers, default=0) + 1,
            timeout=REPLAY_TIMEOUT_SECONDS,
        )

    try:
        result = _outside_transaction(send)
    except delivery.ReplayError as exc:
        raise ApiError(400, str(exc)) from exc
    row = delivery.store_attempt(result, job.org_id)
    return jsonify(attempt_to_wire(row)), 201


@bp.post("/logs/webhooks/jobs/<id>/retry")
def retry_webhook_job(id: str):
    row = _get_job(id)
    if row.status not in ("failed", "skipped"):
        raise ApiError(
            400, f"webhook job {row.id} is {row.status}; only failed or skipped jobs can be retried"
        )
    if not queue.requeue(row.id):
        raise ApiError(400, f"webhook job {row.id} changed state; try again")
    row = WebhookJob.get_by_id(row.id)
    return jsonify(job_to_wire(row, _attempts_of([row.id])[row.id]))


TAG = "Logs"
document(
    "/logs/webhooks",
    "GET",
    OperationDoc("List Webhook Jobs", TAG, None, WebhookJobPage, query=("limit", *LIST_QUERY)),
)
document(
    "/logs/webhooks/<id>", "GET", OperationDoc("Get Webhook Job", TAG, None, WebhookJobResponse)
)
document(
    "/logs/webhooks/<attempt_id>/replay",
    "POST",
    OperationDoc("Replay Webhook Attempt", TAG, None, WebhookAttemptResponse, 201),
)
document(
    "/logs/webhooks/jobs/<id>/retry",
    "POST",
    OperationDoc("Retry Webhook Job", TAG, None, WebhookJobResponse),
)
