"""Logs, call timeline and costs, analytics, SLO and Prometheus metrics.

* ``GET /logs``: unified logs in Vapi's old Log shape (``type`` API | Webhook | Call | Provider, ``callId``,
  ``assistantId``, ``phoneNumberId``, ``level``, ``webhookType``, ``page``, ``sortOrder``, ``limit`` and the
  eight createdAt/updatedAt bounds applied to the log time). API request logs are not stored (the access
  log goes to the ``esl_controller.api.access`` logger), so ``type=API`` is always empty.
* ``GET /logs/calls``: call events (``callId``, ``kind``, ``level``, ``source``, time bounds; paginated).
* ``GET /call/<id>/timeline`` and ``GET /call/<id>/costs``.
* ``GET /analytics/summary`` (only with ``observe.analytics_enabled``), ``GET /slo``, ``GET /metrics``
  (public only with ``observe.metrics_public``).

Every API answer is counted by an ``after_request`` hook installed when the blueprint is registered.
"""

from __future__ import annotations

import time
from datetime import timedelta

from flask import Blueprint, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import public
from api.errors import ApiError
from api.filters import parse_iso8601, parse_list_query
from api.openapi import OperationDoc, document
from api.schemas.observe import (
    AnalyticsSummary,
    CallCosts,
    CallLogPage,
    LogPage,
    SloSnapshot,
    Timeline,
)
from api.wire import check_uuid
from esl_controller.db.fields import utcnow
from esl_controller.db.models import Call
from esl_controller.observe import analytics, pricing, timeline
from esl_controller.observe.metrics import Observer

bp = Blueprint("observe", __name__)

OBSERVER_KEY = "esl_controller_observe"
SOURCES = ("esl", "api", "pipeline", "runtime", "webhook")
BOUNDS = tuple(f"{c}{op}" for c in ("createdAt", "updatedAt") for op in ("Gt", "Lt", "Ge", "Le"))
LOGS_QUERY = ("type", "callId", "assistantId", "phoneNumberId", "level", "webhookType")
CALL_LOGS_QUERY = ("callId", "kind", "level", "source")
PAGE_QUERY = ("page", "sortOrder", "limit", *BOUNDS)


def observer() -> Observer:
    return current_app.extensions[OBSERVER_KEY]


@bp.record_once
def _install(state) -> None:
    app = state.app
    settings = app.extensions["esl_controller"].settings
    obs = Observer(settings.observe)
    app.extensions[OBSERVER_KEY] = obs

    @app.after_request
    def _count_request(response):
        started = g.get("started")
        if started is not None:
            obs.record_request(request.method, response.status_code, time.perf_counter() - started)
        return response

    def metrics():
        return Response(obs.exposition(), mimetype=CONTENT_TYPE_LATEST)

    if settings.observe.metrics_public:
        public(metrics)
    app.add_url_rule("/metrics", endpoint="observe_metrics", view_func=metrics, methods=["GET"])


# ------------------------------------------------------------------------------------ query parsing


def _uuid_arg(name: str) -> str | None:
    value = request.args.get(name)
    return None if value is None else check_uuid(value, name)


def _text_arg(name: str, choices: tuple[str, ...] | None = None, upper: bool = False) -> str | None:
    value = request.args.get(name)
    if value is None:
        return None
    if upper:
        value = value.upper()
    if choices is not None:
        if value not in choices:
            raise ApiError(400, f"{name} must be one of {', '.join(choices)}")
    elif not value or len(value) > 64:
        raise ApiError(400, f"{name} must be 1 to 64 characters")
    return value


def _log_query(**extra) -> timeline.LogQuery:
    lq = parse_list_query(request.args)
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
    return timeline.LogQuery(
        call_id=_uuid_arg("callId"),
        level=_text_arg("level", timeline.LEVELS, upper=True),
        bounds=tuple((op, value) for _col, op, value in lq.bounds),
        page=page,
        limit=lq.limit,
        order=order,
        **extra,
    )


