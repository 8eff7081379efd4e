"""Credential bodies (api-compat.md §9), a union by ``provider``, and the pure helpers that split secret fields
from the rest of a body (used by credentials and by phone numbers that carry a password).

Each provider model lists its secret fields in ``SECRET_PATHS`` (paths of camelCase keys; ``*`` stands for
every key of a map). Secret values are sealed at rest and shown only as a hint such as ``"****abcd"``.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, RootModel, field_validator, model_validator

from api.schemas.common import Name, Open, Response, Strict
from api.wire import find_nul  # noqa: F401 - shared with the routes that import it from here
from esl_controller.security.secrets_box import hint

#: model, voice and transcriber vendors whose credential is an API key (``apiKey`` required)
API_KEY_PROVIDERS = (
    "openai", "anthropic", "groq", "deepgram", "11labs", "cartesia", "assembly-ai", "azure",
    "azure-openai", "anyscale", "cerebras", "deepinfra", "deep-seek", "gladia", "google", "hume",
    "inflection-ai", "inworld", "lmnt", "minimax", "mistral", "neuphonic", "openrouter",
    "perplexity-ai", "playht", "rime-ai", "runpod", "sesame", "smallest-ai", "soniox", "speechmatics",
    "tavus", "together-ai", "wellsaid", "xai", "langfuse", "trieve",
)  # fmt: skip

HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
HttpUrl = Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s/$.?#][^\s]*$")]
Secret = Annotated[str, Field(min_length=1, max_length=16_384)]


def check_host(value: str) -> str:
    """An IPv4/IPv6 address or a DNS host name (no port, no scheme)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not HOSTNAME_RE.match(value) or value.replace(".", "").isdigit():
        raise ValueError("must be an IP address or a host name")
    return value


