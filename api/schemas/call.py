"""Call bodies (api-compat.md §6)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api.schemas.common import Name, Open, Response, Strict


class CallUpdateBody(Strict):
    name: Name | None = None
    # the SDK's calls.delete sends {"ids": [...]} for bulk; PATCH takes only name


class CreateCallBody(Strict):
    """POST /call and /call/phone (validated fully by the controller's call creation)."""

    name: Name | None = None
    assistant_id: str | None = None
    assistant: dict[str, Any] | None = None
    assistant_overrides: dict[str, Any] | None = None
    squad_id: str | None = None
    squad: dict[str, Any] | None = None
    workflow_id: str | None = None
    workflow: dict[str, Any] | None = None
    phone_number_id: str | None = None
    phone_number: dict[str, Any] | None = None
    customer_id: str | None = None
    customer: dict[str, Any] | None = None
    customers: list[dict[str, Any]] | None = None
    schedule_plan: dict[str, Any] | None = None
    transport: dict[str, Any] | None = None
    assistant_version: Any = None


class CallResponse(Response):
    type: str | None = None
    status: str | None = None
    ended_reason: str | None = None


class WebCallBody(Strict):
    """POST /call/web."""

    name: Name | None = None
    assistant_id: str | None = None
    assistant: dict[str, Any] | None = None
    assistant_overrides: dict[str, Any] | None = None
    squad_id: str | None = None
    squad: dict[str, Any] | None = None
    workflow_id: str | None = None
    workflow: dict[str, Any] | None = None


class ControlBody(Open):
    """POST /call/:id/control: ``type`` plus the fields of that control (api-compat.md section 12)."""

    type: str


class ControlAnswer(BaseModel):
    id: str
    #: accepted (done or under way) or queued (say/add-message before the pipeline is ready)
    status: str
    duplicate: bool = False
    call_status: str | None = None


class CallBatchResponse(BaseModel):
    results: list[dict[str, Any]]
    errors: list[dict[str, Any]]


class InboundHookBody(Open):
    """POST /freeswitch/inbound: a channel routed by DID or SIP URI."""

    uuid: str
    destination: str | None = None
    sip_uri: str | None = None
    caller: str | None = None
    answered: bool = False
