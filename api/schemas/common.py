"""Shared schema pieces."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
SIP_URI_RE = re.compile(
    r"^sips?:(?:[A-Za-z0-9_.!~*'()&=+$,;?/%-]+@)?[A-Za-z0-9.-]+(?::\d{1,5})?(?:;[A-Za-z0-9_.=-]+)*$"
)
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


class Strict(BaseModel):
    """Top-level request bodies: unknown properties are a 400, as on Vapi."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Open(BaseModel):
    """Nested provider objects: the required keys are checked, provider-specific extras are kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Response(BaseModel):
    """Documentation-only response models (responses are built as dicts)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    id: str
    org_id: str
    created_at: str
    updated_at: str


def _uuid(value: str) -> str:
    if not UUID_RE.match(value):
        raise ValueError("must be a UUID")
    return value.lower()


def _e164(value: str) -> str:
    if not E164_RE.match(value):
        raise ValueError("must be an E.164 number like +14155550123")
    return value


def _sip_uri(value: str) -> str:
    if len(value) > 255 or not SIP_URI_RE.match(value):
        raise ValueError("must be a SIP URI like sip:alice@example.com")
    return value


UUIDStr = Annotated[str, AfterValidator(_uuid)]
E164 = Annotated[str, AfterValidator(_e164)]
SipUri = Annotated[str, AfterValidator(_sip_uri)]
Name = Annotated[str, Field(max_length=200)]
Metadata = dict[str, Any]


class ServerConfig(Open):
    """Where server messages go (api-compat §3 ``server``)."""

    url: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None
    timeout_seconds: Annotated[float, Field(ge=1, le=300)] | None = None
    headers: dict[str, str] | None = None
    credential_id: UUIDStr | None = None
    #: legacy: sent verbatim as X-Vapi-Secret
    secret: str | None = None
