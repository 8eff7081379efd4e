"""``POST /structured-output/run`` body (StructuredOutputRunDTO) and response."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from api.schemas.common import Strict, UUIDStr
from api.schemas.structured_output import StructuredOutputBody

MAX_CALLS = 100


class StructuredOutputRunBody(Strict):
    #: the calls to run on (ended calls; at most 100, exactly 1 with ``previewEnabled``)
    call_ids: list[UUIDStr] = Field(min_length=1, max_length=MAX_CALLS)
    structured_output_id: UUIDStr | None = None
    #: extension: several stored outputs at once
    structured_output_ids: list[UUIDStr] | None = Field(default=None, max_length=100)
    #: a transient output, run without being stored as a resource
    structured_output: StructuredOutputBody | None = None
    #: run and answer, without writing the results to the calls' artifacts
    preview_enabled: bool | None = None

    @model_validator(mode="after")
    def _rules(self) -> StructuredOutputRunBody:
        if self.preview_enabled and len(self.call_ids) != 1:
            raise ValueError("callIds must hold exactly 1 call when previewEnabled is true")
        return self

    def output_ids(self) -> list[str] | None:
        """The stored outputs asked for, or None for "the outputs bound to each call's assistant"."""
        ids = list(self.structured_output_ids or [])
        if self.structured_output_id:
            ids.insert(0, self.structured_output_id)
        if not ids and self.structured_output is not None:
            return []
        return list(dict.fromkeys(ids)) if ids else None


class StructuredOutputResult(BaseModel):
    callId: str  # noqa: N815 - wire names
    structuredOutputId: str  # noqa: N815
    name: str
    status: str
    attempts: int
    result: Any = None
    error: str | None = None
    runId: str | None = None  # noqa: N815


class StructuredOutputRunResponse(BaseModel):
    previewEnabled: bool  # noqa: N815
    results: list[StructuredOutputResult]
