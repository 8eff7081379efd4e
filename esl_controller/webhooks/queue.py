"""The durable webhook queue: claiming due jobs under a lease and recording attempts. Database only.

Claim: one statement marks up to ``limit`` due jobs ``delivering`` with ``locked_by`` and a lease.
On PostgreSQL the candidate rows are chosen ``FOR UPDATE SKIP LOCKED``, so workers on any node share the
queue without waiting on each other; on SQLite the same single ``UPDATE ... WHERE id IN (SELECT ...)``
runs in an immediate transaction (one writer at a time).

While a job is leased its ``next_attempt_at`` is the lease expiry, so "due" is the one indexed range
``status IN (pending, delivering) AND next_attempt_at <= now`` for both fresh jobs and jobs whose worker
died (an expired lease makes a job claimable again). A job is claimable only when no job with the same
ordering key and a lower ``seq`` is still open (pending or delivering): per-call order holds across
retries.

Results: ``delivered``; ``retry`` with :func:`next_delay` (exponential backoff, jitter, ceiling) until
``max_attempts``, then ``failed``; ``skipped`` for HTTP 410 or a disabled or deleted endpoint; ``failed``
at once for a permanent error (URL refused by policy, missing credential). Each attempt is one
WebhookAttempt row, written in the same transaction as the job's new state.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from esl_controller.db.base import database
from esl_controller.db.connect import is_postgres
from esl_controller.db.fields import new_id, to_micros, utcnow
from esl_controller.db.models.webhooks import WebhookAttempt, WebhookJob

log = logging.getLogger("esl_controller.webhooks")

OPEN_STATUSES = ("pending", "delivering")
FINISHED_STATUSES = ("delivered", "failed", "skipped")
EXCERPT_LIMIT = 2048


def next_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential from ``base``,
    never above ``cap``, with "equal jitter" (uniform in the upper half of the step), so retries from many
    jobs spread out while each still waits at least half its step."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    step = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return step / 2.0 + rng.random() * step / 2.0


def verdict(status_code: int | None, *, permanent: bool = False, skip: bool = False) -> str:
    """What one attempt means for its job: delivered, skipped, failed (permanent) or retry."""
    if skip or status_code == 410:
        return "skipped"
    if status_code is not None and 200 <= status_code < 300:
        return "delivered"
    if permanent:
        return "failed"
    return "retry"


@dataclass(frozen=True)
class AttemptResult:
    """One finished attempt, as the delivery layer reports it."""

    job_id: str
    number: int
    request_url: str
    request_headers: dict[str, str] = field(default_factory=dict)
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    response_excerpt: str | None = None
    permanent: bool = False
    skip: bool = False
    replay: bool = False

    @property
    def verdict(self) -> str:
        return verdict(self.status_code, permanent=self.permanent, skip=self.skip)


def _sql_claim(pg: bool) -> str:
    lock = " FOR UPDATE SKIP LOCKED" if pg else ""
    p = "%s" if pg else "?"
    return (
        f"UPDATE webhook_job SET status = 'delivering', locked_by = {p}, locked_until = {p}, "
        f"next_attempt_at = {p}, attempts = attempts + 1, updated_at = {p} "
        "WHERE id IN (SELECT j.id FROM webhook_job j "
        f"WHERE j.status IN ('pending', 'delivering') AND j.next_attempt_at <= {p} "
        "AND NOT EXISTS (SELECT 1 FROM webhook_job e WHERE e.ordering_key = j.ordering_key "
        "AND e.seq < j.seq AND e.status IN ('pending', 'delivering')) "
        f"ORDER BY j.next_attempt_at LIMIT {p}{lock}) RETURNING id"
    )


def claim(
    worker_id: str, limit: int, lease_seconds: float, now: datetime | None = None
) -> list[WebhookJob]:
    """Lease up to ``limit`` due jobs to ``worker_id``; returns them (attempts already counted)."""
    if limit <= 0:
        return []
    now = now or utcnow()
    until = now + timedelta(seconds=lease_seconds)
    pg = is_postgres()
    params = (worker_id, to_micros(until), to_micros(until), to_micros(now), to_micros(now), limit)
    with database.atomic() if pg else database.atomic("IMMEDIATE"):
        ids = [row[0] for row in database.execute_sql(_sql_claim(pg), params).fetchall()]
        if not ids:
            return []
        jobs = list(
            WebhookJob.select().where(WebhookJob.id.in_(ids)).order_by(WebhookJob.next_attempt_at)
        )
    return jobs


def record(
    results: Sequence[AttemptResult],
    worker_id: str | None,
    *,
    backoff_base: float,
    backoff_cap: float,
    rng: random.Random | None = None,
    now: datetime | None = None,
    org_id: str | None = None,
) -> dict[str, str]:
    """Store attempts and move their jobs on, in one transaction. Returns ``{job_id: new status}``.

    A job's state changes only while ``worker_id`` still holds its lease (a job whose lease expired and
    that another worker took keeps that worker's state; the attempt is stored all the same). Replays
    (``replay=True``) and ``worker_id=None`` store the attempt without touching the job.
    """
    if not results:
        return {}
    rng = rng or random.Random()
    now = now or utcnow()
    rows: list[dict[str, Any]] = []
    out: dict[str, str] = {}
    jobs = {}
    updates = [r for r in results if not r.replay and worker_id is not None]
    with database.atomic():
        if updates:
            ids = list({r.job_id for r in updates})
            for job in WebhookJob.select(
                WebhookJob.id, WebhookJob.org_id, WebhookJob.attempts, WebhookJob.max_attempts,
                WebhookJob.locked_by,
            ).where(WebhookJob.id.in_(ids)):  # fmt: skip
                jobs[job.id] = job
        delivered: list[str] = []
        for r in results:
            job = jobs.get(r.job_id)
            rows.append(
                {
                    "id": new_id(),
                    "org_id": org_id or (job.org_id if job else None) or _org_of(r.job_id),
                    "created_at": now,
                    "updated_at": now,
                    "job": r.job_id,
                    "number": r.number,
                    "request_url": r.request_url,
                    "request_headers": r.request_headers,
                    "status_code": r.status_code,
                    "latency_ms": r.latency_ms,
                    "error": r.error,
                    "response_excerpt": r.response_excerpt,
                    "replay": r.replay,
                }
            )
            if r.replay or worker_id is None or job is None or job.locked_by != worker_id:
                continue
            state = r.verdict
            if state == "retry" and job.attempts >= job.max_attempts:
                state = "failed"
            out[r.job_id] = state
            if state == "delivered":
                delivered.append(r.job_id)
                continue
            changes: dict[Any, Any] = {
                WebhookJob.status: "pending" if state == "retry" else state,
                WebhookJob.locked_by: None,
                WebhookJob.locked_until: None,
                WebhookJob.last_error: _error_text(r),
                WebhookJob.updated_at: now,
                WebhookJob.next_attempt_at: (
                    now
                    + timedelta(seconds=next_delay(job.attempts, backoff_base, backoff_cap, rng))
                    if state == "retry"
                    else None
                ),
            }
            WebhookJob.update(changes).where(
                (WebhookJob.id == r.job_id) & (WebhookJob.locked_by == worker_id)
            ).execute()
        if delivered:
            WebhookJob.update(
                {
                    WebhookJob.status: "delivered",
                    WebhookJob.locked_by: None,
                    WebhookJob.locked_until: None,
                    WebhookJob.next_attempt_at: None,
                    WebhookJob.last_error: None,
                    WebhookJob.delivered_at: now,
                    WebhookJob.updated_at: now,
                }
            ).where(WebhookJob.id.in_(delivered) & (WebhookJob.locked_by == worker_id)).execute()
        _insert_attempts(rows)
    return out


_ATTEMPT_COLUMNS = (
    "id", "org_id", "created_at", "updated_at", "job_id", "number", "request_url",
    "request_headers", "status_code", "latency_ms", "error", "response_excerpt", "replay",
)  # fmt: skip


def _insert_attempts(rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT per 200 attempts, values converted by the model's fields (peewee's query
    builder costs more than the database here)."""
    fields = [WebhookAttempt._meta.columns[c] for c in _ATTEMPT_COLUMNS]
    keys = ["job" if c == "job_id" else c for c in _ATTEMPT_COLUMNS]
    p = database.param
    one = "(" + ", ".join([p] * len(fields)) + ")"
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        params: list[Any] = []
        for row in chunk:
            for f, k in zip(fields, keys, strict=True):
                params.append(f.db_value(row[k]))
        sql = f"INSERT INTO webhook_attempt ({', '.join(_ATTEMPT_COLUMNS)}) VALUES " + ", ".join(
            [one] * len(chunk)
        )
        database.execute_sql(sql, params)


