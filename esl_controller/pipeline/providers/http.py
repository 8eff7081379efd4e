"""Shared HTTP plumbing for hosted providers: timeouts, safe retries, error mapping, request ids.

Hosted providers talk HTTP through ``httpx`` (the openai SDK's own client), which runs on gevent-patched
sockets, so a request waits without blocking the hub. The rules every provider follows:

- **timeouts**: a connect timeout (``connect_timeout``, default 5 s) and a read timeout (the request's
  ``timeout``) bound every wait; a slow stream fails when no byte arrives within the read timeout;
- **retries only where safe**: a request is retried (``max_retries`` times, exponential backoff, honouring a
  short ``Retry-After``) only when it failed *before any response byte was handed on*: connection errors,
  timeouts before the response, and retryable statuses (408/409/429/5xx). Nothing is retried mid-stream;
- **errors**: everything becomes :class:`ProviderError` with ``retryable`` and the HTTP status, so the call
  can pick a fallback or end with the Vapi-style ``pipeline-error-<provider>-...`` reason;
- **usage**: the response's request id header is recorded with the usage (see :func:`request_id`).

Secrets (API keys) travel in headers only and are never logged.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from esl_controller.pipeline.providers.base import MissingExtra, ProviderError, retryable_status

try:
    import httpx
except ImportError:  # pragma: no cover - httpx comes with the providers extra
    httpx = None  # type: ignore[assignment]


def _httpx() -> Any:
    """httpx, or :class:`MissingExtra` naming the extra (the Deepgram WebSocket path does not need it)."""
    if httpx is None:
        raise MissingExtra("hosted", "providers", "httpx")
    return httpx


log = logging.getLogger("esl_controller.pipeline.providers.http")

#: response headers that carry a vendor's request id, first match wins
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "dg-request-id", "x-amzn-requestid", "cf-ray")
#: a Retry-After longer than this is not waited for (the call cannot wait that long)
MAX_RETRY_AFTER = 2.0


@dataclass(frozen=True)
class HttpPolicy:
    """Per-provider request policy, parsed once from the provider config."""

    connect_timeout: float = 5.0
    max_retries: int = 1
    backoff: float = 0.2  # first retry waits about this long, doubling after
    chunk_bytes: int = 4096

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HttpPolicy:
        def num(key: str, default: float) -> float:
            value = config.get(key)
            return default if value is None else float(value)

        return cls(
            connect_timeout=num("connectTimeoutSeconds", cls.connect_timeout),
            max_retries=int(num("maxRetries", cls.max_retries)),
            backoff=num("retryBackoffSeconds", cls.backoff),
        )

    def timeout(self, read: float) -> Any:
        """httpx timeouts for one request: ``read`` bounds every read, write and pool wait."""
        return _httpx().Timeout(read, connect=min(self.connect_timeout, read))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER:
            return retry_after
        base = self.backoff * (2**attempt)
        return base * (0.75 + random.random() * 0.5)  # noqa: S311 - jitter, not security


def request_id(headers: Mapping[str, str] | None) -> str:
    """The vendor request id from response headers ('' when none)."""
    if not headers:
        return ""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return str(value)
    return ""


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def status_error(
    provider: str, kind: str, status: int, body: bytes | str = b"", *, what: str = "request"
) -> ProviderError:
    """A ProviderError for an HTTP error status, with the vendor's message when the body has one."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    detail = error_detail(text)
    return ProviderError(
        f"{provider} {what} failed with HTTP {status}" + (f": {detail}" if detail else ""),
        provider=provider,
        kind=kind,
        retryable=retryable_status(status),
        status_code=status,
    )


def error_detail(text: str, limit: int = 200) -> str:
    """The error message inside a JSON error body (OpenAI, ElevenLabs, Deepgram shapes), else the text."""
    text = (text or "").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:limit]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("err_msg", data)))
        if isinstance(err, dict):
            err = err.get("message", err.get("status", err))
        return str(err)[:limit]
    return str(data)[:limit]


