"""/structured-output: JSON-Schema extraction definitions bound to assistants (api-compat.md §8).

``GET /structured-output`` is paginated (``{results, metadata}``), unlike the plain lists. Running outputs
(``POST /structured-output/run`` and the end-of-call runner) is later work; :func:`outputs_for_assistant` is the
lookup the runner needs.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from flask import Blueprint, jsonify, request
from peewee import Value

from api.crud import LIST_QUERY as BASE_QUERY
from api.crud import ResourceSpec, register_crud
from api.errors import ApiError
from api.filters import parse_list_query
from api.openapi import OperationDoc, document
from api.schemas.structured_output import (
    StructuredOutputBody,
    StructuredOutputPage,
    StructuredOutputResponse,
    StructuredOutputUpdate,
)
from api.wire import check_uuid
from esl_controller.db.models import Assistant, StructuredOutput

bp = Blueprint("structured_outputs", __name__)

MAX_PAGE = 1_000_000
SORT_COLUMNS = {
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "name": "name",
    # accepted because the SDK's enum offers them; outputs have neither, so they sort by creation
    "duration": "created_at",
    "cost": "created_at",
}
LIST_QUERY = ("page", "sortOrder", "sortBy", "id", "name")
_OPS = {"gt": operator.gt, "lt": operator.lt, "ge": operator.ge, "le": operator.le}


def outputs_for_assistant(assistant_id: str) -> list[StructuredOutput]:
    """The structured outputs bound to an assistant (``assistantIds`` contains it), oldest first.

    Plain peewee, no Flask: safe to call from the call runner with a database connection open.
    """
    ident = assistant_id.lower()
    # a cheap text prefilter on the JSON column (portable across SQLite and PostgreSQL), then an exact check
    candidates = (
        StructuredOutput.select()
        .where(StructuredOutput.data ** Value(f'%"{ident}"%', converter=False))
        .order_by(StructuredOutput.created_at, StructuredOutput.id)
    )
    return [row for row in candidates if ident in ((row.data or {}).get("assistantIds") or [])]


def check_assistants(ids: list[str]) -> None:
    """Every bound assistant must exist: a 400 naming each missing id."""
    if not ids:
        return
    found = {a.id for a in Assistant.select(Assistant.id).where(Assistant.id.in_(ids))}
    missing = [a for a in ids if a not in found]
    if missing:
        raise ApiError(400, [f"assistantIds: assistant {a} not found" for a in missing])


def schema_override() -> bool:
    """``?schemaOverride=true`` allows changing the schema's top-level type; anything else (or nothing) does not."""
    return (request.args.get("schemaOverride") or "").strip().lower() == "true"


def on_create(body: dict[str, Any]) -> dict[str, Any]:
    body.setdefault("type", "ai")
    check_assistants(body.get("assistantIds") or [])
    return {"data": body, "name": body["name"]}


def on_update(row: StructuredOutput, body: dict[str, Any]) -> dict[str, Any]:
    old = row.data or {}
    if "schema" in body:
        before = (old.get("schema") or {}).get("type")
        after = body["schema"].get("type")
        if before and after != before and not schema_override():
            raise ApiError(
                400,
                f"changing schema.type from {before!r} to {after!r} needs ?schemaOverride=true",
            )
    data = {**old, **body}
    if data.get("type") == "regex" and not data.get("regex"):
        raise ApiError(400, "regex is required when type is 'regex'")
    if "assistantIds" in body:
        check_assistants(body.get("assistantIds") or [])
    return {"data": data, "name": data.get("name")}


SPEC = ResourceSpec(
    name="StructuredOutput",
    path="/structured-output",
    model=StructuredOutput,
    create_schema=StructuredOutputBody,
    update_schema=StructuredOutputUpdate,
    response_schema=StructuredOutputResponse,
    on_create=on_create,
    on_update=on_update,
    methods=("create", "get", "update", "delete"),
    update_query=("schemaOverride",),
    tag="Structured Output",
)
register_crud(bp, SPEC)


def _page(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1
    try:
        value = float(raw)
    except ValueError as exc:
        raise ApiError(400, "page must be a number") from exc
    if not math.isfinite(value) or value != int(value) or not 1 <= value <= MAX_PAGE:
        raise ApiError(400, f"page must be a whole number from 1 to {MAX_PAGE}")
    return int(value)


@bp.get("/structured-output")
def list_outputs():
    """List structured outputs, one page at a time."""
    args = request.args
    lq = parse_list_query(args)
    page = _page(args.get("page"))
    order = (args.get("sortOrder") or "DESC").upper()
    if order not in ("ASC", "DESC"):
        raise ApiError(400, "sortOrder must be ASC or DESC")
    sort_by = args.get("sortBy") or "createdAt"
    if sort_by not in SORT_COLUMNS:
        raise ApiError(400, f"sortBy must be one of {', '.join(SORT_COLUMNS)}")

    query = StructuredOutput.select()
    if args.get("id"):
        query = query.where(StructuredOutput.id == check_uuid(args["id"]))
    if args.get("name"):
        query = query.where(StructuredOutput.name == args["name"])
    for column, op, value in lq.bounds:
        field = getattr(StructuredOutput, column)
        query = query.where(_OPS[op](field, value))
    total = query.count()

    column = getattr(StructuredOutput, SORT_COLUMNS[sort_by])
    key = (
        (column.desc(), StructuredOutput.id.desc())
        if order == "DESC"
        else (column, StructuredOutput.id)
    )
    rows = list(query.order_by(*key).paginate(page, lq.limit)) if lq.limit else []
    pages = math.ceil(total / lq.limit) if lq.limit else 0
    metadata = {
        "itemsPerPage": lq.limit,
        "totalItems": total,
        "currentPage": page,
        "totalPages": pages,
        "hasNextPage": page < pages,
        "sortOrder": order,
    }
    return jsonify({"results": [SPEC.to_wire(r) for r in rows], "metadata": metadata})


document(
    "/structured-output",
    "GET",
    OperationDoc(
        "List StructuredOutputs",
        "Structured Output",
        None,
        StructuredOutputPage,
        query=BASE_QUERY + LIST_QUERY,
    ),
)
