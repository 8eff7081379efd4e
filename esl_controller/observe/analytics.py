"""Call analytics and the SLO windows' figures, as SQL aggregates that give the same figures on SQLite and
PostgreSQL (I/O: peewee).

* Calls are selected by ``created_at`` (indexed; with ``assistant_id`` the ``(assistant_id, created_at)``
  index). Timestamps are integer microseconds, so a duration is ``ended_at - started_at`` and an hour or
  day bucket is ``created_at / step * step`` (integer division, UTC-aligned) in either database.
* Percentiles are PostgreSQL's ``percentile_cont`` (linear interpolation between the closest ranks),
  computed the same way on both databases: count the values, then let the database sort them and return
  only the one or two rows at the rank (``ORDER BY … LIMIT 2 OFFSET k``).
* Turn latency is ``firstAudioOut - endOfSpeech`` (camelCase or snake_case keys) of the ``turn-timing``
  call events: the rows are chosen in SQL (``kind`` and ``at`` or the call), the two figures are read from
  the stored JSON text in Python (the same text on both databases; rows whose figures are not numbers are
  left out), rounded to the microsecond, and the same ``percentile_cont`` is applied.
* Money sums: ``Call.cost`` (what the call object says) and, per ``costs[]`` type, the stored CostItem
  amounts (decimal text summed as NUMERIC on PostgreSQL, REAL on SQLite), rounded to 6 places.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from peewee import SQL, Cast, fn

from esl_controller.calls.serialize import iso
from esl_controller.db import is_postgres
from esl_controller.db.fields import from_micros, to_micros
from esl_controller.db.models import Call, CallEvent, CostItem, WebhookJob
from esl_controller.observe.slo import AUDIO_WARNING_KINDS, WindowFigures, percentile_cont

STEPS = {"hour": 3600, "day": 86400}
#: most buckets one summary may return
MAX_BUCKETS = 2000
DIRECTIONS = {
    "inboundPhoneCall": "inbound",
    "outboundPhoneCall": "outbound",
    "webCall": "web",
    "vapi.websocketCall": "web",
}
TURN_TIMING = "turn-timing"
PIPELINE_ERROR_PREFIX = "pipeline-error-"


def direction_of(call_type: str | None) -> str:
    return DIRECTIONS.get(call_type or "", "unknown")


def _micros_duration():
    return Cast(Call.ended_at - Call.started_at, "BIGINT")


def _number(data: Mapping[str, Any], camel: str, snake: str) -> float | None:
    value = data.get(camel, data.get(snake))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def turn_latencies(where) -> list[float]:
    """Sorted ``firstAudioOut - endOfSpeech`` (µs-rounded) of the turn-timing events matching ``where``.

    The rows are chosen by SQL over indexed columns; the two figures are read from the stored JSON here, so
    both databases give the same list (one parse per row instead of one per JSON path in SQL)."""
    out = []
    for (data,) in CallEvent.select(CallEvent.data).where(where).tuples():
        if not isinstance(data, Mapping):
            continue
        first_audio = _number(data, "firstAudioOut", "first_audio_out")
        end_of_speech = _number(data, "endOfSpeech", "end_of_speech")
        if first_audio is not None and end_of_speech is not None:
            out.append(round(first_audio - end_of_speech, 6))
    out.sort()
    return out


def percentiles(model, where, expr, ps: tuple[float, ...]) -> tuple[int, dict[float, float | None]]:
    """(count of non-NULL values, {p: percentile_cont}) of ``expr`` over ``model`` rows matching ``where``."""
    cond = where & expr.is_null(False)
    n = model.select(fn.COUNT(SQL("*"))).where(cond).scalar() or 0
    out: dict[float, float | None] = {}
    for p in ps:
        if n == 0:
            out[p] = None
            continue
        pos = p * (n - 1)
        lo = math.floor(pos)
        frac = pos - lo
        rows = [
            float(r[0])
            for r in model.select(expr)
            .where(cond)
            .order_by(expr)
            .offset(lo)
            .limit(2 if frac else 1)
            .tuples()
        ]
        value = rows[0] if len(rows) == 1 else rows[0] + frac * (rows[1] - rows[0])
        out[p] = value
    return n, out


def _seconds(micros: Any) -> float | None:
    return None if micros is None else round(float(micros) / 1e6, 6)


def _round6(value: Any) -> float | None:
    if value is None:
        return None
    return float(Decimal(str(value)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))


def _amount_sum():
    kind = "NUMERIC" if is_postgres() else "REAL"
    return fn.SUM(Cast(CostItem.amount, kind))


def _counts(column, cond) -> dict[Any, int]:
    return {
        k: int(n)
        for k, n in Call.select(column, fn.COUNT(Call.id)).where(cond).group_by(column).tuples()
    }


def summary(
    start: datetime, end: datetime, step: str | None = None, assistant_id: str | None = None
) -> dict[str, Any]:
    """The ``/analytics/summary`` body over calls created in ``[start, end)``."""
    cond = (Call.created_at >= start) & (Call.created_at < end)
    if assistant_id:
        cond &= Call.assistant_id == assistant_id
    call_ids = Call.select(Call.id).where(cond)

    by_type = _counts(Call.type, cond)
    by_direction: dict[str, int] = {}
    for call_type, n in by_type.items():
        d = direction_of(call_type)
        by_direction[d] = by_direction.get(d, 0) + n
    by_reason = _counts(Call.ended_reason, cond & Call.ended_reason.is_null(False))
    by_assistant = sorted(
        _counts(Call.assistant_id, cond).items(), key=lambda kv: (-kv[1], kv[0] or "")
    )

    dur = _micros_duration()
    dcond = cond & Call.started_at.is_null(False) & Call.ended_at.is_null(False)
    d_avg, d_sum, d_max = (
        Call.select(fn.AVG(dur), fn.SUM(dur), fn.MAX(dur)).where(dcond).tuples()[0]
    )
    d_n, d_pct = percentiles(Call, dcond, dur, (0.5, 0.95))

    lat = turn_latencies((CallEvent.kind == TURN_TIMING) & CallEvent.call.in_(call_ids))

    cost_total, priced = Call.select(fn.SUM(Call.cost), fn.COUNT(Call.cost)).where(cond).tuples()[0]
    by_cost_type = {
        t: _round6(v)
        for t, v in CostItem.select(CostItem.type, _amount_sum())
        .where(CostItem.call.in_(call_ids) & CostItem.amount.is_null(False))
        .group_by(CostItem.type)
        .tuples()
    }
    unpriced = (
        CostItem.select().where(CostItem.call.in_(call_ids) & CostItem.amount.is_null(True)).count()
    )

    return {
        "timeRange": {"start": iso(start), "end": iso(end), "step": step},
        "assistantId": assistant_id,
        "calls": {
            "total": sum(by_type.values()),
            "byStatus": _counts(Call.status, cond),
            "byEndedReason": by_reason,
            "byType": by_type,
            "byDirection": by_direction,
            "byAssistant": [{"assistantId": a, "calls": n} for a, n in by_assistant],
        },
        "durationSeconds": {
            "count": d_n,
            "total": _seconds(d_sum) or 0.0,
            "avg": _seconds(d_avg),
            "p50": _seconds(d_pct[0.5]),
            "p95": _seconds(d_pct[0.95]),
            "max": _seconds(d_max),
        },
        "cost": {
            "total": _round6(cost_total) or 0.0,
            "pricedCalls": int(priced or 0),
            "avgPerPricedCall": _round6(cost_total / priced) if priced else None,
            "byType": by_cost_type,
            "unpricedItems": unpriced,
        },
        "turnLatencySeconds": {
            "count": len(lat),
            "avg": _round6(sum(lat) / len(lat)) if lat else None,
            "p50": _round6(percentile_cont(lat, 0.5)),
            "p95": _round6(percentile_cont(lat, 0.95)),
            "p99": _round6(percentile_cont(lat, 0.99)),
        },
        "buckets": buckets(cond, start, end, step) if step else [],
    }


def bucket_starts(start: datetime, end: datetime, step: str) -> list[int]:
    """Bucket starts (µs, UTC-aligned) covering ``[start, end)``."""
    width = STEPS[step] * 1_000_000
    first = to_micros(start) // width * width
    last = to_micros(end)
    return list(range(first, last, width))


def buckets(cond, start: datetime, end: datetime, step: str) -> list[dict[str, Any]]:
    width = STEPS[step] * 1_000_000
    key = Cast((Call.created_at / SQL(str(width))) * SQL(str(width)), "BIGINT")
    dur = _micros_duration()
    ended = fn.SUM(SQL("CASE WHEN status = 'ended' THEN 1 ELSE 0 END"))
    rows = {
        int(b): (n, e, avg, cost)
        for b, n, e, avg, cost in Call.select(
            key, fn.COUNT(Call.id), ended, fn.AVG(dur), fn.SUM(Call.cost)
        )
        .where(cond)
        .group_by(key)
        .tuples()
    }
    out = []
    for b in bucket_starts(start, end, step):
        n, e, avg, cost = rows.get(b, (0, 0, None, None))
        out.append(
            {
                "start": iso(from_micros(b)),
                "calls": int(n),
                "endedCalls": int(e or 0),
                "durationSecondsAvg": _seconds(avg),
                "costTotal": _round6(cost) or 0.0,
            }
        )
    return out


# ------------------------------------------------------------------------------------- SLO windows


def window_figures(
    now: datetime, seconds: int, api: tuple[int, int, float | None]
) -> WindowFigures:
    """The database half of one SLO window ending at ``now``; ``api`` is (requests, errors, p95) from
    this process's counters."""
    since = now - timedelta(seconds=seconds)
    lat = turn_latencies(
        (CallEvent.kind == TURN_TIMING) & (CallEvent.at >= since) & (CallEvent.at <= now)
    )

    ended_cond = (Call.ended_at >= since) & (Call.ended_at <= now)
    calls_ended = Call.select().where(ended_cond).count()
    pipeline_errors = (
        Call.select()
        .where(ended_cond & Call.ended_reason.startswith(PIPELINE_ERROR_PREFIX))
        .count()
    )

    hooks: Mapping[str, int] = {
        s: int(n)
        for s, n in WebhookJob.select(WebhookJob.status, fn.COUNT(WebhookJob.id))
        .where(
            WebhookJob.status.in_(("delivered", "failed"))
            & (WebhookJob.updated_at >= since)
            & (WebhookJob.updated_at <= now)
        )
        .group_by(WebhookJob.status)
        .tuples()
    }

    acond = (
        CallEvent.kind.in_(AUDIO_WARNING_KINDS) & (CallEvent.at >= since) & (CallEvent.at <= now)
    )
    warnings = {
        k: int(n)
        for k, n in CallEvent.select(CallEvent.kind, fn.COUNT(CallEvent.id))
        .where(acond)
        .group_by(CallEvent.kind)
        .tuples()
    }
    warned_calls = (
        CallEvent.select(fn.COUNT(fn.DISTINCT(CallEvent.call))).where(acond).scalar() or 0
    )
    active = (
        Call.select()
        .where(
            (Call.created_at <= now)
            & (Call.status != "scheduled")
            & (Call.ended_at.is_null(True) | (Call.ended_at >= since))
        )
        .count()
    )
    requests, errors, api_p95 = api
    return WindowFigures(
        turns=len(lat),
        turn_latency_p95=_round6(percentile_cont(lat, 0.95)),
        calls_ended=calls_ended,
        pipeline_errors=pipeline_errors,
        api_requests=requests,
        api_errors=errors,
        api_latency_p95=api_p95,
        webhooks_delivered=hooks.get("delivered", 0),
        webhooks_failed=hooks.get("failed", 0),
        calls_active=active,
        calls_with_audio_warnings=int(warned_calls),
        audio_warnings=warnings,
    )


def live_counts() -> tuple[dict[str, int], dict[str, int]]:
    """(calls not ended by status, webhook jobs waiting by status): index range scans for /metrics."""
    calls = {
        s: int(n)
        for s, n in Call.select(Call.status, fn.COUNT(Call.id))
        .where(Call.status.in_(("queued", "ringing", "in-progress", "forwarding")))
        .group_by(Call.status)
        .tuples()
    }
    jobs = {
        s: int(n)
        for s, n in WebhookJob.select(WebhookJob.status, fn.COUNT(WebhookJob.id))
        .where(WebhookJob.status.in_(("pending", "delivering")))
        .group_by(WebhookJob.status)
        .tuples()
    }
    return calls, jobs