def _mro_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def transport_error(provider: str, kind: str, exc: BaseException) -> ProviderError:
    """Map an httpx/httpx2 (the openai SDK's fork) or socket exception to a ProviderError.

    Network trouble and timeouts are retryable. Classes are matched by name so both httpx flavours map.
    """
    if isinstance(exc, ProviderError):
        return exc
    names = _mro_names(exc)
    if "TimeoutException" in names or isinstance(exc, TimeoutError):
        return ProviderError(
            f"{provider} timed out ({type(exc).__name__})",
            provider=provider,
            kind=kind,
            retryable=True,
        )
    if "HTTPStatusError" in names:
        return status_error(provider, kind, exc.response.status_code)  # type: ignore[attr-defined]
    if "TransportError" in names or "StreamError" in names or isinstance(exc, OSError):
        return ProviderError(
            f"{provider} connection failed: {type(exc).__name__}: {exc}",
            provider=provider,
            kind=kind,
            retryable=True,
        )
    return ProviderError(
        f"{provider} failed: {type(exc).__name__}: {exc}",
        provider=provider,
        kind=kind,
        retryable=False,
    )


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an httpx/httpx2 transport or timeout error (raised mid-stream by the SDKs)."""
    names = _mro_names(exc)
    return "HTTPError" in names or "StreamError" in names


def malformed(provider: str, kind: str, what: str) -> ProviderError:
    """A response that does not parse: the server is misbehaving; another provider may do better."""
    return ProviderError(
        f"{provider} sent a malformed response: {what}",
        provider=provider,
        kind=kind,
        retryable=True,
    )


def with_retries(
    policy: HttpPolicy,
    provider: str,
    kind: str,
    attempt_fn: Callable[[], Any],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run ``attempt_fn`` until it succeeds, retrying retryable ProviderErrors ``policy.max_retries`` times.

    ``attempt_fn`` must only fail before anything was handed to the caller (it is what makes a retry safe).
    """
    attempt = 0
    while True:
        try:
            return attempt_fn()
        except ProviderError as exc:
            if not exc.retryable or attempt >= policy.max_retries:
                raise
            wait = policy.delay(attempt, getattr(exc, "retry_after", None))
            log.info("%s %s failed (%s); retry %d in %.2fs", provider, kind, exc, attempt + 1, wait)
            sleep(wait)
            attempt += 1


@contextmanager
def open_stream(
    client: Any,
    request: Any,
    policy: HttpPolicy,
    provider: str,
    kind: str,
    *,
    what: str = "request",
) -> Iterator[Any]:
    """Send ``request`` and yield a streaming response with a 2xx status (retrying where safe).

    The body is not read: iterate ``response.iter_bytes()`` inside the ``with`` block and map errors there
    with :func:`transport_error` (a failure then is mid-stream and never retried here).
    """

    def attempt() -> Any:
        try:
            response = client.send(request, stream=True)
        except Exception as exc:  # noqa: BLE001 - httpx errors (and socket errors) are mapped
            raise transport_error(provider, kind, exc) from exc
        if response.status_code >= 400:
            try:
                body = response.read()
            except Exception:  # noqa: BLE001 - the status is the error; the body is a detail
                body = b""
            finally:
                response.close()
            err = status_error(provider, kind, response.status_code, body, what=what)
            err.retry_after = retry_after(response.headers)  # type: ignore[attr-defined]
            raise err
        return response

    response = with_retries(policy, provider, kind, attempt)
    try:
        yield response
    finally:
        response.close()


def iter_body(response: Any, provider: str, kind: str, chunk_bytes: int) -> Iterator[bytes]:
    """The response body in chunks, with transport errors (timeouts, disconnects) as ProviderErrors."""
    try:
        yield from response.iter_bytes(chunk_bytes)
    except Exception as exc:  # noqa: BLE001 - httpx errors and socket errors are mapped
        if not (is_transport_error(exc) or isinstance(exc, OSError)):
            raise
        raise transport_error(provider, kind, exc) from exc


def make_client(policy: HttpPolicy, headers: Mapping[str, str] | None = None) -> Any:
    """A pooled ``httpx.Client`` for one provider instance (keep-alive across requests of a call).

    TCP_NODELAY: httpx writes a request's headers and body separately; with Nagle on, the body waits for
    the server's delayed ACK (about 40 ms per request, measured against the local fakes).
    """
    httpx = _httpx()
    transport = httpx.HTTPTransport(
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        limits=httpx.Limits(max_connections=8, max_keepalive_connections=4, keepalive_expiry=30.0),
    )
    return httpx.Client(
        headers=dict(headers or {}),
        timeout=policy.timeout(30.0),
        transport=transport,
        follow_redirects=False,
        trust_env=False,
    )


def elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