def check_headers(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return value
    if len(value) > 50:
        raise ValueError("at most 50 headers")
    for name, item in value.items():
        if not HEADER_NAME_RE.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if len(item) > 8192 or "\r" in item or "\n" in item:
            raise ValueError(f"invalid value for header {name}")
    return value


# ---- nested plans -------------------------------------------------------------------------------------


class BearerPlan(Strict):
    type: Literal["bearer"]
    token: Secret
    header_name: Annotated[str, Field(pattern=HEADER_NAME_RE.pattern)] | None = None
    bearer_prefix_enabled: bool | None = None


class HmacPlan(Strict):
    type: Literal["hmac"]
    secret_key: Secret
    algorithm: Literal["sha256", "sha512", "sha1"] | None = None
    payload_format: Annotated[str, Field(max_length=1000)] | None = None
    signature_header: Annotated[str, Field(pattern=HEADER_NAME_RE.pattern)] | None = None
    timestamp_header: Annotated[str, Field(pattern=HEADER_NAME_RE.pattern)] | None = None
    signature_encoding: Literal["hex", "base64"] | None = None
    signature_prefix: Annotated[str, Field(max_length=64)] | None = None
    secret_is_base64: bool | None = None
    include_timestamp: bool | None = None
    message_id_header: Annotated[str, Field(pattern=HEADER_NAME_RE.pattern)] | None = None


class OAuth2Plan(Strict):
    type: Literal["oauth2"]
    url: HttpUrl
    client_id: Annotated[str, Field(min_length=1, max_length=1000)]
    client_secret: Secret
    scope: Annotated[str, Field(max_length=2000)] | None = None


AuthenticationPlan = Annotated[BearerPlan | HmacPlan | OAuth2Plan, Field(discriminator="type")]


class SipRegisterPlan(Open):
    domain: Annotated[str, Field(max_length=253)] | None = None
    username: Annotated[str, Field(max_length=255)] | None = None
    realm: Annotated[str, Field(max_length=255)] | None = None


class OutboundAuthenticationPlan(Strict):
    auth_username: Annotated[str, Field(max_length=255)] | None = None
    auth_password: Secret
    realm: Annotated[str, Field(max_length=255)] | None = None
    sip_register_plan: SipRegisterPlan | None = None


class Gateway(Open):
    ip: Annotated[str, Field(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    netmask: Annotated[int, Field(ge=24, le=32)] | None = None
    inbound_enabled: bool | None = None
    outbound_enabled: bool | None = None
    outbound_protocol: Literal["tls/srtp", "tcp", "tls", "udp"] | None = None
    options_ping_enabled: bool | None = None

    _ip = field_validator("ip")(check_host)


# ---- provider bodies ----------------------------------------------------------------------------------


class _Credential(Strict):
    SECRET_PATHS: ClassVar[tuple[tuple[str, ...], ...]] = ()
    name: Name | None = None


class ApiKeyCredential(_Credential):
    SECRET_PATHS = (("apiKey",),)
    provider: Literal[API_KEY_PROVIDERS]  # type: ignore[valid-type]
    api_key: Secret
    api_url: HttpUrl | None = None
    #: vendor-specific non-secret extras (azure region, playht userId, minimax groupId, ...)
    region: Annotated[str, Field(max_length=100)] | None = None
    user_id: Annotated[str, Field(max_length=200)] | None = None
    group_id: Annotated[str, Field(max_length=200)] | None = None
    service: Annotated[str, Field(max_length=100)] | None = None


class CustomLlmCredential(_Credential):
    SECRET_PATHS = (("apiKey",), ("authenticationPlan", "clientSecret"))
    provider: Literal["custom-llm"]
    api_key: Secret
    url: HttpUrl | None = None
    authentication_plan: OAuth2Plan | None = None


class ByoSipTrunkCredential(_Credential):
    SECRET_PATHS = (("outboundAuthenticationPlan", "authPassword"),)
    provider: Literal["byo-sip-trunk"]
    gateways: Annotated[list[Gateway], Field(min_length=1, max_length=20)]
    outbound_authentication_plan: OutboundAuthenticationPlan | None = None
    outbound_leading_plus_enabled: bool | None = None
    tech_prefix: Annotated[str, Field(max_length=32, pattern=r"^[0-9#*+]*$")] | None = None
    sip_diversion_header: Annotated[str, Field(max_length=255)] | None = None
    sbc_configuration: dict[str, Any] | None = None


class WebhookCredential(_Credential):
    SECRET_PATHS = (
        ("authenticationPlan", "token"),
        ("authenticationPlan", "secretKey"),
        ("authenticationPlan", "clientSecret"),
        ("headers", "*"),
    )
    provider: Literal["webhook", "custom-credential"]
    authentication_plan: AuthenticationPlan | None = None
    #: extra headers sent with each request; their values are treated as secrets
    headers: dict[str, str] | None = None
    encryption_plan: dict[str, Any] | None = None

    _headers = field_validator("headers")(check_headers)

    @model_validator(mode="after")
    def _need_something(self) -> WebhookCredential:
        if self.authentication_plan is None and not self.headers:
            raise ValueError("authenticationPlan is required (or headers)")
        if self.encryption_plan is not None and self.provider != "custom-credential":
            raise ValueError("encryptionPlan is only for custom-credential")
        return self


class TwilioCredential(_Credential):
    SECRET_PATHS = (("authToken",), ("apiSecret",))
    provider: Literal["twilio"]
    account_sid: Annotated[str, Field(min_length=1, max_length=64)]
    auth_token: Secret | None = None
    api_key: Annotated[str, Field(max_length=200)] | None = None
    api_secret: Secret | None = None

    @model_validator(mode="after")
    def _need_auth(self) -> TwilioCredential:
        if not self.auth_token and not (self.api_key and self.api_secret):
            raise ValueError("authToken, or apiKey and apiSecret, are required")
        return self


class VonageCredential(_Credential):
    SECRET_PATHS = (("apiSecret",),)
    provider: Literal["vonage"]
    api_key: Annotated[str, Field(min_length=1, max_length=200)]
    api_secret: Secret


class TelnyxCredential(_Credential):
    SECRET_PATHS = (("apiKey",),)
    provider: Literal["telnyx"]
    api_key: Secret


class S3Credential(_Credential):
    SECRET_PATHS = (("awsSecretAccessKey",),)
    provider: Literal["s3"]
    aws_access_key_id: Annotated[str, Field(min_length=1, max_length=200)]
    aws_secret_access_key: Secret
    region: Annotated[str, Field(min_length=1, max_length=100)]
    s3_bucket_name: Annotated[str, Field(min_length=1, max_length=255)]
    s3_path_prefix: Annotated[str, Field(max_length=1024)]


class GcpCredential(_Credential):
    SECRET_PATHS = (("gcpKey",),)
    provider: Literal["gcp"]
    gcp_key: dict[str, Any] | Secret
    region: Annotated[str, Field(max_length=100)] | None = None
    bucket_plan: dict[str, Any] | None = None


CREDENTIAL_MODELS: dict[str, type[_Credential]] = {
    **{p: ApiKeyCredential for p in API_KEY_PROVIDERS},
    "custom-llm": CustomLlmCredential,
    "byo-sip-trunk": ByoSipTrunkCredential,
    "webhook": WebhookCredential,
    "custom-credential": WebhookCredential,
    "twilio": TwilioCredential,
    "vonage": VonageCredential,
    "telnyx": TelnyxCredential,
    "s3": S3Credential,
    "gcp": GcpCredential,
}


class CredentialCreate(
    RootModel[
        Annotated[
            ApiKeyCredential
            | CustomLlmCredential
            | ByoSipTrunkCredential
            | WebhookCredential
            | TwilioCredential
            | VonageCredential
            | TelnyxCredential
            | S3Credential
            | GcpCredential,
            Field(discriminator="provider"),
        ]
    ]
):
    """The create body (documentation; the route dispatches on ``provider`` itself for clearer errors)."""


class CredentialEnvelope(Open):
    """What the generic CRUD layer checks before the route dispatches on ``provider``."""

    provider: Annotated[str, Field(max_length=64)]


class CredentialPatch(Open):
    provider: Annotated[str, Field(max_length=64)] | None = None


class CredentialResponse(Response):
    provider: str
    name: str | None = None


# ---- pure helpers: secrets and partial updates --------------------------------------------------------


def _walk(obj: Any, path: tuple[str, ...], prefix: tuple[str, ...] = ()):
    """Yield (full path, parent dict, key) for every leaf matching ``path`` in ``obj``."""
    if not isinstance(obj, dict) or not path:
        return
    head, rest = path[0], path[1:]
    keys = list(obj) if head == "*" else ([head] if head in obj else [])
    for key in keys:
        if rest:
            yield from _walk(obj[key], rest, (*prefix, key))
        else:
            yield (*prefix, key), obj, key


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def split_secrets(
    body: dict[str, Any], paths: tuple[tuple[str, ...], ...]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(public, secrets, hints)``: the body without its secret leaves, the secret leaves alone (nested as in
    the body), and a hint for each secret leaf. ``body`` is not modified."""
    public = copy.deepcopy(body)
    secrets: dict[str, Any] = {}
    hints: dict[str, Any] = {}
    for path in paths:
        for full, parent, key in list(_walk(public, path)):
            value = parent.pop(key)
            if value is None:
                continue
            _put(secrets, full, value)
            _put(hints, full, hint(value) if isinstance(value, str) else "****")
    return public, secrets, hints


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``overlay`` over ``base``, merging nested dicts."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def patch_merge(
    current: dict[str, Any], patch: dict[str, Any], nested: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Apply a partial update: top-level keys are replaced and ``null`` removes a key. The keys in ``nested``
    are merged one level down instead (so a secret inside them survives an update that does not resend it),
    unless the patch changes their ``type``."""
    out = copy.deepcopy(current)
    for key, value in patch.items():
        old = out.get(key)
        if value is None:
            out.pop(key, None)
        elif (
            key in nested
            and isinstance(value, dict)
            and isinstance(old, dict)
            and value.get("type", old.get("type")) == old.get("type")
        ):
            merged = {**old, **value}
            out[key] = {k: v for k, v in merged.items() if v is not None}
        else:
            out[key] = copy.deepcopy(value)
    return out


def drop_nulls(body: dict[str, Any]) -> dict[str, Any]:
    """Top-level ``null`` means "not set": stored bodies never carry them."""
    return {k: v for k, v in body.items() if v is not None}
