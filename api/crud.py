"""Create/list/get/update/delete routes for a resource, wired from a :class:`ResourceSpec`.

Behaviour shared by every resource (api-compat.md §1): POST answers 201 with the object; GET list answers a bare
array newest first (or ``{results, metadata}`` when ``paginated``); PATCH is partial (unsent fields untouched);
DELETE answers 200 with the deleted object. Bodies are validated by pydantic with unknown fields rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from peewee import IntegrityError, Model
from pydantic import BaseModel

from api.errors import ApiError
from api.filters import apply_list_query, parse_list_query
from api.openapi import OperationDoc, document
from api.wire import check_uuid, iso, json_body
from esl_controller.db.fields import utcnow

LIST_QUERY = (
    "limit",
    "createdAtGt",
    "createdAtLt",
    "createdAtGe",
    "createdAtLe",
    "updatedAtGt",
    "updatedAtLt",
    "updatedAtGe",
    "updatedAtLe",
)


def services():
    return current_app.extensions["esl_controller"]


def stamps(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "orgId": row.org_id,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


def default_to_wire(row: Any) -> dict[str, Any]:
    out = dict(row.data or {})
    out.update(stamps(row))
    return out


@dataclass
class ResourceSpec:
    """How one resource maps between the wire and its model."""

    name: str  # human name in messages, e.g. "Assistant"
    path: str  # "/assistant"
    model: type[Model]
    create_schema: type[BaseModel]
    update_schema: type[BaseModel]
    response_schema: type[BaseModel] | None = None
    #: validated create body (camelCase dict) -> model field values (``data`` included)
    on_create: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: (row, validated partial body) -> model field values to set
    on_update: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    to_wire: Callable[[Any], dict[str, Any]] = default_to_wire
    #: the single-object view (GET/PATCH/DELETE by id) when it carries more than list items do
    to_wire_detail: Callable[[Any], dict[str, Any]] | None = None
    #: (query, request.args) -> query, for resource-specific filters
    list_filter: Callable[[Any, Any], Any] | None = None
    extra_query: tuple[str, ...] = ()
    #: raise ApiError if the row cannot be deleted (e.g. still referenced)
    before_delete: Callable[[Any], None] | None = None
    after_delete: Callable[[Any], None] | None = None
    #: map an IntegrityError to a message (unique violations and the like)
    conflict_message: Callable[[IntegrityError], str] | None = None
    paginated: bool = False
    methods: tuple[str, ...] = ("create", "list", "get", "update", "delete")
    update_query: tuple[str, ...] = ()
    tag: str = field(default="")


def validate(schema: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    obj = schema.model_validate(body)
    return obj.model_dump(by_alias=True, exclude_unset=True, mode="json")


def get_row(spec: ResourceSpec, ident: str) -> Any:
    check_uuid(ident)
    row = spec.model.get_or_none(spec.model.id == ident.lower())
    if row is None:
        raise ApiError(404, f"{spec.name} not found")
    return row


def _save(spec: ResourceSpec, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except IntegrityError as exc:
        message = spec.conflict_message(exc) if spec.conflict_message else None
        raise ApiError(400, message or f"{spec.name} conflicts with an existing one") from exc


def register_crud(bp: Blueprint, spec: ResourceSpec) -> None:
    base = spec.path
    tag = spec.tag or spec.name
    endpoint = spec.path.strip("/").replace("-", "_").replace("/", "_")

    def create():
        body = validate(spec.create_schema, json_body())
        fields = (
            spec.on_create(body) if spec.on_create else {"data": body, "name": body.get("name")}
        )
        fields.setdefault("org_id", services().settings.org_id)
        row = _save(spec, lambda: spec.model.create(**fields))
        return jsonify(spec.to_wire(row)), 201

    def list_():
        lq = parse_list_query(request.args)
        query = spec.model.select()
        if spec.list_filter:
            query = spec.list_filter(query, request.args)
        rows = [spec.to_wire(r) for r in apply_list_query(query, spec.model, lq)]
        if spec.paginated:
            page_meta = {"itemsPerPage": lq.limit, "totalItems": len(rows), "currentPage": 1}
            return jsonify({"results": rows, "metadata": page_meta})
        return jsonify(rows)

    detail = spec.to_wire_detail or spec.to_wire

    def get(id: str):
        return jsonify(detail(get_row(spec, id)))

    def update(id: str):
        row = get_row(spec, id)
        body = validate(spec.update_schema, json_body(allow_empty=True))
        if spec.on_update:
            changes = spec.on_update(row, body)
        else:
            changes = {"data": {**(row.data or {}), **body}}
            if "name" in body:
                changes["name"] = body["name"]
        for k, v in changes.items():
            setattr(row, k, v)
        row.updated_at = utcnow()
        _save(spec, row.save)
        return jsonify(detail(row))

    def delete(id: str):
        row = get_row(spec, id)
        if spec.before_delete:
            spec.before_delete(row)
        wire = detail(row)
        _save(spec, row.delete_instance)
        if spec.after_delete:
            spec.after_delete(row)
        return jsonify(wire)

    resp = spec.response_schema
    if "create" in spec.methods:
        bp.add_url_rule(base, f"{endpoint}_create", create, methods=["POST"])
        document(
            base, "POST", OperationDoc(f"Create {spec.name}", tag, spec.create_schema, resp, 201)
        )
    if "list" in spec.methods:
        bp.add_url_rule(base, f"{endpoint}_list", list_, methods=["GET"])
        document(
            base,
            "GET",
            OperationDoc(
                f"List {spec.name}s",
                tag,
                None,
                resp,
                200,
                list_response=not spec.paginated,
                query=LIST_QUERY + spec.extra_query,
            ),
        )
    item = f"{base}/<id>"
    if "get" in spec.methods:
        bp.add_url_rule(item, f"{endpoint}_get", get, methods=["GET"])
        document(item, "GET", OperationDoc(f"Get {spec.name}", tag, None, resp))
    if "update" in spec.methods:
        bp.add_url_rule(item, f"{endpoint}_update", update, methods=["PATCH"])
        document(
            item,
            "PATCH",
            OperationDoc(
                f"Update {spec.name}", tag, spec.update_schema, resp, query=spec.update_query
            ),
        )
    if "delete" in spec.methods:
        bp.add_url_rule(item, f"{endpoint}_delete", delete, methods=["DELETE"])
        document(item, "DELETE", OperationDoc(f"Delete {spec.name}", tag, None, resp))
