"""Request authentication for outgoing webhooks, its verification, and header masking. Pure.

Per target, any of:

* legacy ``server.secret``: sent verbatim as ``X-Vapi-Secret``;
* ``bearer`` plan: the token in ``headerName`` (default ``Authorization``), ``Bearer `` prefixed unless
  ``bearerPrefixEnabled`` is false;
* ``hmac`` plan (Vapi's ``HMACAuthenticationPlan``): HMAC(secretKey, payloadFormat filled in) encoded as
  ``signatureEncoding``, sent as ``signaturePrefix`` + value in ``signatureHeader``, the timestamp (Unix
  seconds) in ``timestampHeader`` and the message id in ``messageIdHeader``;
* ``oauth2`` plan: the delivery layer fetches the access token; here it only becomes a bearer header;
* static ``headers``.

``verify`` is the receiver's side (constant-time comparison, timestamp tolerance); ``mask_headers`` hides
secret header values before a request is stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512, "sha1": hashlib.sha1}
DEFAULT_PAYLOAD_FORMAT = "{timestamp}.{body}"
PLACEHOLDERS = ("body", "timestamp", "method", "url", "svix-id")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z][A-Za-z0-9_-]*)\}")
LEGACY_SECRET_HEADER = "X-Vapi-Secret"


class SigningError(ValueError):
    """A bad authentication plan; the message names the field."""


@dataclass(frozen=True)
class SecretHeaderAuth:
    """Legacy ``server.secret``: the value as-is in one header."""

    secret: str = field(repr=False)
    header_name: str = LEGACY_SECRET_HEADER


@dataclass(frozen=True)
class BearerAuth:
    token: str = field(repr=False)
    header_name: str = "Authorization"
    bearer_prefix_enabled: bool = True


@dataclass(frozen=True)
class OAuth2Auth:
    """Client-credentials plan; the token is fetched (and cached) by the delivery layer."""

    url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None


@dataclass(frozen=True)
class HmacAuth:
    secret_key: str = field(repr=False)
    algorithm: str = "sha256"
    payload_format: str = DEFAULT_PAYLOAD_FORMAT
    include_timestamp: bool = True
    signature_header: str = "x-signature"
    timestamp_header: str = "x-timestamp"
    signature_encoding: str = "hex"
    signature_prefix: str = ""
    secret_is_base64: bool = False
    message_id_header: str | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise SigningError(
                f"hmac.algorithm: must be one of sha256, sha512, sha1, not {self.algorithm!r}"
            )
        if self.signature_encoding not in ("hex", "base64"):
            raise SigningError(
                f"hmac.signatureEncoding: must be hex or base64, not {self.signature_encoding!r}"
            )
        unknown = [p for p in _PLACEHOLDER_RE.findall(self.payload_format) if p not in PLACEHOLDERS]
        if unknown:
            raise SigningError(
                f"hmac.payloadFormat: unknown placeholder {{{unknown[0]}}} "
                f"(use {{body}}, {{timestamp}}, {{method}}, {{url}}, {{svix-id}})"
            )
        if (
            not self.include_timestamp
            and "{timestamp}" in self.payload_format
            and (self.payload_format != DEFAULT_PAYLOAD_FORMAT)
        ):
            raise SigningError("hmac.payloadFormat: uses {timestamp} but includeTimestamp is false")
        if not self.secret_key:
            raise SigningError("hmac.secretKey: required")
        self.key()  # validates base64

    def key(self) -> bytes:
        if not self.secret_is_base64:
            return self.secret_key.encode("utf-8")
        try:
            return base64.b64decode(self.secret_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SigningError(f"hmac.secretKey: not valid base64 ({exc})") from None

    def effective_format(self) -> str:
        if not self.include_timestamp and self.payload_format == DEFAULT_PAYLOAD_FORMAT:
            return "{body}"
        return self.payload_format


Auth = SecretHeaderAuth | BearerAuth | OAuth2Auth | HmacAuth


def auth_from_plan(plan: Mapping[str, Any]) -> Auth:
    """An Auth from a Vapi ``authenticationPlan`` dict (``type`` bearer / hmac / oauth2)."""
    kind = plan.get("type")
    if kind == "bearer":
        if not plan.get("token"):
            raise SigningError("bearer.token: required")
        return BearerAuth(
            token=str(plan["token"]),
            header_name=str(plan.get("headerName") or "Authorization"),
            bearer_prefix_enabled=bool(plan.get("bearerPrefixEnabled", True)),
        )
    if kind == "hmac":
        return HmacAuth(
            secret_key=str(plan.get("secretKey") or ""),
            algorithm=str(plan.get("algorithm") or "sha256"),
            payload_format=str(plan.get("payloadFormat") or DEFAULT_PAYLOAD_FORMAT),
            include_timestamp=bool(plan.get("includeTimestamp", True)),
            signature_header=str(plan.get("signatureHeader") or "x-signature"),
            timestamp_header=str(plan.get("timestampHeader") or "x-timestamp"),
            signature_encoding=str(plan.get("signatureEncoding") or "hex"),
            signature_prefix=str(plan.get("signaturePrefix") or ""),
            secret_is_base64=bool(plan.get("secretIsBase64", False)),
            message_id_header=plan.get("messageIdHeader") or None,
        )
    if kind == "oauth2":
        for key in ("url", "clientId", "clientSecret"):
            if not plan.get(key):
                raise SigningError(f"oauth2.{key}: required")
        return OAuth2Auth(
            url=str(plan["url"]),
            client_id=str(plan["clientId"]),
            client_secret=str(plan["clientSecret"]),
            scope=plan.get("scope"),
        )
    raise SigningError(f"authenticationPlan.type: must be bearer, hmac or oauth2, not {kind!r}")


def signed_payload(
    auth: HmacAuth, *, body: bytes, timestamp: str, method: str, url: str, message_id: str
) -> bytes:
    """The bytes that are signed: ``payloadFormat`` with its placeholders filled in (body as raw bytes)."""
    values = {
        "body": body,
        "timestamp": timestamp.encode(),
        "method": method.upper().encode(),
        "url": url.encode(),
        "svix-id": message_id.encode(),
    }
    out = bytearray()
    fmt = auth.effective_format()
    pos = 0
    for m in _PLACEHOLDER_RE.finditer(fmt):
        out += fmt[pos : m.start()].encode()
        out += values[m.group(1)]
        pos = m.end()
    out += fmt[pos:].encode()
    return bytes(out)


def hmac_signature(
    auth: HmacAuth,
    *,
    body: bytes,
    timestamp: str = "",
    method: str = "POST",
    url: str = "",
    message_id: str = "",
) -> str:
    """The header value: ``signaturePrefix`` + encoded HMAC of :func:`signed_payload`."""
    payload = signed_payload(
        auth, body=body, timestamp=timestamp, method=method, url=url, message_id=message_id
    )
    digest = hmac.new(auth.key(), payload, ALGORITHMS[auth.algorithm]).digest()
    encoded = (
        digest.hex() if auth.signature_encoding == "hex" else base64.b64encode(digest).decode()
    )
    return auth.signature_prefix + encoded


def sign_request(
    *,
    body: bytes,
    url: str,
    auths: Sequence[Auth] = (),
    static_headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    method: str = "POST",
    timestamp: int | None = None,
    message_id: str = "",
    oauth_token: str | None = None,
) -> dict[str, str]:
    """The headers to send with ``body``: static headers first, then each auth's (auth wins a clash).

    ``timestamp`` is Unix seconds (None reads the clock). ``message_id`` is the stable job id a receiver
    can dedupe on (``{svix-id}``, ``messageIdHeader``). ``oauth_token`` is required for an OAuth2Auth.
    """
    headers: dict[str, str] = {"Content-Type": "application/json"}
    items = static_headers.items() if isinstance(static_headers, Mapping) else static_headers
    for name, value in items:
        headers[str(name)] = str(value)
    ts = str(int(time.time()) if timestamp is None else int(timestamp))
    for auth in auths:
        if isinstance(auth, SecretHeaderAuth):
            headers[auth.header_name] = auth.secret
        elif isinstance(auth, BearerAuth):
            headers[auth.header_name] = (
                f"Bearer {auth.token}" if auth.bearer_prefix_enabled else auth.token
            )
        elif isinstance(auth, OAuth2Auth):
            if not oauth_token:
                raise SigningError("oauth2: no access token was fetched for this request")
            headers["Authorization"] = f"Bearer {oauth_token}"
        elif isinstance(auth, HmacAuth):
            headers[auth.signature_header] = hmac_signature(
                auth, body=body, timestamp=ts, method=method, url=url, message_id=message_id
            )
            if auth.include_timestamp:
                headers[auth.timestamp_header] = ts
            if auth.message_id_header:
                headers[auth.message_id_header] = message_id
        else:  # pragma: no cover - guarded by the type
            raise SigningError(f"unknown auth {type(auth).__name__}")
    return headers


# -------------------------------------------------------------------------------------- receiver side


@dataclass(frozen=True)
class Verification:
    ok: bool
    reason: str


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lname = name.lower()
    for key, value in headers.items():
        if key.lower() == lname:
            return value
    return None


def verify(
    auth: Auth,
    *,
    headers: Mapping[str, str],
    body: bytes,
    method: str = "POST",
    url: str = "",
    now: float | None = None,
    tolerance_seconds: float = 300.0,
) -> Verification:
    """Check a received request against ``auth`` (what a receiver does; also used by our tests)."""
    if isinstance(auth, SecretHeaderAuth | BearerAuth):
        got = _header(headers, auth.header_name)
        if got is None:
            return Verification(False, f"missing {auth.header_name} header")
        if isinstance(auth, SecretHeaderAuth):
            expected = auth.secret
        else:
            expected = f"Bearer {auth.token}" if auth.bearer_prefix_enabled else auth.token
        if hmac.compare_digest(got.encode(), expected.encode()):
            return Verification(True, "ok")
        return Verification(False, f"{auth.header_name} does not match")
    if isinstance(auth, OAuth2Auth):
        return Verification(False, "oauth2 tokens are verified by the token issuer, not here")
    got = _header(headers, auth.signature_header)
    if got is None:
        return Verification(False, f"missing {auth.signature_header} header")
    ts = ""
    if auth.include_timestamp:
        ts_value = _header(headers, auth.timestamp_header)
        if ts_value is None:
            return Verification(False, f"missing {auth.timestamp_header} header")
        try:
            sent = int(ts_value)
        except ValueError:
            return Verification(False, f"{auth.timestamp_header} is not an integer")
        current = time.time() if now is None else now
        if abs(current - sent) > tolerance_seconds:
            return Verification(False, f"timestamp outside the {tolerance_seconds:g} s tolerance")
        ts = ts_value
    message_id = ""
    if auth.message_id_header:
        message_id = _header(headers, auth.message_id_header) or ""
    expected = hmac_signature(
        auth, body=body, timestamp=ts, method=method, url=url, message_id=message_id
    )
    if hmac.compare_digest(got.encode(), expected.encode()):
        return Verification(True, "ok")
    return Verification(False, "signature does not match")


# ------------------------------------------------------------------------------------------- masking

MASK = "***"
_SECRET_NAMES = frozenset(
    {"authorization", "proxy-authorization", "x-vapi-secret", "cookie", "set-cookie", "x-api-key"}
)
_SECRET_WORDS = ("secret", "token", "password", "passwd", "api-key", "apikey", "api_key", "auth")


def secret_header_names(auths: Iterable[Auth]) -> frozenset[str]:
    """Lower-cased names of the headers that carry a secret for these auths (HMAC signatures do not)."""
    names = set()
    for auth in auths:
        if isinstance(auth, SecretHeaderAuth | BearerAuth):
            names.add(auth.header_name.lower())
        elif isinstance(auth, OAuth2Auth):
            names.add("authorization")
    return frozenset(names)


def mask_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], extra_secret_names: Iterable[str] = ()
) -> dict[str, str]:
    """A copy with secret values replaced: well-known auth headers, names containing secret/token/
    password/api-key/auth, and ``extra_secret_names``. A ``Bearer``/``Basic`` scheme word is kept."""
    extra = {n.lower() for n in extra_secret_names}
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        lname = name.lower()
        if lname in _SECRET_NAMES or lname in extra or any(w in lname for w in _SECRET_WORDS):
            scheme, _, rest = str(value).partition(" ")
            if rest and scheme.lower() in ("bearer", "basic", "token"):
                out[name] = f"{scheme} {MASK}"
            else:
                out[name] = MASK
        else:
            out[name] = str(value)
    return out