def _org_of(job_id: str) -> str | None:
    job = WebhookJob.get_or_none(WebhookJob.id == job_id)
    return job.org_id if job else None


def _error_text(r: AttemptResult) -> str:
    if r.error:
        return r.error
    if r.status_code is not None:
        return f"HTTP {r.status_code}"
    return "unknown error"


def requeue(job_id: str, extra_attempts: int | None = None, now: datetime | None = None) -> bool:
    """Make a failed or skipped job pending again, due now, with ``extra_attempts`` more attempts
    (default: its original budget). False when the job is not failed or skipped."""
    now = now or utcnow()
    job = WebhookJob.get_or_none(WebhookJob.id == job_id)
    if job is None or job.status not in ("failed", "skipped"):
        return False
    budget = extra_attempts if extra_attempts is not None else max(1, job.max_attempts)
    n = (
        WebhookJob.update(
            {
                WebhookJob.status: "pending",
                WebhookJob.next_attempt_at: now,
                WebhookJob.locked_by: None,
                WebhookJob.locked_until: None,
                WebhookJob.max_attempts: job.attempts + budget,
                WebhookJob.updated_at: now,
            }
        )
        .where((WebhookJob.id == job_id) & WebhookJob.status.in_(("failed", "skipped")))
        .execute()
    )
    return n == 1


def counts() -> dict[str, int]:
    """Jobs per status (for metrics and the SLO)."""
    from peewee import fn

    q = WebhookJob.select(WebhookJob.status, fn.COUNT(WebhookJob.id)).group_by(WebhookJob.status)
    return {status: n for status, n in q.tuples()}
