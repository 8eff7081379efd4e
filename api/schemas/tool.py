"""Tool bodies (api-compat.md §4), a union by ``type``.

``function``, ``transferCall``, ``endCall``, ``dtmf``, ``apiRequest`` and ``handoff`` are validated field by
field; Vapi's other tool types are accepted with their common fields checked and the rest stored as sent.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from pydantic import AfterValidator, Field, RootModel, model_validator

from api.schemas.common import Open, Response, ServerConfig, SipUri, Strict, UUIDStr
from api.schemas.phone_number import NumberDestination

FUNCTION_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: Vapi's tool types that we store without field-level checks beyond the common ones
OTHER_TYPES = (
    "query", "sms", "mcp", "voicemail", "sipRequest", "code", "bash", "computer", "textEditor",
    "google.sheets.row.append", "slack.message.send", "output", "make", "ghl",
)  # fmt: skip
OTHER_PREFIXES = ("google.calendar.", "gohighlevel.")
OTHER_TYPE_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9.]{0,63}$")
HttpUrl = Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s/$.?#][^\s]*$")]


def check_json_schema(value: dict[str, Any]) -> dict[str, Any]:
    """A valid JSON Schema (checked against its metaschema; draft 2020-12 unless ``$schema`` says other)."""
    try:
        validator_for(value).check_schema(value)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message[:200]}") from None
    return value


JsonSchema = Annotated[dict[str, Any], AfterValidator(check_json_schema)]


def check_object_schema(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("type") != "object":
        raise ValueError('must be a JSON Schema with "type": "object"')
    return check_json_schema(value)


# ---- messages -----------------------------------------------------------------------------------------


class _Message(Open):
    content: Annotated[str, Field(max_length=1000)] | None = None
    contents: list[dict[str, Any]] | None = None
    conditions: list[dict[str, Any]] | None = None


class RequestStartMessage(_Message):
    type: Literal["request-start"]
    blocking: bool | None = None


class RequestCompleteMessage(_Message):
    type: Literal["request-complete", "request-failed"]
    role: Literal["assistant", "system"] | None = None
    end_call_after_spoken_enabled: bool | None = None


class RequestDelayedMessage(_Message):
    type: Literal["request-response-delayed"]
    timing_milliseconds: Annotated[int, Field(ge=0, le=120_000)] | None = None


ToolMessage = Annotated[
    RequestStartMessage | RequestCompleteMessage | RequestDelayedMessage,
    Field(discriminator="type"),
]


# ---- pieces -------------------------------------------------------------------------------------------


class FunctionDefinition(Open):
    name: Annotated[str, Field(pattern=FUNCTION_NAME_RE.pattern)]
    description: Annotated[str, Field(max_length=1000)] | None = None
    strict: bool | None = None
    parameters: Annotated[dict[str, Any], AfterValidator(check_object_schema)] | None = None


class SipTransferDestination(Open):
    type: Literal["sip"]
    sip_uri: SipUri
    sip_headers: dict[str, Any] | None = None


class AssistantTransferDestination(Open):
    type: Literal["assistant"]
    assistant_name: Annotated[str, Field(min_length=1, max_length=200)]
    transfer_mode: str | None = None


TransferDestination = Annotated[
    NumberDestination | SipTransferDestination | AssistantTransferDestination,
    Field(discriminator="type"),
]


class HandoffDestination(Open):
    type: Literal["assistant", "dynamic"]
    assistant_id: UUIDStr | None = None
    assistant_name: Annotated[str, Field(max_length=200)] | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None


# ---- tool bodies --------------------------------------------------------------------------------------


class _Tool(Strict):
    messages: Annotated[list[ToolMessage], Field(max_length=20)] | None = None
    rejection_plan: dict[str, Any] | None = None
    function: FunctionDefinition | None = None
    server: ServerConfig | None = None
    credential_id: UUIDStr | None = None
    variable_extraction_plan: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class FunctionTool(_Tool):
    type: Literal["function"]
    function: FunctionDefinition
    async_: bool | None = Field(default=None, alias="async")
    parameters: list[dict[str, Any]] | None = None


class TransferCallTool(_Tool):
    type: Literal["transferCall"]
    destinations: Annotated[list[TransferDestination], Field(max_length=100)] | None = None


class EndCallTool(_Tool):
    type: Literal["endCall"]


class DtmfTool(_Tool):
    type: Literal["dtmf"]
    sip_info_dtmf_enabled: bool | None = None


class ApiRequestTool(_Tool):
    type: Literal["apiRequest"]
    method: Literal["POST", "GET", "PUT", "PATCH", "DELETE"]
    url: HttpUrl
    name: Annotated[str, Field(pattern=FUNCTION_NAME_RE.pattern)] | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None
    body: JsonSchema | None = None
    headers: JsonSchema | None = None
    timeout_seconds: Annotated[float, Field(ge=1, le=300)] | None = None
    backoff_plan: dict[str, Any] | None = None


class HandoffTool(_Tool):
    type: Literal["handoff"]
    destinations: Annotated[list[HandoffDestination], Field(max_length=100)] | None = None


class OtherTool(_Tool):
    """Vapi tool types we store but do not run; their type-specific fields are kept as sent."""

    model_config = {**_Tool.model_config, "extra": "allow"}
    type: str

    @model_validator(mode="after")
    def _known(self) -> OtherTool:
        if not is_other_type(self.type):
            raise ValueError(f"unknown tool type {self.type!r}")
        return self


TOOL_MODELS: dict[str, type[_Tool]] = {
    "function": FunctionTool,
    "transferCall": TransferCallTool,
    "endCall": EndCallTool,
    "dtmf": DtmfTool,
    "apiRequest": ApiRequestTool,
    "handoff": HandoffTool,
}


def is_other_type(value: Any) -> bool:
    return (
        isinstance(value, str)
        and bool(OTHER_TYPE_RE.match(value))
        and (value in OTHER_TYPES or value.startswith(OTHER_PREFIXES))
    )


def model_for(tool_type: Any) -> type[_Tool] | None:
    if isinstance(tool_type, str) and tool_type in TOOL_MODELS:
        return TOOL_MODELS[tool_type]
    return OtherTool if is_other_type(tool_type) else None


_KNOWN_TOOL = Annotated[
    FunctionTool | TransferCallTool | EndCallTool | DtmfTool | ApiRequestTool | HandoffTool,
    Field(discriminator="type"),
]


class ToolCreate(RootModel[_KNOWN_TOOL | OtherTool]):
    """The create body (documentation; the route dispatches on ``type`` itself)."""


class ToolEnvelope(Open):
    type: Annotated[str, Field(max_length=64)]


class ToolPatch(Open):
    type: Annotated[str, Field(max_length=64)] | None = None


class ToolResponse(Response):
    type: str