def _call(ident: str) -> Call:
    row = Call.get_or_none(Call.id == check_uuid(ident))
    if row is None:
        raise ApiError(404, f"Call {ident} not found")
    return row


# ------------------------------------------------------------------------------------------ routes


@bp.get("/logs")
def list_logs():
    log_type = request.args.get("type")
    if log_type is not None:
        canonical = {t.lower(): t for t in timeline.LOG_TYPES}.get(log_type.lower())
        if canonical is None:
            raise ApiError(400, f"type must be one of {', '.join(timeline.LOG_TYPES)}")
        log_type = canonical
    q = _log_query(
        type=log_type,
        assistant_id=_uuid_arg("assistantId"),
        phone_number_id=_uuid_arg("phoneNumberId"),
        webhook_type=_text_arg("webhookType"),
    )
    if q.type == "API":
        # request logs are not persisted; they go to the esl_controller.api.access logger
        empty = timeline.LogQuery(type="API", page=q.page, limit=q.limit, order=q.order)
        return jsonify({"results": [], "metadata": timeline.page_metadata(empty, 0)})
    return jsonify(timeline.unified_logs(q))


@bp.get("/logs/calls")
def list_call_logs():
    q = _log_query(kind=_text_arg("kind"), source=_text_arg("source", SOURCES))
    return jsonify(timeline.call_logs(q))


@bp.get("/call/<id>/timeline")
def call_timeline(id: str):
    return jsonify(timeline.call_timeline(_call(id)))


@bp.get("/call/<id>/costs")
def call_costs(id: str):
    call = _call(id)
    try:
        body = pricing.costs_body(call, observer().rate_cards)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    return jsonify(body)


@bp.get("/analytics/summary")
def analytics_summary():
    if not observer().settings.analytics_enabled:
        raise ApiError(
            404, "analytics is disabled on this server: set observe.analytics_enabled to true"
        )
    times = {}
    for name in ("start", "end"):
        raw = request.args.get(name)
        if raw is not None:
            try:
                times[name] = parse_iso8601(raw)
            except ValueError as exc:
                raise ApiError(400, f"{name} must be an ISO-8601 date-time, got {raw!r}") from exc
    end = times.get("end") or utcnow()
    start = times.get("start") or end - timedelta(days=7)
    if start >= end:
        raise ApiError(400, "start must be before end")
    step = request.args.get("step") or None
    if step is not None and step not in analytics.STEPS:
        raise ApiError(400, f"step must be one of {', '.join(analytics.STEPS)}")
    if step and len(analytics.bucket_starts(start, end, step)) > analytics.MAX_BUCKETS:
        raise ApiError(
            400,
            f"more than {analytics.MAX_BUCKETS} {step} buckets: narrow the range or use a larger step",
        )
    return jsonify(analytics.summary(start, end, step, _uuid_arg("assistantId")))


@bp.get("/slo")
def slo_snapshot():
    return jsonify(observer().snapshot())


TAG = "Observability"
document(
    "/logs",
    "GET",
    OperationDoc("List Logs", TAG, None, LogPage, query=(*LOGS_QUERY, *PAGE_QUERY)),
)
document(
    "/logs/calls",
    "GET",
    OperationDoc("List Call Logs", TAG, None, CallLogPage, query=(*CALL_LOGS_QUERY, *PAGE_QUERY)),
)
document("/call/<id>/timeline", "GET", OperationDoc("Get Call Timeline", TAG, None, Timeline))
document("/call/<id>/costs", "GET", OperationDoc("Get Call Costs", TAG, None, CallCosts))
document(
    "/analytics/summary",
    "GET",
    OperationDoc(
        "Analytics Summary",
        TAG,
        None,
        AnalyticsSummary,
        query=("start", "end", "step", "assistantId"),
    ),
)
document("/slo", "GET", OperationDoc("SLO Snapshot", TAG, None, SloSnapshot))
document("/metrics", "GET", OperationDoc("Prometheus Metrics", TAG))
