"""Structured output bodies (CreateStructuredOutputDTO / UpdateStructuredOutputDTO, api-compat.md §8).

``schema`` must itself be a valid JSON Schema (checked with jsonschema against its meta-schema) whose top-level
``type`` is one of Vapi's six; a ``regex`` output needs a pattern that compiles (raw or ``/pattern/flags``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from jsonschema.exceptions import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for
from pydantic import BaseModel, Field, field_validator, model_validator

from api.schemas.assistant import ModelConfig
from api.schemas.common import Response, Strict, UUIDStr

SCHEMA_TYPES = ("string", "number", "integer", "boolean", "array", "object")
MAX_SCHEMA_DEPTH = 32
MAX_REGEX_LENGTH = 2000
_REGEX_LITERAL = re.compile(r"^/(?P<body>.*)/(?P<flags>[a-z]*)$", re.DOTALL)
_JS_FLAGS = frozenset("dgimsuvy")

OutputName = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=10_000)]


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_SCHEMA_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Raise ValueError naming the problem unless ``schema`` is a usable JSON Schema; return it unchanged."""
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        raise ValueError(f"schema is nested deeper than {MAX_SCHEMA_DEPTH} levels")
    kind = schema.get("type")
    if kind is None:
        raise ValueError(f"schema.type is required (one of {', '.join(SCHEMA_TYPES)})")
    if not isinstance(kind, str) or kind not in SCHEMA_TYPES:
        raise ValueError(f"schema.type must be one of {', '.join(SCHEMA_TYPES)}, got {kind!r}")
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = exc.json_path if exc.json_path != "$" else "the top level"
        raise ValueError(f"schema is not a valid JSON Schema: {exc.message} (at {where})") from exc
    return schema


def check_regex(pattern: str) -> str:
    """Raise ValueError unless ``pattern`` (raw, or a ``/body/flags`` literal) compiles; return it unchanged."""
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ValueError(f"regex is longer than {MAX_REGEX_LENGTH} characters")
    body = pattern
    literal = _REGEX_LITERAL.match(pattern)
    if literal:
        body = literal.group("body")
        unknown = set(literal.group("flags")) - _JS_FLAGS
        if unknown:
            raise ValueError(f"regex has unknown flags: {''.join(sorted(unknown))}")
    try:
        re.compile(body)
    except re.error as exc:
        raise ValueError(f"regex does not compile: {exc}") from exc
    return pattern


class _Fields(Strict):
    description: Description | None = None
    type: Literal["ai", "regex"] | None = None
    regex: str | None = None
    model: ModelConfig | None = None
    assistant_ids: list[UUIDStr] | None = None
    workflow_ids: list[UUIDStr] | None = None
    #: gates for running the output (AND); null clears them
    conditions: list[dict[str, Any]] | None = None
    compliance_plan: dict[str, Any] | None = None

    @field_validator("schema_", check_fields=False)
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_json_schema(value)

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return None if value is None else check_regex(value)


class StructuredOutputBody(_Fields):
    name: OutputName
    schema_: dict[str, Any] = Field(alias="schema")

    @model_validator(mode="after")
    def _regex_needs_pattern(self) -> StructuredOutputBody:
        if self.type == "regex" and not self.regex:
            raise ValueError("regex is required when type is 'regex'")
        return self


class StructuredOutputUpdate(_Fields):
    """Every create field, all optional; ``name``, ``schema`` and ``type`` cannot be set to null."""

    name: OutputName | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _not_null(self) -> StructuredOutputUpdate:
        for attr, wire in (("name", "name"), ("schema_", "schema"), ("type", "type")):
            if attr in self.model_fields_set and getattr(self, attr) is None:
                raise ValueError(f"{wire} cannot be null")
        return self


class StructuredOutputResponse(Response):
    name: str
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    type: str | None = None
    regex: str | None = None
    model: dict[str, Any] | None = None
    assistant_ids: list[str] | None = None
    workflow_ids: list[str] | None = None
    conditions: list[dict[str, Any]] | None = None
    compliance_plan: dict[str, Any] | None = None


class PageMetadata(BaseModel):
    itemsPerPage: int  # noqa: N815 - wire names
    totalItems: int  # noqa: N815
    currentPage: int  # noqa: N815
    totalPages: int | None = None  # noqa: N815
    hasNextPage: bool | None = None  # noqa: N815
    sortOrder: str | None = None  # noqa: N815


class StructuredOutputPage(BaseModel):
    results: list[StructuredOutputResponse]
    metadata: PageMetadata
