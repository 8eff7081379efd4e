"""The OpenAPI document, generated from the app's route table and the pydantic schemas routes register."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from pydantic import BaseModel

_REGISTRY: dict[tuple[str, str], OperationDoc] = {}


@dataclass(frozen=True)
class OperationDoc:
    summary: str
    tag: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    list_response: bool = False
    query: tuple[str, ...] = ()
    content_type: str = "application/json"
    extra: dict[str, Any] = field(default_factory=dict)


def document(rule: str, method: str, doc: OperationDoc) -> None:
    """Register documentation for one route (``rule`` in Flask syntax, e.g. ``/assistant/<id>``)."""
    _REGISTRY[(rule, method.upper())] = doc


def _openapi_path(rule: str) -> tuple[str, list[str]]:
    params = re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule), params


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


ERROR_SCHEMA = {
    "type": "object",
    "required": ["statusCode", "error", "message"],
    "properties": {
        "statusCode": {"type": "integer"},
        "error": {"type": "string"},
        "message": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    },
}


def build_document(
    app: Flask, title: str = "esl-controller API", version: str = "0.1.0"
) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        path, params = _openapi_path(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            doc = _REGISTRY.get((rule.rule, method))
            op: dict[str, Any] = {
                "operationId": f"{rule.endpoint}.{method.lower()}",
                "summary": doc.summary
                if doc
                else (view.__doc__ or rule.endpoint).strip().split("\n")[0],
                "tags": [doc.tag if doc else rule.endpoint.split(".")[0]],
                "parameters": [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in params
                ],
                "responses": {
                    "4XX": {
                        "description": "Error",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    }
                },
            }
            if doc:
                for q in doc.query:
                    op["parameters"].append(
                        {"name": q, "in": "query", "schema": {"type": "string"}}
                    )
                if doc.request is not None:
                    op["requestBody"] = {
                        "required": True,
                        "content": {
                            doc.content_type: {"schema": _schema_ref(doc.request, components)}
                        },
                    }
                body: dict[str, Any] = {"type": "object"}
                if doc.response is not None:
                    ref = _schema_ref(doc.response, components)
                    body = {"type": "array", "items": ref} if doc.list_response else ref
                op["responses"][str(doc.status)] = {
                    "description": "OK",
                    "content": {"application/json": {"schema": body}},
                }
            else:
                op["responses"]["200"] = {"description": "OK"}
            if getattr(view, "_public", False):
                op["security"] = []
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }
