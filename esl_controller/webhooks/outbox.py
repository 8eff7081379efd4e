"""The outbox: a server message becomes a durable WebhookJob in the caller's own transaction.

Call :func:`enqueue` inside the same ``database.atomic()`` block as the change that caused the message,
so that either both are stored or neither is. The job is delivered later by
:class:`esl_controller.webhooks.delivery.Deliverer` (at least once; ``X-Esl-Webhook-Id`` carries the job
id, the same on every attempt, so receivers can drop duplicates).

Jobs that share an ordering key (by default: one call and one target URL) are delivered one after the
other in ``seq`` order. ``seq`` is the key's largest ``seq`` plus one; on PostgreSQL a transaction-scoped
advisory lock on the key serialises concurrent enqueuers, on SQLite the single writer does, and a unique
index on ``(ordering_key, seq)`` (migration 0003) turns any remaining race into an error, never into a
reordering.

A legacy ``server.secret`` is never stored in clear: it is sealed with the secret box
(``secretSealed``), or passed already sealed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

from peewee import fn

from esl_controller.db.base import database
from esl_controller.db.connect import is_postgres
from esl_controller.db.fields import new_id, utcnow
from esl_controller.db.models.webhooks import WebhookJob
from esl_controller.security.secrets_box import SecretBox
from esl_controller.webhooks.targets import DEFAULT_TIMEOUT_SECONDS, Target

log = logging.getLogger("esl_controller.webhooks")

DEFAULT_ORG_ID = "00000000-0000-4000-8000-000000000000"
DEFAULT_MAX_ATTEMPTS = 8
#: the header that carries the job id on every attempt
ID_HEADER = "X-Esl-Webhook-Id"
SEALED_SECRET_KEY = "secretSealed"


def target_dict(target: Target | Mapping[str, Any], box: SecretBox | None = None) -> dict[str, Any]:
    """The stored form of a target: ``{url, source, headers, timeoutSeconds, credentialId, endpointId,
    scope, secretSealed}`` (absent keys left out). Raises ValueError for a clear secret without a box."""
    if isinstance(target, Target):
        raw: dict[str, Any] = {
            "url": target.url,
            "source": target.source,
            "headers": dict(target.headers),
            "timeoutSeconds": target.timeout_seconds,
            "credentialId": target.credential_id,
            "endpointId": target.endpoint_id,
            "scope": target.scope,
            "secret": target.secret,
        }
    elif is_dataclass(target):  # pragma: no cover - a look-alike dataclass
        raw = asdict(target)
    else:
        raw = dict(target)
    if not raw.get("url"):
        raise ValueError("target: url is required")
    out: dict[str, Any] = {
        "url": str(raw["url"]),
        "source": str(raw.get("source") or "endpoint"),
        "headers": {str(k): str(v) for k, v in (raw.get("headers") or {}).items()},
        "timeoutSeconds": float(raw.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS),
    }
    for key in ("credentialId", "endpointId", "scope"):
        if raw.get(key):
            out[key] = str(raw[key])
    if raw.get(SEALED_SECRET_KEY):
        out[SEALED_SECRET_KEY] = str(raw[SEALED_SECRET_KEY])
    elif raw.get("secret"):
        if box is None:
            raise ValueError(
                "target has a secret: pass box= so that it is sealed, never stored clear"
            )
        out[SEALED_SECRET_KEY] = box.seal({"secret": str(raw["secret"])})
    return out


def default_ordering_key(call_id: str | None, url: str, job_id: str) -> str:
    """One call and one target URL; a job without a call is ordered on its own."""
    if not call_id:
        return f"job:{job_id}"
    return f"{call_id}:{hashlib.sha256(url.encode()).hexdigest()[:32]}"


def _next_seq(ordering_key: str) -> int:
    if ordering_key.startswith("job:"):
        return 1  # a key of its own
    # one advisory lock per key and transaction: enqueue thousands of distinct call keys in one
    # transaction and PostgreSQL runs out of lock slots (max_locks_per_transaction)
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (ordering_key,))
    top = (
        WebhookJob.select(fn.MAX(WebhookJob.seq))
        .where(WebhookJob.ordering_key == ordering_key)
        .scalar()
    )
    return (top or 0) + 1


def enqueue(
    message_type: str,
    payload: Mapping[str, Any],
    target: Target | Mapping[str, Any],
    call_id: str | None = None,
    ordering_key: str | None = None,
    *,
    org_id: str = DEFAULT_ORG_ID,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    box: SecretBox | None = None,
    not_before: datetime | None = None,
) -> WebhookJob:
    """Store one message for one target as a pending job and return it.

    Must run inside the caller's transaction (``with database.atomic(): ...``); raises RuntimeError
    otherwise, because a job written outside it could outlive a rolled-back change or be lost with it.
    """
    if not database.in_transaction():
        raise RuntimeError("enqueue must run inside the transaction of the change that caused it")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    stored = target_dict(target, box)
    job_id = new_id()
    key = ordering_key or default_ordering_key(call_id, stored["url"], job_id)
    if len(key) > 128:
        key = "h:" + hashlib.sha256(key.encode()).hexdigest()
    now = utcnow()
    job = WebhookJob.create(
        id=job_id,
        org_id=org_id,
        created_at=now,
        updated_at=now,
        call_id=call_id,
        message_type=message_type,
        target=stored,
        target_url=stored["url"],
        payload=dict(payload),
        status="pending",
        attempts=0,
        max_attempts=max_attempts,
        next_attempt_at=not_before or now,
        ordering_key=key,
        seq=_next_seq(key),
    )
    log.debug("webhook job %s queued: %s (seq %s)", job.id, message_type, job.seq)
    return job
